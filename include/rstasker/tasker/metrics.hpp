// The tasker's metrics: their names, and the few records that derive several values at once.
// Emitted in CloudWatch's Embedded Metric Format by rstasker::metrics (common/metrics.hpp), under
// the FunctionName dimension and, where given, Waiter (StepFunctions / CloudFormation / None)
// and Outcome (FINISHED / FAILED / ABORTED). docs/operations.md lists them all.
#pragma once

#include <cstdint>
#include <optional>
#include <string_view>

#include "rstasker/common/metrics.hpp"
#include "rstasker/tasker/outcome.hpp"
#include "rstasker/tasker/state_table.hpp"

namespace rstasker::tasker::metric {

// Counts.
inline constexpr std::string_view kStatementsStarted = "StatementsStarted";      // Waiter
inline constexpr std::string_view kStartFailures = "StartFailures";              // Waiter
inline constexpr std::string_view kSingletonRefused = "SingletonRefused";        //
inline constexpr std::string_view kStatementsCompleted = "StatementsCompleted";  // Waiter, Outcome
inline constexpr std::string_view kCallbacksSent = "CallbacksSent";              // Waiter, Outcome
inline constexpr std::string_view kCallbackFailures = "CallbackFailures";        // Waiter
inline constexpr std::string_view kWaiterGone = "WaiterGone";                    // Waiter
inline constexpr std::string_view kDuplicateEvents = "DuplicateEvents";          //
inline constexpr std::string_view kForeignEvents = "ForeignEvents";              //
inline constexpr std::string_view kReconcileCompleted = "ReconcileCompleted";    //
inline constexpr std::string_view kReconcileOutcomeUnknown = "ReconcileOutcomeUnknown";  //
inline constexpr std::string_view kQueryRunnerRetries = "QueryRunnerRetries";            //
inline constexpr std::string_view kColdStart = "ColdStart";                              //
// Milliseconds.
inline constexpr std::string_view kCallbackLatency = "CallbackLatency";      // Waiter, Outcome
inline constexpr std::string_view kStatementDuration = "StatementDuration";  // Waiter, Outcome

inline constexpr std::string_view kWaiterDimension = "Waiter";
inline constexpr std::string_view kOutcomeDimension = "Outcome";

// "StepFunctions", "CloudFormation" or "None".
std::string_view waiter_name(WaiterKind kind);

// Counts `name` with the Waiter dimension.
void count_for(std::string_view name, WaiterKind kind);

// A waiter was called back with `outcome`: CallbacksSent and CallbackLatency (from the
// completion event's `time` to now, when the event has one).
void record_callback(WaiterKind kind, const Outcome& outcome);

// The statement started at `started_at_ms` was completed as `outcome`: StatementsCompleted and
// StatementDuration (to the completion event's `time`, when the event has one).
void record_completion(WaiterKind kind, const Outcome& outcome, std::int64_t started_at_ms);

// The `time` member of a completion event (ISO 8601 UTC, as EventBridge writes it: seconds,
// optionally with a fraction) in milliseconds since the epoch; nullopt when absent or malformed.
std::optional<std::int64_t> event_time_ms(const Json& event);

}  // namespace rstasker::tasker::metric
