// Step Functions task callbacks (JSON 1.0).
#pragma once

#include <memory>
#include <string>

#include "rstasker/aws/json_client.hpp"

namespace rstasker::services {

// Service limits on callback fields (characters); longer values are truncated by the client.
inline constexpr std::size_t kMaxTaskErrorChars = 256;
inline constexpr std::size_t kMaxTaskCauseChars = 32768;
inline constexpr std::size_t kMaxTaskOutputBytes = 256 * 1024;

class StepFunctions {
 public:
  virtual ~StepFunctions() = default;
  // `output` is JSON text (at most kMaxTaskOutputBytes; larger output is an InvalidRequest).
  // A callback is retried when its reply is lost; when the retry finds the task closed
  // (TaskTimedOut, TaskDoesNotExist, InvalidToken) after an attempt that may have been applied,
  // it returns normally: delivered. Otherwise those errors are thrown.
  virtual void send_task_success(const std::string& task_token, const std::string& output,
                                 const aws::CallContext& context) = 0;
  virtual void send_task_failure(const std::string& task_token, const std::string& error,
                                 const std::string& cause, const aws::CallContext& context) = 0;
  virtual void send_task_heartbeat(const std::string& task_token,
                                   const aws::CallContext& context) = 0;
};

std::unique_ptr<StepFunctions> make_step_functions(std::shared_ptr<const aws::JsonClient> client);

// Whether a callback error means the waiter no longer exists (TaskTimedOut, TaskDoesNotExist,
// InvalidToken): final, not worth retrying.
bool is_waiter_gone(const std::exception& error);

}  // namespace rstasker::services
