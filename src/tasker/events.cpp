// Event shapes and the checked parsing of action events.
#include "rstasker/tasker/events.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <set>
#include <utility>

#include "rstasker/common/error.hpp"
#include "rstasker/common/text.hpp"

namespace rstasker::tasker {

namespace {

using services::kMaxBatchStatements;
using services::kMaxSqlLength;

constexpr std::size_t kInvocationIdLength = 17;  // "1793654066.123456"
// The statement name is "<executionArn>:<invocationId>" and may not exceed the Data API limit.
constexpr std::size_t kMaxExecutionArnLength =
    services::kMaxStatementNameLength - 1 - kInvocationIdLength;
// Step Functions takes task tokens of 1 to 2,048 characters (SendTaskSuccess, SendTaskFailure,
// SendTaskHeartbeat).
constexpr std::size_t kMaxTaskTokenLength = 2048;
constexpr std::size_t kMaxParameters = 100;
// Room for "<execution ARN>#<state name>#<entered time>", the key a state machine builds.
constexpr std::size_t kMaxIdempotencyKeyLength = 512;

struct ActionInfo {
  std::string_view name;
  ActionKind kind;
};

constexpr std::array<ActionInfo, 8> kActions = {{
    {"executeStatement", ActionKind::kExecuteStatement},
    {"executeSingletonStatement", ActionKind::kExecuteSingletonStatement},
    {"describeStatement", ActionKind::kDescribeStatement},
    {"cancelStatement", ActionKind::kCancelStatement},
    {"getStatementResult", ActionKind::kGetStatementResult},
    {"reconcile", ActionKind::kReconcile},
    {"queryRunnerStep", ActionKind::kQueryRunnerStep},
    {"listWaiting", ActionKind::kListWaiting},
}};

constexpr std::array<std::string_view, 10> kExecuteFields = {
    "sqlStatement",  "sqlStatements", "parameters", "taskToken", "clusterIdentifier",
    "workgroupName", "database",      "dbUser",     "secretArn", "idempotencyKey"};

// The fields an action accepts (besides "action" and "executionArn").
std::set<std::string_view> fields_of(ActionKind kind) {
  switch (kind) {
    case ActionKind::kExecuteStatement:
    case ActionKind::kExecuteSingletonStatement:
      return {kExecuteFields.begin(), kExecuteFields.end()};
    case ActionKind::kDescribeStatement:
    case ActionKind::kCancelStatement:
      return {"statementId"};
    case ActionKind::kGetStatementResult:
      return {"statementId", "nextToken"};
    case ActionKind::kReconcile:
      return {"olderThanSeconds"};
    case ActionKind::kQueryRunnerStep:
      return {};  // QueryRunner checks its own fields
    case ActionKind::kListWaiting:
      return {"limit", "nextToken"};
  }
  return {};
}

// Reads typed fields of one event, naming the field in every complaint.
class EventFields {
 public:
  explicit EventFields(const Json& event) : event_(event) {}

  const Json* find(std::string_view name) const {
    auto it = event_.find(name);
    return it == event_.end() ? nullptr : &*it;
  }

  std::optional<std::string> string(std::string_view name) const {
    const Json* value = find(name);
    if (value == nullptr) return std::nullopt;
    if (!value->is_string()) {
      throw invalid_request("field '" + std::string(name) + "' must be a string, not " +
                            std::string(json_type_name(*value)));
    }
    return value->get<std::string>();
  }

  std::optional<std::string> non_empty_string(std::string_view name) const {
    auto value = string(name);
    if (value && value->empty()) {
      throw invalid_request("field '" + std::string(name) + "' must not be empty");
    }
    return value;
  }

