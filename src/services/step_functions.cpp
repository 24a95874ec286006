// Step Functions callbacks, with the service's field limits applied before sending.
#include "rstasker/services/step_functions.hpp"

#include <spdlog/spdlog.h>

#include "rstasker/common/error.hpp"
#include "rstasker/common/text.hpp"

namespace rstasker::services {

namespace {

class JsonStepFunctions final : public StepFunctions {
 public:
  explicit JsonStepFunctions(std::shared_ptr<const aws::JsonClient> client)
      : client_(std::move(client)) {}

  void send_task_success(const std::string& task_token, const std::string& output,
                         const aws::CallContext& context) override {
    if (output.size() > kMaxTaskOutputBytes) {
      throw invalid_request("task output is " + std::to_string(output.size()) +
                            " bytes; Step Functions accepts at most " +
                            std::to_string(kMaxTaskOutputBytes));
    }
    callback("SendTaskSuccess", {{"taskToken", task_token}, {"output", output}}, context);
  }

  void send_task_failure(const std::string& task_token, const std::string& error,
                         const std::string& cause, const aws::CallContext& context) override {
    callback("SendTaskFailure",
             {{"taskToken", task_token},
              {"error", truncate_utf8_chars(error, kMaxTaskErrorChars)},
              {"cause", truncate_utf8_chars(cause, kMaxTaskCauseChars)}},
             context);
  }

  void send_task_heartbeat(const std::string& task_token,
                           const aws::CallContext& context) override {
    client_->call("SendTaskHeartbeat", {{"taskToken", task_token}}, context);
  }

 private:
  // A callback whose reply was lost is sent again; if the task has closed by then, the likeliest
  // reason is that our lost attempt closed it, so it counts as delivered rather than as a waiter
  // that is gone (either way there is nothing left to send).
  void callback(std::string_view operation, const Json& request, const aws::CallContext& context) {
    aws::CallHistory history;
    try {
      client_->call(operation, request, context, &history);
    } catch (const Error& e) {
      if (!history.maybe_applied || !is_waiter_gone(e)) throw;
      spdlog::info(
          "{}: an attempt got no answer and its retry found the task closed ({}); taken as "
          "delivered",
          operation, e.name());
    }
  }

  std::shared_ptr<const aws::JsonClient> client_;
};

}  // namespace

std::unique_ptr<StepFunctions> make_step_functions(std::shared_ptr<const aws::JsonClient> client) {
  return std::make_unique<JsonStepFunctions>(std::move(client));
}

bool is_waiter_gone(const std::exception& error) {
  const auto* e = dynamic_cast<const Error*>(&error);
  if (e == nullptr) return false;
  return e->name() == "TaskTimedOut" || e->name() == "TaskDoesNotExist" ||
         e->name() == "InvalidToken";
}

}  // namespace rstasker::services
