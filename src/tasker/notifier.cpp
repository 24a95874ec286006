// Waiter callbacks.
#include "rstasker/tasker/notifier.hpp"

#include <spdlog/spdlog.h>

#include "rstasker/common/error.hpp"
#include "rstasker/common/text.hpp"
#include "rstasker/tasker/metrics.hpp"

namespace rstasker::tasker {

Notifier::Notifier(std::shared_ptr<services::StepFunctions> step_functions,
                   CustomResources& custom_resources)
    : step_functions_(std::move(step_functions)), custom_resources_(custom_resources) {}

std::string failure_cause(const Outcome& outcome) {
  Json cause = {{"state", services::to_string(outcome.status)},
                {"statementId", outcome.statement_id},
                {"statementName", outcome.statement_name},
                {"error", ""}};
  std::size_t room = services::kMaxTaskCauseChars - dump_json(cause).size();
  // Escaping can only grow the text; halve until it fits (rarely more than once).
  std::string error = truncate_utf8_chars(outcome.error, room);
  cause["error"] = error;
  while (dump_json(cause).size() > services::kMaxTaskCauseChars && !error.empty()) {
    error = truncate_utf8_chars(error, error.size() / 2);
    cause["error"] = error;
  }
  return dump_json(cause);
}

void Notifier::notify(const Waiter& waiter, const Outcome& outcome,
                      const aws::CallContext& context) {
  switch (waiter.kind) {
    case WaiterKind::kNone:
      return;
    case WaiterKind::kCloudFormation:
      try {
        custom_resources_.respond_completion(waiter.cloudformation, outcome, context);
        metric::record_callback(waiter.kind, outcome);
      } catch (const Error& e) {
        if (may_succeed_later(e)) throw;
        // A refused PUT (typically an expired pre-signed URL, after CloudFormation gave up
        // waiting) cannot succeed later: the waiter is gone.
        metric::count_for(metric::kWaiterGone, waiter.kind);
        spdlog::warn(
            "CloudFormation's response URL refused the answer for {} ({}: {}); the "
            "request is gone",
            outcome.statement_name, e.name(), e.message());
      }
      return;
    case WaiterKind::kStepFunctions:
      break;
  }
  try {
    if (outcome.succeeded()) {
      step_functions_->send_task_success(waiter.task_token, dump_json(outcome.event), context);
    } else {
      step_functions_->send_task_failure(waiter.task_token, std::string(error_names::kSqlFailed),
                                         failure_cause(outcome), context);
    }
    metric::record_callback(waiter.kind, outcome);
  } catch (const Error& e) {
    if (!services::is_waiter_gone(e)) throw;
    metric::count_for(metric::kWaiterGone, waiter.kind);
    spdlog::warn("the waiter of {} is gone ({}: {}); nothing to call back", outcome.statement_name,
                 e.name(), e.message());
  }
}

bool Notifier::still_waiting(const Waiter& waiter, const aws::CallContext& context) {
  if (waiter.kind != WaiterKind::kStepFunctions) return waiter.kind == WaiterKind::kCloudFormation;
  try {
    step_functions_->send_task_heartbeat(waiter.task_token, context);
    return true;
  } catch (const Error& e) {
    if (services::is_waiter_gone(e)) return false;
    throw;
  }
}

std::string waiter_secret(const Waiter& waiter) {
  switch (waiter.kind) {
    case WaiterKind::kStepFunctions:
      return waiter.task_token;
    case WaiterKind::kCloudFormation:
      return string_member(waiter.cloudformation, "ResponseURL");
    case WaiterKind::kNone:
      break;
  }
  return {};
}

}  // namespace rstasker::tasker