 private:
  const Json& event_;
};

ActionKind parse_kind(const Json& event) {
  auto it = event.find("action");
  if (it == event.end()) {
    if (event.contains("sqlStatement") || event.contains("sqlStatements")) {
      return ActionKind::kExecuteStatement;  // the seed's default
    }
    throw invalid_request("the event has no 'action' (and no 'sqlStatement' to execute)");
  }
  if (!it->is_string()) {
    throw invalid_request("field 'action' must be a string, not " +
                          std::string(json_type_name(*it)));
  }
  const auto& name = it->get_ref<const std::string&>();
  for (const auto& action : kActions) {
    if (action.name == name) return action.kind;
  }
  std::string known;
  for (const auto& action : kActions) {
    if (iequals(action.name, name)) {
      throw invalid_request("unknown action '" + name + "'; did you mean '" +
                            std::string(action.name) + "'? (actions are case-sensitive)");
    }
    known += (known.empty() ? "" : ", ") + std::string(action.name);
  }
  throw invalid_request("unknown action '" + name + "'; expected one of: " + known);
}

void check_fields_known(const Json& event, ActionKind kind) {
  std::set<std::string_view> allowed = fields_of(kind);
  allowed.insert("action");
  allowed.insert("executionArn");
  for (const auto& [key, value] : event.items()) {
    if (allowed.contains(key)) continue;
    for (std::string_view candidate : allowed) {
      if (iequals(candidate, key)) {
        throw invalid_request("unknown field '" + key + "'; did you mean '" +
                              std::string(candidate) + "'? (field names are case-sensitive)");
      }
    }
    // A field another action uses: say so, it is the likelier mistake.
    for (const auto& action : kActions) {
      if (fields_of(action.kind).contains(key)) {
        throw invalid_request("field '" + key + "' is not used by action '" +
                              std::string(action_name(kind)) + "'");
      }
    }
    throw invalid_request("unknown field '" + key + "' in a '" + std::string(action_name(kind)) +
                          "' event");
  }
}

void parse_sql(const EventFields& fields, ActionRequest& request) {
  const Json* one = fields.find("sqlStatement");
  const Json* many = fields.find("sqlStatements");
  if (one != nullptr && many != nullptr) {
    throw invalid_request("give either 'sqlStatement' or 'sqlStatements', not both");
  }
  if (one == nullptr && many == nullptr) {
    throw invalid_request("action '" + std::string(action_name(request.kind)) +
                          "' needs 'sqlStatement' (a string) or 'sqlStatements' (a list)");
  }
  if (one != nullptr) {
    auto sql = fields.string("sqlStatement");
    check_sql(*sql, "field 'sqlStatement'");
    request.sqls.push_back(*sql);
    return;
  }
  if (!many->is_array()) {
    throw invalid_request("field 'sqlStatements' must be a list of strings, not " +
                          std::string(json_type_name(*many)));
  }
  if (many->empty() || many->size() > kMaxBatchStatements) {
    throw invalid_request("field 'sqlStatements' must hold 1 to " +
                          std::to_string(kMaxBatchStatements) + " statements, not " +
                          std::to_string(many->size()));
  }
  for (std::size_t i = 0; i < many->size(); ++i) {
    const Json& sql = (*many)[i];
    std::string what = "sqlStatements[" + std::to_string(i) + "]";
    if (!sql.is_string()) {
      throw invalid_request(what + " must be a string, not " + std::string(json_type_name(sql)));
    }
    check_sql(sql.get<std::string>(), what);
    request.sqls.push_back(sql.get<std::string>());
  }
  request.batch = true;
}

void parse_parameters(const EventFields& fields, ActionRequest& request) {
  const Json* parameters = fields.find("parameters");
  if (parameters == nullptr) return;
  if (request.batch) {
    throw invalid_request(
        "'parameters' cannot be used with 'sqlStatements' (BatchExecuteStatement takes none)");
  }
  request.parameters = parse_sql_parameters(*parameters, "field 'parameters'");
}

}  // namespace

void check_sql(const std::string& sql, const std::string& what) {
  if (is_blank(sql)) throw invalid_request(what + " is empty");
  if (const std::size_t chars = utf8_length(sql); chars > kMaxSqlLength) {
    throw invalid_request(what + " is " + std::to_string(chars) +
                          " characters long; the Data API accepts at most " +
                          std::to_string(kMaxSqlLength));
  }
}

std::vector<services::SqlParameter> parse_sql_parameters(const Json& parameters,
                                                         const std::string& what) {
  if (!parameters.is_array()) {
    throw invalid_request(what + " must be a list of {\"name\", \"value\"} objects, not " +
                          std::string(json_type_name(parameters)));
  }
  if (parameters.size() > kMaxParameters) {
    throw invalid_request(what + " holds more than " + std::to_string(kMaxParameters) +
                          " parameters");
  }
  std::vector<services::SqlParameter> out;
  std::set<std::string> seen;
  for (std::size_t i = 0; i < parameters.size(); ++i) {
    const Json& p = parameters[i];
    const std::string where = what + " item " + std::to_string(i);
    if (!p.is_object()) throw invalid_request(where + " must be an object with name and value");
    for (const auto& [key, v] : p.items()) {
      if (key != "name" && key != "value") {
        throw invalid_request(where + " has an unknown field '" + key + "'");
      }
    }
    auto name = p.find("name");
    if (name == p.end() || !name->is_string() || name->get_ref<const std::string&>().empty()) {
      throw invalid_request(where + ": 'name' must be a non-empty string");
    }
    const auto& n = name->get_ref<const std::string&>();
    // The Data API's SqlParameter pattern, [0-9a-zA-Z_]+: a leading digit is allowed.
    bool identifier = std::all_of(n.begin(), n.end(), [](unsigned char c) {
      return (c < 0x80 && std::isalnum(c) != 0) || c == '_';
    });
    if (!identifier) {
      throw invalid_request(where + ": name '" + n +
                            "' must be letters, digits and underscores only ([0-9a-zA-Z_]+)");
    }
    if (!seen.insert(n).second) {
      throw invalid_request(what + ": parameter '" + n + "' is given twice");
    }
    auto value = p.find("value");
    if (value == p.end()) throw invalid_request(where + " has no value");
    if (value->is_string()) {
      // The Data API refuses an empty value (SqlParameter.value: at least 1 character).
      if (value->get_ref<const std::string&>().empty()) {
        throw invalid_request(where + ": the value of '" + n +
                              "' is empty; the Data API needs at least one character");
      }
      out.push_back({n, value->get<std::string>()});
    } else if (value->is_number() || value->is_boolean()) {
      out.push_back({n, value->dump()});  // the Data API takes every value as text
    } else {
      throw invalid_request(where + ": 'value' must be a string, number or boolean, not " +
                            std::string(json_type_name(*value)));
    }
  }
  return out;
}

void check_idempotency_key(const std::string& key) {
  if (key.empty() || key.size() > kMaxIdempotencyKeyLength) {
    throw invalid_request("field 'idempotencyKey' must be 1 to " +
                          std::to_string(kMaxIdempotencyKeyLength) + " characters long, not " +
                          std::to_string(key.size()));
  }
}

void check_execution_arn(const std::string& arn) {
  // arn:<partition>:states:<region>:<account>:execution|express:<machine>:<name>[:...]
  std::vector<std::string_view> parts;
  std::string_view rest = arn;
  while (true) {
    auto colon = rest.find(':');
    parts.push_back(rest.substr(0, colon));
    if (colon == std::string_view::npos) break;
    rest.remove_prefix(colon + 1);
  }
  bool ok = parts.size() >= 8 && parts[0] == "arn" && !parts[1].empty() && parts[2] == "states" &&
            (parts[5] == "execution" || parts[5] == "express") && !parts[6].empty() &&
            !parts[7].empty();
  if (!ok) {
    throw invalid_request(
        "field 'executionArn' is not a Step Functions execution ARN "
        "(arn:aws:states:<region>:<account>:execution:<machine>:<name>); in a "
        "state machine pass \"executionArn.$\": \"$$.Execution.Id\"");
  }
  if (arn.size() > kMaxExecutionArnLength) {
    throw invalid_request("field 'executionArn' is longer than " +
                          std::to_string(kMaxExecutionArnLength) + " characters");
  }
}

EventShape classify_event(const Json& event) {
  if (!event.is_object()) {
    throw invalid_request("the event must be a JSON object, not " +
                          std::string(json_type_name(event)));
  }
  if (event.empty()) throw invalid_request("the event is an empty object");
  if (auto records = event.find("Records"); records != event.end()) {
    bool sqs = records->is_array() && !records->empty() &&
               std::all_of(records->begin(), records->end(), [](const Json& r) {
                 return r.is_object() && r.value("eventSource", "") == "aws:sqs";
               });
    if (!sqs) {
      throw invalid_request(
          "'Records' must be a non-empty list of SQS records "
          "(eventSource \"aws:sqs\")");
    }
    return EventShape::kSqsBatch;
  }
  if (event.contains("RequestType") && event.contains("ResponseURL")) {
    return EventShape::kCloudFormation;
  }
  if (event.contains("action") || event.contains("sqlStatement") ||
      event.contains("sqlStatements")) {
    return EventShape::kAction;
  }
  throw invalid_request(
      "unrecognised event: expected an action event (with 'action' or 'sqlStatement'), an SQS "
      "batch ('Records') or a CloudFormation custom-resource request ('RequestType', "
      "'ResponseURL')");
}

std::string_view action_name(ActionKind kind) {
  for (const auto& action : kActions) {
    if (action.kind == kind) return action.name;
  }
  return "unknown";
}

services::RedshiftTarget apply_override(const services::RedshiftTarget& defaults,
                                        const TargetOverride& override) {
  services::RedshiftTarget target = defaults;
  if (override.cluster_identifier) {
    target.cluster_identifier = *override.cluster_identifier;
    target.workgroup_name.clear();
  }
  if (override.workgroup_name) {
    target.workgroup_name = *override.workgroup_name;
    if (!override.cluster_identifier) target.cluster_identifier.clear();
  }
  if (override.database) target.database = *override.database;
  if (override.db_user) {
    target.db_user = *override.db_user;
    if (!override.secret_arn) target.secret_arn.clear();
  }
  if (override.secret_arn) {
    target.secret_arn = *override.secret_arn;
    if (!override.db_user) target.db_user.clear();
  }
  return target;
}

ActionRequest parse_action(const Json& event) {
  if (!event.is_object()) {
    throw invalid_request("the event must be a JSON object, not " +
                          std::string(json_type_name(event)));
  }
  ActionRequest request;
  request.kind = parse_kind(event);
  if (request.kind == ActionKind::kQueryRunnerStep) return request;
  check_fields_known(event, request.kind);
  EventFields fields(event);

  if (auto arn = fields.non_empty_string("executionArn")) {
    check_execution_arn(*arn);
    request.execution_arn = *arn;
  }

  switch (request.kind) {
    case ActionKind::kExecuteStatement:
    case ActionKind::kExecuteSingletonStatement: {
      parse_sql(fields, request);
      parse_parameters(fields, request);
      if (auto token = fields.non_empty_string("taskToken")) {
        if (token->size() > kMaxTaskTokenLength) {
          throw invalid_request("field 'taskToken' is longer than " +
                                std::to_string(kMaxTaskTokenLength) + " characters");
        }
        if (request.execution_arn.empty()) {
          throw invalid_request(
              "'taskToken' needs 'executionArn' too (in a state machine: "
              "\"executionArn.$\": \"$$.Execution.Id\")");
        }
        request.task_token = *token;
      }
      if (auto key = fields.string("idempotencyKey")) {
        if (key->empty() || key->size() > kMaxIdempotencyKeyLength) {
          throw invalid_request("field 'idempotencyKey' must be 1 to " +
                                std::to_string(kMaxIdempotencyKeyLength) +
                                " characters long, not " + std::to_string(key->size()));
        }
        request.idempotency_key = *key;
      }
      request.target.cluster_identifier = fields.non_empty_string("clusterIdentifier");
      request.target.workgroup_name = fields.non_empty_string("workgroupName");
      request.target.database = fields.non_empty_string("database");
      request.target.db_user = fields.non_empty_string("dbUser");
      request.target.secret_arn = fields.non_empty_string("secretArn");
      if (request.target.cluster_identifier && request.target.workgroup_name) {
        throw invalid_request("give either 'clusterIdentifier' or 'workgroupName', not both");
      }
      if (request.target.db_user && request.target.secret_arn) {
        throw invalid_request("give either 'dbUser' or 'secretArn', not both");
      }
      break;
    }
    case ActionKind::kDescribeStatement:
    case ActionKind::kCancelStatement:
    case ActionKind::kGetStatementResult: {
      auto id = fields.non_empty_string("statementId");
      if (!id) {
        throw invalid_request("action '" + std::string(action_name(request.kind)) +
                              "' needs 'statementId' (a statement id, or \"LATEST\" with "
                              "'executionArn')");
      }
      if (*id == kLatest && request.execution_arn.empty()) {
        throw invalid_request(
            "statementId \"LATEST\" needs 'executionArn' (in a state machine: "
            "\"executionArn.$\": \"$$.Execution.Id\")");
      }
      request.statement_id = *id;
      if (auto token = fields.non_empty_string("nextToken")) request.next_token = *token;
      break;
    }
    case ActionKind::kQueryRunnerStep:
      break;
    case ActionKind::kListWaiting: {
      if (const Json* limit = fields.find("limit")) {
        if (!limit->is_number_integer() || limit->get<std::int64_t>() < 1 ||
            limit->get<std::int64_t>() > 100) {
          throw invalid_request("field 'limit' must be a whole number from 1 to 100");
        }
        request.limit = limit->get<std::int64_t>();
      }
      request.next_token = fields.string("nextToken").value_or("");
      break;
    }
    case ActionKind::kReconcile: {
      if (const Json* older = fields.find("olderThanSeconds")) {
        if (!older->is_number_integer() || older->get<std::int64_t>() < 0 ||
            older->get<std::int64_t>() > 86400) {
          throw invalid_request("field 'olderThanSeconds' must be a whole number from 0 to 86400");
        }
        request.older_than_seconds = older->get<std::int64_t>();
      }
      break;
    }
  }
  return request;
}

CheckedEvent check_event(Json event) {
  CheckedEvent checked;
  checked.shape_ = classify_event(event);
  if (checked.shape_ == EventShape::kAction) checked.action_ = parse_action(event);
  checked.event_ = std::move(event);
  return checked;
}

CheckedEvent read_event(std::string_view payload) {
  return check_event(parse_json(payload, "the event", error_names::kInvalidRequest));
}

}  // namespace rstasker::tasker
