// The Lambda custom-runtime loop: fetch an invocation, run the handler, post its outcome.
// Knows the Runtime API (2018-06-01) and nothing of what the handler does.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "rstasker/aws/http.hpp"
#include "rstasker/common/deadline.hpp"

namespace rstasker::lambda {

// Largest response of a synchronous invocation: 6,291,556 bytes, as Lambda documents and
// enforces it (100 bytes more than 6 MiB), not 6 MiB.
inline constexpr std::size_t kMaxResponseBytes = 6'291'556;

// Error type reported when a handler's response is larger than kMaxResponseBytes.
inline constexpr std::string_view kResponseTooLarge = "ResponseTooLarge";

struct Invocation {
  std::string request_id;
  std::string payload;  // the event, as received
  Deadline deadline = Deadline::none();
  std::int64_t deadline_epoch_ms = 0;
  std::string function_arn;
  std::string trace_id;  // Lambda-Runtime-Trace-Id ("" when absent)
};

// What a handler produces: the response JSON text. A handler reports a function error by throwing
// rstasker::Error (its name becomes errorType); any other exception is reported as InternalError.
using Handler = std::function<std::string(const Invocation&)>;

// Talks to the Runtime API at http://<endpoint>/2018-06-01. Constructing one does no I/O.
class RuntimeClient {
 public:
  // `endpoint` is AWS_LAMBDA_RUNTIME_API (host:port). `transport` must not time requests out on
  // its own (CurlOptions::request_timeout = 0): GET /next waits, unbounded, for an invocation.
  RuntimeClient(std::string endpoint, std::shared_ptr<aws::HttpTransport> transport);

  const std::string& endpoint() const { return endpoint_; }

  // Blocks until the next invocation. Throws Error(NetworkError) when the Runtime API cannot be
  // reached, and Error(InternalError) carrying the HTTP status when it answers something other
  // than an invocation: a non-2xx status (the API itself failed), or a 2xx one whose invocation
  // is unusable (no Lambda-Runtime-Aws-Request-Id) and should be skipped.
  Invocation next();

  // Post an invocation's outcome (or an init failure). Each throws Error(NetworkError) when the
  // Runtime API cannot be reached and Error(InternalError) carrying the HTTP status when it
  // refuses the post (e.g. 413 for a body that is too large). An error message longer than 64 KiB
  // is truncated; the error type is sent as the Lambda-Runtime-Function-Error-Type header.
  void post_response(const std::string& request_id, const std::string& payload);
  void post_error(const std::string& request_id, std::string_view error_type,
                  std::string_view message);
  // Reports an initialisation failure; the process should exit afterwards.
  void post_init_error(std::string_view error_type, std::string_view message);

 private:
  std::string endpoint_;
  std::string base_url_;
  std::shared_ptr<aws::HttpTransport> transport_;
};

// Runs invocations until the Runtime API goes away, then returns the process exit code (0 after
// a clean shutdown, with the reason logged). A handler exception becomes an invocation error; the
// loop itself never dies from one. Sets _X_AMZN_TRACE_ID and the log request id per invocation.
// A response larger than kMaxResponseBytes is replaced by a kResponseTooLarge error. When GET
// /next fails it is retried a few times within a second; if the API stays unreachable run()
// returns 0, if it keeps answering errors run() returns 1. A refused post is logged and skipped.
int run(RuntimeClient& client, const Handler& handler);

}  // namespace rstasker::lambda
