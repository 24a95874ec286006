// Event dispatch and the action API.
#include "rstasker/tasker/tasker.hpp"

#include <spdlog/spdlog.h>

#include "rstasker/common/error.hpp"
#include "rstasker/common/log.hpp"
#include "rstasker/common/metrics.hpp"
#include "rstasker/tasker/events.hpp"
#include "rstasker/tasker/metrics.hpp"
#include "rstasker/tasker/waiting.hpp"
#include "tasker/redshift_user.hpp"

namespace rstasker::tasker {

namespace {

// A DescribeStatement answer with password literals hidden in the SQL it echoes (QueryString, of
// the statement and of each sub-statement) and in error texts, which may quote the SQL.
Json without_password_literals(Json described) {
  auto redact = [](Json& object) {
    if (!object.is_object()) return;
    for (const char* key : {"QueryString", "Error"}) {
      if (auto it = object.find(key); it != object.end() && it->is_string()) {
        *it = redact_password_literals(it->get<std::string>());
      }
    }
  };
  redact(described);
  if (auto subs = described.find("SubStatements"); subs != described.end() && subs->is_array()) {
    for (Json& sub : *subs) redact(sub);
  }
  return described;
}

// The `action` log field: the action's name, or what kind of event this is.
std::string action_name(const CheckedEvent& checked) {
  switch (checked.shape()) {
    case EventShape::kAction:
      return string_member(checked.event(), "action").empty()
                 ? "executeStatement"
                 : string_member(checked.event(), "action");
    case EventShape::kSqsBatch:
      return "completionBatch";
    case EventShape::kCloudFormation:
      return "customResource" + string_member(checked.event(), "RequestType");
  }
  return "";
}

// A string member for a log field, or null.
Json optional_string(const Json& event, const char* key) {
  auto it = event.find(key);
  return it != event.end() && it->is_string() ? *it : Json(nullptr);
}

}  // namespace

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
  // One set of EMF documents per invocation, whatever way it ends.
  struct FlushMetrics {
    ~FlushMetrics() { metrics::flush(); }
  } flush_metrics;
  const bool cold = std::exchange(cold_, false);
  if (cold) metrics::count(metric::kColdStart);
  log::set_invocation_field("coldStart", cold);
  log::set_invocation_field("action", action_name(checked));
  const Json& event = checked.event();
  log::ScopedFields fields{{"executionArn", optional_string(event, "executionArn")},
                           {"stackId", optional_string(event, "StackId")},
                           {"logicalResourceId", optional_string(event, "LogicalResourceId")}};
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
  // The newest record may lack its statement id: its start succeeded but writing the id failed.
  // Its statement name finds it; passing over it would act on the statement before it.
  auto newest = deps_.state->latest(execution_arn, /*started_only=*/false, context);
  if (newest && newest->statement_id.empty() && newest->state != RecordState::kStartFailed) {
    if (auto found = services::find_statement_by_name(*deps_.redshift, newest->key.statement_name(),
                                                      context)) {
      return *found;
    }
    // Not known to the Data API: it never started (or is starting right now); the newest
    // statement that did start is the one meant.
  }
  auto latest = deps_.state->latest(execution_arn, /*started_only=*/true, context);
  if (!latest) {
    throw Error(error_names::kPreviousExecutionNotFound,
                "execution " + execution_arn + " has not started any statement");
  }
  return latest->statement_id;
}

void Tasker::answer_finished(const StatementRecord& record, const Waiter& waiter,
                             const aws::CallContext& context) {
  const std::string name = record.key.statement_name();
  std::string id = record.statement_id;
  if (id.empty())
    id = services::find_statement_by_name(*deps_.redshift, name, context).value_or("");
  if (id.empty()) {
    throw Error(error_names::kInternalError,
                "statement " + name + " has been completed, but the Data API no longer knows it");
  }
  // The outcome the earlier waiter was given, as DescribeStatement tells it now.
  Outcome outcome =
      Reconciler::outcome_of(deps_.redshift->describe_statement(id, context), name, config_.region);
  if (outcome.statement_id.empty()) outcome.statement_id = id;
  if (!services::is_terminal(outcome.status)) {
    throw Error(error_names::kInternalError,
                "statement " + name + " has been completed, but DescribeStatement says it is " +
                    std::string(services::to_string(outcome.status)));
  }
  spdlog::info("statement {} had already ended ({}): answering the repeated start's waiter now",
               name, services::to_string(outcome.status));
  notifier_.notify(waiter, outcome, context);
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
      start.idempotency_key = request.idempotency_key;
      if (!request.task_token.empty()) {
        start.waiter.kind = WaiterKind::kStepFunctions;
        start.waiter.task_token = request.task_token;
      }
      StartResult started = launcher_.start(start, context);
      if (started.finished) answer_finished(*started.finished, start.waiter, context);
      Json response = std::move(started.response);
      response["StatementName"] = started.key.statement_name();
      return response;
    }
    case ActionKind::kDescribeStatement:
      return without_password_literals(deps_.redshift->describe_statement(
          resolve_statement_id(request.statement_id, request.execution_arn, context), context));
    case ActionKind::kCancelStatement:
      return deps_.redshift->cancel_statement(
          resolve_statement_id(request.statement_id, request.execution_arn, context), context);
    case ActionKind::kGetStatementResult:
      return deps_.redshift->get_statement_result(
          resolve_statement_id(request.statement_id, request.execution_arn, context),
          request.next_token, context);
    case ActionKind::kReconcile: {
      auto older_than = request.older_than_seconds
                            ? std::chrono::seconds(*request.older_than_seconds)
                            : config_.reconcile_after;
      return reconciler_.run(older_than, context);
    }
    case ActionKind::kQueryRunnerStep:
      return query_runner_.step(event, context);
    case ActionKind::kListWaiting:
      return list_waiting(*deps_.state, static_cast<std::size_t>(request.limit.value_or(50)),
                          request.next_token, now_epoch_ms(), context);
  }
  throw Error(error_names::kInternalError, "unhandled action");
}

}  // namespace rstasker::tasker
