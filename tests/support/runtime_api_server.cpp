// The fake Runtime API on cpp-httplib: one mutex and one condition variable guard the queue of
// invocations and the record of outcomes, so both the server's threads and the test can wait.
#include "support/runtime_api_server.hpp"

#include <httplib.h>

#include <stdexcept>
#include <utility>

#include "rstasker/common/deadline.hpp"

namespace rstasker::testing {

namespace {

constexpr std::size_t kMaxResponseBytes = 6'291'556;  // as Lambda: 100 bytes more than 6 MiB
constexpr const char* kPrefix = "/2018-06-01/runtime";

void set_header_unless_empty(httplib::Response& response, const char* name,
                             const std::string& value) {
  if (!value.empty()) response.set_header(name, value);
}

}  // namespace

RuntimeApiServer::RuntimeApiServer() : server_(std::make_unique<httplib::Server>()) {
  // A real runtime keeps one connection for its whole life; so should the fake.
  server_->set_keep_alive_max_count(1'000'000);

  server_->Get(std::string(kPrefix) + "/invocation/next", [this](const httplib::Request&,
                                                                 httplib::Response& response) {
    std::unique_lock lock(mutex_);
    if (!first_next_at_) first_next_at_ = std::chrono::steady_clock::now();
    ++next_requests_;
    changed_.notify_all();
    changed_.wait(lock, [this] { return stopped_ || !queue_.empty(); });
    if (stopped_) {
      response.status = 503;
      response.set_header("Connection", "close");
      return;
    }
    FakeInvocation invocation = std::move(queue_.front());
    queue_.pop_front();
    lock.unlock();
    set_header_unless_empty(response, "Lambda-Runtime-Aws-Request-Id", invocation.request_id);
    response.set_header("Lambda-Runtime-Deadline-Ms", std::to_string(invocation.deadline_epoch_ms));
    set_header_unless_empty(response, "Lambda-Runtime-Invoked-Function-Arn",
                            invocation.function_arn);
    set_header_unless_empty(response, "Lambda-Runtime-Trace-Id", invocation.trace_id);
    response.set_content(invocation.payload, "application/json");
  });

  auto on_post = [this](PostedOutcome::Kind kind) {
    return [this, kind](const httplib::Request& request, httplib::Response& response) {
      PostedOutcome outcome;
      outcome.kind = kind;
      if (kind != PostedOutcome::Kind::kInitError) outcome.request_id = request.matches[1];
      outcome.error_type = request.get_header_value("Lambda-Runtime-Function-Error-Type");
      outcome.body = request.body;
      {
        std::lock_guard lock(mutex_);
        outcome.status = post_status_;
      }
      if (kind == PostedOutcome::Kind::kResponse && outcome.body.size() > kMaxResponseBytes) {
        outcome.status = 413;
      }
      response.status = outcome.status;
      response.set_content(outcome.status == 202 ? R"({"status":"OK"})" : R"({"status":"no"})",
                           "application/json");
      record(std::move(outcome));
    };
  };
  server_->Post(std::string(kPrefix) + "/invocation/([^/]+)/response",
                on_post(PostedOutcome::Kind::kResponse));
  server_->Post(std::string(kPrefix) + "/invocation/([^/]+)/error",
                on_post(PostedOutcome::Kind::kError));
  server_->Post(std::string(kPrefix) + "/init/error", on_post(PostedOutcome::Kind::kInitError));
  server_->Get("/ready", [](const httplib::Request&, httplib::Response& response) {
    response.set_content("ready", "text/plain");
  });

  port_ = server_->bind_to_any_port("127.0.0.1");
  if (port_ <= 0) throw std::runtime_error("the fake Runtime API could not bind a loopback port");
  listener_ = std::thread([this] { server_->listen_after_bind(); });

  // httplib::Server::stop() does nothing until the accept loop runs; one answered request proves
  // it does, so stop() can never be lost.
  httplib::Client probe("127.0.0.1", port_);
  if (!probe.Get("/ready")) {
    stop();
    throw std::runtime_error("the fake Runtime API did not start");
  }
}

RuntimeApiServer::~RuntimeApiServer() {
  stop();
}

std::string RuntimeApiServer::address() const {
  return "127.0.0.1:" + std::to_string(port_);
}

void RuntimeApiServer::enqueue(FakeInvocation invocation) {
  if (invocation.deadline_epoch_ms == 0) invocation.deadline_epoch_ms = now_epoch_ms() + 60'000;
  {
    std::lock_guard lock(mutex_);
    queue_.push_back(std::move(invocation));
  }
  changed_.notify_all();
}

void RuntimeApiServer::set_post_status(int status) {
  std::lock_guard lock(mutex_);
  post_status_ = status;
}

void RuntimeApiServer::record(PostedOutcome outcome) {
  {
    std::lock_guard lock(mutex_);
    outcomes_.push_back(std::move(outcome));
  }
  changed_.notify_all();
}

template <class Predicate>
std::optional<PostedOutcome> RuntimeApiServer::wait_for(Predicate matches,
                                                        std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  std::optional<PostedOutcome> found;
  changed_.wait_for(lock, timeout, [&] {
    for (const PostedOutcome& outcome : outcomes_) {
      if (matches(outcome)) {
        found = outcome;
        return true;
      }
    }
    return false;
  });
  return found;
}

std::optional<PostedOutcome> RuntimeApiServer::wait_for_outcome(const std::string& request_id,
                                                                std::chrono::milliseconds timeout) {
  return wait_for(
      [&](const PostedOutcome& outcome) {
        return outcome.kind != PostedOutcome::Kind::kInitError && outcome.request_id == request_id;
      },
      timeout);
}

std::optional<PostedOutcome> RuntimeApiServer::wait_for_init_error(
    std::chrono::milliseconds timeout) {
  return wait_for(
      [](const PostedOutcome& outcome) { return outcome.kind == PostedOutcome::Kind::kInitError; },
      timeout);
}

std::vector<PostedOutcome> RuntimeApiServer::outcomes() const {
  std::lock_guard lock(mutex_);
  return outcomes_;
}

std::optional<std::chrono::steady_clock::time_point> RuntimeApiServer::wait_for_first_next(
    std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  changed_.wait_for(lock, timeout, [this] { return first_next_at_.has_value(); });
  return first_next_at_;
}

std::size_t RuntimeApiServer::next_requests() const {
  std::lock_guard lock(mutex_);
  return next_requests_;
}

void RuntimeApiServer::stop() {
  {
    std::lock_guard lock(mutex_);
    stopped_ = true;
  }
  // Wakes a waiting GET /next first: the listener joins its workers before it returns.
  changed_.notify_all();
  server_->stop();
  if (listener_.joinable()) listener_.join();
}

}  // namespace rstasker::testing
