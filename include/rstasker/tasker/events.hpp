// What arrives at the function: recognising an event's shape, and parsing action events (the
// seed's Step Functions API) into checked requests. Nothing here touches the network.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "rstasker/common/json.hpp"
#include "rstasker/services/redshift_data.hpp"

namespace rstasker::tasker {

enum class EventShape {
  kAction,          // {"action": ...} or {"sqlStatement": ...}
  kSqsBatch,        // {"Records": [{"eventSource": "aws:sqs", ...}]}
  kCloudFormation,  // {"RequestType": ..., "ResponseURL": ..., ...}
};

// Decides what `event` is, by its shape. Throws InvalidRequest when it is none of them.
EventShape classify_event(const Json& event);

enum class ActionKind {
  kExecuteStatement,
  kExecuteSingletonStatement,
  kDescribeStatement,
  kCancelStatement,
  kGetStatementResult,
  kReconcile,
  kQueryRunnerStep,  // the query-runner state machine's step; its fields are checked by QueryRunner
  kListWaiting,      // what is waiting for a completion now (operators' view)
};
std::string_view action_name(ActionKind kind);

// Per-call target fields; each replaces the configured default when present.
struct TargetOverride {
  std::optional<std::string> cluster_identifier;
  std::optional<std::string> workgroup_name;
  std::optional<std::string> database;
  std::optional<std::string> db_user;
  std::optional<std::string> secret_arn;
};

// `defaults` with `override` applied. Naming a cluster drops the default workgroup and vice versa;
// naming a user drops the default secret and vice versa.
services::RedshiftTarget apply_override(const services::RedshiftTarget& defaults,
                                        const TargetOverride& override);

// The statement id that means "the newest statement this execution started".
inline constexpr std::string_view kLatest = "LATEST";

struct ActionRequest {
  ActionKind kind = ActionKind::kExecuteStatement;
  std::vector<std::string> sqls;  // sqlStatement (one) or sqlStatements (a batch)
  bool batch = false;             // came as sqlStatements
  std::vector<services::SqlParameter> parameters;
  std::string statement_id;  // a Data API id, or kLatest
  std::string next_token;
  std::string execution_arn;
  std::string task_token;
  // The caller's name for this start (1 to 512 characters): a repeat with the same key (and
  // executionArn) never starts the SQL again. See StartRequest::idempotency_key.
  std::string idempotency_key;
  TargetOverride target;
  std::optional<std::int64_t> older_than_seconds;  // reconcile; absent: the configured threshold
  std::optional<std::int64_t> limit;               // listWaiting: page size (1 to 100)
};

// Checks SQL text as the Data API would: not empty or blank, at most kMaxSqlLength characters.
// Throws InvalidRequest naming `what`.
void check_sql(const std::string& sql, const std::string& what);

// Parses Data API named parameters, `[{"name": ..., "value": ...}]` as the Data API's
// SqlParameter allows them: names match [0-9a-zA-Z_]+ and are unique, values are non-empty
// strings, numbers or booleans (sent as their text). Throws InvalidRequest naming `what` (the
// field's path) and the element at fault.
std::vector<services::SqlParameter> parse_sql_parameters(const Json& parameters,
                                                         const std::string& what);

// Checks that `arn` is a Step Functions execution ARN short enough to be part of a statement
// name. Throws InvalidRequest.
void check_execution_arn(const std::string& arn);

// Checks an `idempotencyKey`: 1 to 512 characters (room for an execution ARN, a state name and
// a time). Throws InvalidRequest.
void check_idempotency_key(const std::string& key);

// Parses and checks an action event. Throws InvalidRequest naming the field and the problem:
// unknown or mis-cased actions and fields, wrong JSON types, missing or conflicting fields,
// LATEST or taskToken without executionArn, and anything the Data API would refuse anyway
// (empty or over-long SQL, too many batch statements, over-long statement names).
ActionRequest parse_action(const Json& event);

// An event checked as far as it can be without configuration or network: its shape and, for an
// action event, the parsed request. (What remains to check needs more: the Redshift target with
// the configured defaults, a custom-resource request, answered through its ResponseURL, and a
// query-runner step, checked by the QueryRunner.) Only check_event() and read_event() make one.
class CheckedEvent {
 public:
  const Json& event() const { return event_; }
  EventShape shape() const { return shape_; }
  // The parsed request of an action event (EventShape::kAction); nullptr for other shapes.
  const ActionRequest* action() const { return action_ ? &*action_ : nullptr; }

 private:
  friend CheckedEvent check_event(Json event);
  CheckedEvent() = default;

  Json event_;
  EventShape shape_ = EventShape::kAction;
  std::optional<ActionRequest> action_;
};

// Classifies `event` and parses it when it is an action event. Throws InvalidRequest.
CheckedEvent check_event(Json event);

// Parses `payload` as JSON (bounded: depth, UTF-8; errors never quote it) and checks it as
// check_event does. Throws InvalidRequest. Callers use it to refuse a malformed event before
// anything is built or called.
CheckedEvent read_event(std::string_view payload);

}  // namespace rstasker::tasker
