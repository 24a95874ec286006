// Error construction helpers.
#include "rstasker/common/error.hpp"

#include <utility>

namespace rstasker {

Error::Error(std::string_view name, std::string message, int http_status, bool retryable)
    : std::runtime_error(std::string(name) + ": " + message),
      name_(name),
      message_(std::move(message)),
      http_status_(http_status),
      retryable_(retryable) {}

bool may_succeed_later(const Error& e) {
  return e.retryable() || e.name() == error_names::kDeadlineExceeded;
}

Error invalid_request(std::string message) {
  return Error(error_names::kInvalidRequest, std::move(message));
}

Error configuration_error(std::string message) {
  return Error(error_names::kConfigurationError, std::move(message));
}

}  // namespace rstasker
