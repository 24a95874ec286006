// A fake Lambda Runtime API (2018-06-01) on a loopback port, for tests and benchmarks of the
// runtime loop: it hands out queued invocations and records the outcomes posted back.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

namespace httplib {
class Server;
}

namespace rstasker::testing {

// One invocation to hand out from GET /next. An empty field omits its header, so tests can send
// malformed invocations too.
struct FakeInvocation {
  std::string request_id;
  std::string payload = "{}";
  std::int64_t deadline_epoch_ms = 0;  // 0: a minute after enqueue()
  std::string function_arn = "arn:aws:lambda:us-east-1:123456789012:function:redshift-tasker";
  std::string trace_id;
};

// What the runtime posted back.
struct PostedOutcome {
  enum class Kind { kResponse, kError, kInitError };
  Kind kind = Kind::kResponse;
  std::string request_id;  // "" for an init error
  std::string error_type;  // the Lambda-Runtime-Function-Error-Type header ("" when absent)
  std::string body;
  int status = 202;  // what the fake answered
};

class RuntimeApiServer {
 public:
  // Starts serving on a free port of 127.0.0.1; returns once it accepts requests. Throws
  // std::runtime_error when no port can be bound.
  RuntimeApiServer();
  // Stops the server (see stop()).
  ~RuntimeApiServer();
  RuntimeApiServer(const RuntimeApiServer&) = delete;
  RuntimeApiServer& operator=(const RuntimeApiServer&) = delete;

  // "127.0.0.1:<port>": the value for AWS_LAMBDA_RUNTIME_API.
  std::string address() const;

  // Queues an invocation; GET /next requests get them in order, waiting until one is queued.
  void enqueue(FakeInvocation invocation);

  // Status the fake answers posts with from now on (202 by default). Posts are recorded whatever
  // the status. A response body over 6 MB is always answered 413, as the real API does.
  void set_post_status(int status);

  // The first outcome posted for `request_id`, waiting up to `timeout` for it.
  std::optional<PostedOutcome> wait_for_outcome(
      const std::string& request_id, std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // The first init error posted, waiting up to `timeout` for it.
  std::optional<PostedOutcome> wait_for_init_error(
      std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // Every outcome posted so far, in arrival order.
  std::vector<PostedOutcome> outcomes() const;

  // When the first GET /next arrived (steady clock, comparable across processes on Linux),
  // waiting up to `timeout` for it. For measuring a runtime's cold start.
  std::optional<std::chrono::steady_clock::time_point> wait_for_first_next(
      std::chrono::milliseconds timeout = std::chrono::seconds(10));
  // How many GET /next requests have arrived.
  std::size_t next_requests() const;

  // Stops serving: a waiting GET /next is answered 503 with the connection closed, the port is
  // closed, and every later request is refused, so a runtime sees the API go away. Idempotent.
  // Returns once every connection is closed: a client holding an idle keep-alive connection
  // delays it by up to cpp-httplib's keep-alive timeout (5 s), so close such clients first.
  void stop();

 private:
  void record(PostedOutcome outcome);
  template <class Predicate>
  std::optional<PostedOutcome> wait_for(Predicate matches, std::chrono::milliseconds timeout);

  std::unique_ptr<httplib::Server> server_;
  int port_ = 0;
  std::thread listener_;

  mutable std::mutex mutex_;
  std::condition_variable changed_;
  bool stopped_ = false;
  std::deque<FakeInvocation> queue_;
  std::vector<PostedOutcome> outcomes_;
  int post_status_ = 202;
  std::size_t next_requests_ = 0;
  std::optional<std::chrono::steady_clock::time_point> first_next_at_;
};

}  // namespace rstasker::testing
