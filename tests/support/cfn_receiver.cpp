// The CloudFormation response receiver on cpp-httplib. One mutex guards the record and the
// misbehaviour settings; one condition variable lets tests wait for requests and held requests
// wait for release.
#include "support/cfn_receiver.hpp"

#include <httplib.h>
#include <strings.h>

#include <nlohmann/json.hpp>
#include <stdexcept>

namespace rstasker::testing {

namespace {

constexpr std::size_t kMaxBodyBytes = 4096;
constexpr std::size_t kMaxPhysicalIdBytes = 1024;
constexpr const char* kHandledPath = R"(/.*)";

bool iequals(std::string_view a, std::string_view b) {
  return a.size() == b.size() && strncasecmp(a.data(), b.data(), a.size()) == 0;
}

std::string s3_error(std::string_view code, std::string_view message) {
  return "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>" + std::string(code) +
         "</Code><Message>" + std::string(message) + "</Message></Error>";
}

}  // namespace

std::vector<std::string> cfn_response_problems(std::string_view method,
                                               std::string_view content_type,
                                               std::string_view body) {
  std::vector<std::string> problems;
  if (method != "PUT") problems.push_back("method is " + std::string(method) + ", not PUT");
  if (!content_type.empty()) {
    problems.push_back("Content-Type is '" + std::string(content_type) + "', not empty");
  }
  if (body.size() > kMaxBodyBytes) {
    problems.push_back("body is " + std::to_string(body.size()) + " bytes, over 4096");
  }
  nlohmann::json json = nlohmann::json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (json.is_discarded() || !json.is_object()) {
    problems.push_back("body is not a JSON object");
    return problems;
  }
  auto string_member = [&](const char* key) -> const std::string* {
    auto it = json.find(key);
    if (it == json.end() || !it->is_string()) {
      problems.push_back(std::string(key) + " is missing or not a string");
      return nullptr;
    }
    return &it->get_ref<const std::string&>();
  };
  const std::string* status = string_member("Status");
  if (status && *status != "SUCCESS" && *status != "FAILED") {
    problems.push_back("Status is '" + *status + "'");
  }
  if (const std::string* id = string_member("PhysicalResourceId")) {
    if (id->empty() || id->size() > kMaxPhysicalIdBytes) {
      problems.push_back("PhysicalResourceId is empty or over 1 KB");
    }
  }
  for (const char* key : {"StackId", "RequestId", "LogicalResourceId"}) string_member(key);
  if (status && *status == "FAILED") {
    auto reason = json.find("Reason");
    if (reason == json.end() || !reason->is_string() || reason->get<std::string>().empty()) {
      problems.push_back("a FAILED response has no Reason");
    }
  }
  if (json.contains("Reason") && !json["Reason"].is_string()) {
    problems.push_back("Reason is not a string");
  }
  if (json.contains("NoEcho") && !json["NoEcho"].is_boolean()) {
    problems.push_back("NoEcho is not a boolean");
  }
  if (json.contains("Data") && !json["Data"].is_object()) {
    problems.push_back("Data is not an object");
  }
  return problems;
}

bool ReceivedRequest::has_header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (iequals(key, name)) return true;
  }
  return false;
}

std::string ReceivedRequest::header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (iequals(key, name)) return value;
  }
  return {};
}

CfnReceiver::CfnReceiver() : server_(std::make_unique<httplib::Server>()) {
  auto handle = [this](const httplib::Request& request, httplib::Response& response) {
    ReceivedRequest received;
    received.method = request.method;
    received.target = request.target;
    for (const auto& [key, value] : request.headers) received.headers.emplace_back(key, value);
    received.body = request.body;
    received.problems =
        cfn_response_problems(request.method, received.header("Content-Type"), request.body);

    std::unique_lock lock(mutex_);
    changed_.wait(lock, [this] { return !holding_ || stopped_; });
    if (stopped_) {
      received.status = 503;
    } else if (drops_left_ > 0) {
      --drops_left_;
      received.status = 0;
    } else if (failures_left_ > 0) {
      --failures_left_;
      received.status = failure_status_;
    } else {
      received.status = received.problems.empty() ? 200 : 400;
    }
    const int status = received.status;
    std::string code = failure_code_;
    const std::string first_problem = received.problems.empty() ? "" : received.problems.front();
    received_.push_back(std::move(received));
    lock.unlock();
    changed_.notify_all();

    if (status == 0) {
      // Promise a body, then fail to produce it: the server closes the connection mid-answer.
      response.set_content_provider(
          16, "text/plain", [](std::size_t, std::size_t, httplib::DataSink&) { return false; });
      return;
    }
    response.status = status;
    if (status == 200) return;
    response.set_header("Connection", "close");
    const std::string message = status == 400 ? first_problem : "injected failure";
    if (code.empty()) code = status >= 500 ? "InternalError" : "AccessDenied";
    response.set_content(s3_error(code, message), "application/xml");
  };
  server_->Put(kHandledPath, handle);
  server_->Post(kHandledPath, handle);
  server_->Delete(kHandledPath, handle);
  server_->Patch(kHandledPath, handle);
  server_->Get("/ready", [](const httplib::Request&, httplib::Response& response) {
    response.set_content("ready", "text/plain");
  });

  port_ = server_->bind_to_any_port("127.0.0.1");
  if (port_ <= 0) throw std::runtime_error("the CloudFormation receiver could not bind a port");
  listener_ = std::thread([this] { server_->listen_after_bind(); });
  // stop() is lost until the accept loop runs; one answered request proves it does.
  httplib::Client probe("127.0.0.1", port_);
  if (!probe.Get("/ready")) {
    stop();
    throw std::runtime_error("the CloudFormation receiver did not start");
  }
}

CfnReceiver::~CfnReceiver() {
  stop();
}

std::string CfnReceiver::url(std::string_view path_and_query) const {
  return "http://127.0.0.1:" + std::to_string(port_) + std::string(path_and_query);
}

void CfnReceiver::fail_next(int count, int status, std::string code) {
  std::lock_guard lock(mutex_);
  failures_left_ = count;
  failure_status_ = status;
  failure_code_ = std::move(code);
}

void CfnReceiver::drop_next(int count) {
  std::lock_guard lock(mutex_);
  drops_left_ = count;
}

void CfnReceiver::hold() {
  std::lock_guard lock(mutex_);
  holding_ = true;
}

void CfnReceiver::release() {
  {
    std::lock_guard lock(mutex_);
    holding_ = false;
  }
  changed_.notify_all();
}

std::vector<ReceivedRequest> CfnReceiver::received() const {
  std::lock_guard lock(mutex_);
  return received_;
}

bool CfnReceiver::wait_for(std::size_t count, std::chrono::milliseconds timeout) {
  std::unique_lock lock(mutex_);
  return changed_.wait_for(lock, timeout, [&] { return received_.size() >= count; });
}

void CfnReceiver::stop() {
  {
    std::lock_guard lock(mutex_);
    stopped_ = true;
  }
  changed_.notify_all();  // held requests are answered before the listener joins its workers
  server_->stop();
  if (listener_.joinable()) listener_.join();
}

}  // namespace rstasker::testing
