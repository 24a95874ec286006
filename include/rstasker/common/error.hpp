// The one error type of the project: every failure that crosses a module boundary is an Error.
#pragma once

#include <stdexcept>
#include <string>
#include <string_view>

namespace rstasker {

// Stable error names. Callers (Step Functions `Catch`, CloudFormation, tests) match on these, so
// they never change. AWS service errors keep the service's own name (e.g. "ValidationException").
namespace error_names {
inline constexpr std::string_view kInvalidRequest = "InvalidRequest";
inline constexpr std::string_view kConcurrentExecution = "ConcurrentExecution";
inline constexpr std::string_view kPreviousExecutionNotFound = "PreviousExecutionNotFound";
inline constexpr std::string_view kConfigurationError = "ConfigurationError";
// The SQL itself failed (reported through a callback; seed 002 catches it).
inline constexpr std::string_view kSqlFailed = "FAILED";
// Transport-level failures: no HTTP response was received.
inline constexpr std::string_view kNetworkError = "NetworkError";
// The invocation's deadline would pass before the call could complete.
inline constexpr std::string_view kDeadlineExceeded = "DeadlineExceeded";
// A bug or an unexpected response; never expected in normal operation.
inline constexpr std::string_view kInternalError = "InternalError";
}  // namespace error_names

// An error with a stable name, a human message, the HTTP status it came with (0 when it did not
// come from an HTTP response) and whether repeating the same request may succeed.
class Error : public std::runtime_error {
 public:
  Error(std::string_view name, std::string message, int http_status = 0, bool retryable = false);

  const std::string& name() const { return name_; }
  const std::string& message() const { return message_; }
  int http_status() const { return http_status_; }
  bool retryable() const { return retryable_; }

 private:
  std::string name_;
  std::string message_;
  int http_status_;
  bool retryable_;
};

// Whether a later attempt (another invocation, a redelivery) may succeed where this one failed:
// the error is retryable, or time ran out before the call could complete.
bool may_succeed_later(const Error& e);

// Shorthands for the domain errors; each returns an Error to be thrown.
Error invalid_request(std::string message);
Error configuration_error(std::string message);

}  // namespace rstasker
