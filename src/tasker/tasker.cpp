// Event dispatch and the action API.
#include "rstasker/tasker/tasker.hpp"

#include <spdlog/spdlog.h>

#include "rstasker/common/error.hpp"
#include "rstasker/common/log.hpp"
#include "rstasker/lambda/runtime.hpp"
#include "rstasker/tasker/events.hpp"
#include "tasker/result_pages.hpp"

namespace rstasker::tasker {

Tasker::Tasker(Config config, Dependencies dependencies, CompletionOptions completion_options)
    : config_(std::move(config)),
      deps_(std::move(dependencies)),
      launcher_(config_, deps_.redshift, deps_.state),
      custom_resources_(config_, launcher_, deps_.cloudformation, deps_.state),
      notifier_(deps_.step_functions, custom_resources_),
      completions_(deps_.state, deps_.redshift, notifier_, std::move(completion_options)),
      reconciler_(deps_.state, deps_.redshift, completions_,
                  ReconcileOptions{200, std::chrono::milliseconds(5000), config_.region}),
      query_runner_(config_, deps_.redshift, launcher_) {}

std::string Tasker::handle_payload(std::string_view payload, const aws::CallContext& context) {
  return dump_json(handle(read_event(payload), context));
}

Json Tasker::handle(const Json& event, const aws::CallContext& context) {
  return handle(check_event(event), context);
}

Json Tasker::handle(const CheckedEvent& checked, const aws::CallContext& context) {
  switch (checked.shape()) {
    case EventShape::kAction:
      if (checked.action() == nullptr) break;
      return run_action(checked.event(), *checked.action(), context);
    case EventShape::kSqsBatch:
      return completions_.handle_batch(checked.event(), context);
    case EventShape::kCloudFormation:
      return custom_resources_.handle(checked.event(), context);
  }
  throw Error(error_names::kInternalError, "unhandled event shape");
}

std::string Tasker::resolve_statement_id(const std::string& statement_id,
                                         const std::string& execution_arn,
                                         const aws::CallContext& context) {
  if (statement_id != kLatest) return statement_id;
  auto latest = deps_.state->latest(execution_arn, /*started_only=*/true, context);
  if (!latest) {
    throw Error(error_names::kPreviousExecutionNotFound,
                "execution " + execution_arn + " has not started any statement");
  }
  return latest->statement_id;
}

Json Tasker::run_action(const Json& event, const ActionRequest& request,
                        const aws::CallContext& context) {
  // The token must not reach the logs, whatever path it takes (an error message, a dump).
  std::optional<log::ScopedSecret> token_guard;
  if (!request.task_token.empty()) token_guard.emplace(request.task_token);

  switch (request.kind) {
    case ActionKind::kExecuteStatement:
    case ActionKind::kExecuteSingletonStatement: {
      StartRequest start;
      start.caller_id = request.execution_arn;
      start.target = apply_override(config_.target, request.target);
      if (auto problem = describe_target_problem(start.target); !problem.empty()) {
        throw invalid_request("Redshift target: " + problem);
      }
      start.sqls = request.sqls;
      start.batch = request.batch;  // sqlStatements, even with one statement: one transaction
      start.parameters = request.parameters;
      start.singleton = request.kind == ActionKind::kExecuteSingletonStatement;
      if (!request.task_token.empty()) {
        start.waiter.kind = WaiterKind::kStepFunctions;
        start.waiter.task_token = request.task_token;
      }
      StartResult started = launcher_.start(start, context);
      Json response = std::move(started.response);
      response["StatementName"] = started.key.statement_name();
      return response;
    }
    case ActionKind::kDescribeStatement:
      return deps_.redshift->describe_statement(
          resolve_statement_id(request.statement_id, request.execution_arn, context), context);
    case ActionKind::kCancelStatement:
      return deps_.redshift->cancel_statement(
          resolve_statement_id(request.statement_id, request.execution_arn, context), context);
    case ActionKind::kGetStatementResult:
      // The page goes back whole as the invocation's response: cut to Lambda's limit.
      return result_page(*deps_.redshift,
                         resolve_statement_id(request.statement_id, request.execution_arn, context),
                         request.next_token, lambda::kMaxResponseBytes, context);
    case ActionKind::kReconcile: {
      auto older_than = request.older_than_seconds
                            ? std::chrono::seconds(*request.older_than_seconds)
                            : config_.reconcile_after;
      return reconciler_.run(older_than, context);
    }
    case ActionKind::kQueryRunnerStep:
      return query_runner_.step(event, context);
  }
  throw Error(error_names::kInternalError, "unhandled action");
}

}  // namespace rstasker::tasker
