// CloudFormation custom resources: decide the SQL for a request (or answer it at once), start it
// with a CloudFormation waiter, and answer when it completes.
#include "rstasker/tasker/cloudformation.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <optional>

#include "rstasker/aws/sigv4.hpp"
#include "rstasker/common/deadline.hpp"
#include "rstasker/common/error.hpp"
#include "rstasker/common/json.hpp"
#include "rstasker/common/log.hpp"
#include "rstasker/common/text.hpp"
#include "tasker/redshift_user.hpp"

namespace rstasker::tasker {

namespace {

constexpr std::string_view kSqlResource = "Custom::RedshiftSql";
constexpr std::string_view kUserResource = "Custom::RedshiftUser";
constexpr std::string_view kSupportedTypes =
    "supported types are Custom::RedshiftSql (CreateSql / UpdateSql / DeleteSql) and "
    "Custom::RedshiftUser, or send the SQL in a 'sqlStatement' field";

// A Create that failed answers with a physical id carrying this tag, so the Delete CloudFormation
// sends next is recognised and answered without running anything.
constexpr std::string_view kFailedCreateTag = ":rstasker-create-failed:";

constexpr std::size_t kMaxPhysicalIdBytes = 1024;  // CloudFormation's limit
constexpr std::size_t kMaxLogicalIdBytesInId = 255;
constexpr std::size_t kMaxResponseUrlBytes = 16 * 1024;
// Shortening the body keeps at least this much Reason before it gives up Data.
constexpr std::size_t kMinReasonBytes = 1024;
// Never less than this, so a FAILED answer keeps a Reason whatever else gives way.
constexpr std::size_t kLastReasonBytes = 32;
constexpr std::string_view kTruncatedMarker = " [truncated]";
constexpr std::size_t kMaxLoggedReasonChars = 300;

// Request fields come from the caller: bounded before they reach a log line.
std::string for_log(std::string_view text) {
  return truncate_utf8_chars(text, 100);
}

// Why `request` has no ResponseURL we can PUT to, or "" when it has one. Never quotes the URL.
std::string response_url_problem(const Json& request) {
  auto it = request.find("ResponseURL");
  if (it == request.end()) return "it has no ResponseURL";
  if (!it->is_string()) return "its ResponseURL is not a string";
  const auto& url = it->get_ref<const std::string&>();
  if (url.size() > kMaxResponseUrlBytes) return "its ResponseURL is too long";
  std::size_t host_start = 0;
  if (url.starts_with("https://")) {
    host_start = 8;
  } else if (url.starts_with("http://")) {
    host_start = 7;
  }
  if (host_start == 0 || host_start >= url.size() || url[host_start] == '/' ||
      url[host_start] == '?') {
    return "its ResponseURL is not an http(s) URL with a host";
  }
  auto control = std::find_if(url.begin(), url.end(), [](char c) {
    return static_cast<unsigned char>(c) <= 0x20 || c == 0x7F;
  });
  if (control != url.end()) return "its ResponseURL contains spaces or control characters";
  return {};
}

// The common fields of a request, checked, and the physical ids it may be answered with.
struct Request {
  explicit Request(const Json& request) : raw(request) {}

  const Json& raw;
  std::string request_type;
  std::string response_url;
  std::string stack_id;
  std::string request_id;
  std::string logical_id;
  std::string resource_type;
  std::string physical_id;  // as received (Update, Delete)
  std::string created_id;   // a Create's id when it succeeds
  std::string failed_id;    // a Create's id when it fails

  std::string success_id() const { return request_type == "Create" ? created_id : physical_id; }
  std::string failure_id() const {
    return request_type == "Create" || physical_id.empty() ? failed_id : physical_id;
  }
};

Request read_request(const Json& raw) {
  Request request(raw);
  request.request_type = string_member(raw, "RequestType");
  request.response_url = string_member(raw, "ResponseURL");
  request.stack_id = string_member(raw, "StackId");
  request.request_id = string_member(raw, "RequestId");
  request.logical_id = string_member(raw, "LogicalResourceId");
  request.resource_type = string_member(raw, "ResourceType");
  request.physical_id = string_member(raw, "PhysicalResourceId");
  // Stable for the request (a redelivery answers with the same id), unique per stack and request.
  const std::string suffix =
      aws::sha256_hex(request.stack_id + "\n" + request.logical_id + "\n" + request.request_id)
          .substr(0, 16);
  std::string base = request.logical_id.empty()
                         ? std::string("resource")
                         : truncate_utf8_bytes(request.logical_id, kMaxLogicalIdBytesInId, "");
  request.created_id = base + ":" + suffix;
  request.failed_id = base + std::string(kFailedCreateTag) + suffix;
  return request;
}

// What is wrong with the common fields ("" when nothing).
std::string common_problems(const Request& request) {
  std::vector<std::string> problems;
  const Json& raw = request.raw;
  const bool known_type = request.request_type == "Create" || request.request_type == "Update" ||
                          request.request_type == "Delete";
  if (!known_type) problems.push_back("RequestType must be Create, Update or Delete");
  for (const char* key : {"StackId", "RequestId", "LogicalResourceId", "ResourceType"}) {
    if (string_member(raw, key).empty()) {
      problems.push_back(std::string(key) + " must be a non-empty string");
    }
  }
  if ((request.request_type == "Update" || request.request_type == "Delete") &&
      request.physical_id.empty()) {
    problems.push_back("PhysicalResourceId must be a non-empty string for " + request.request_type);
  }
  if (request.physical_id.size() > kMaxPhysicalIdBytes) {
    problems.push_back("PhysicalResourceId is longer than CloudFormation allows");
  }
  std::string text;
  for (const auto& problem : problems) text += (text.empty() ? "" : "; ") + problem;
  return text;
}

// The state-table partition of the request's statements: one per request (a retried invocation of
// the same request resumes its statement rather than running the SQL again). A digest of what
// identifies the request, so statement names stay short whatever CloudFormation sends.
std::string caller_id_for(const Request& request) {
  return "cfn:" + aws::sha256_hex(request.stack_id + '\n' + request.logical_id + '\n' +
                                  request.request_type + '\n' + request.request_id)
                      .substr(0, 32);
}

// A digest of custom-resource properties as canonical JSON: object keys in sorted order
// (nlohmann::json keeps them sorted), no whitespace. A missing or non-object value counts as {}.
std::string properties_digest(const Json& properties) {
  return aws::sha256_hex(dump_json(properties.is_object() ? properties : Json::object()));
}

// What to do for a request: SQL to run, or an answer to give at once.
struct Plan {
  std::vector<std::string> sqls;  // empty: answer now with `reason` (SUCCESS)
  std::string reason;
  Json data = Json::object();  // Data of every SUCCESS answer
};

const Json& properties_of(const Json& raw, std::string_view key) {
  static const Json kEmpty = Json::object();
  auto it = raw.find(key);
  return it != raw.end() && it->is_object() ? *it : kEmpty;
}

void check_data_api_limits(const std::vector<std::string>& sqls) {
  if (sqls.size() > services::kMaxBatchStatements) {
    throw invalid_request("the change needs " + std::to_string(sqls.size()) +
                          " SQL statements; one transaction holds at most " +
                          std::to_string(services::kMaxBatchStatements) +
                          ": split it into several updates");
  }
  for (const auto& sql : sqls) {
    if (sql.size() > services::kMaxSqlLength) {
      throw invalid_request("a SQL statement is " + std::to_string(sql.size()) +
                            " characters; the Data API accepts at most " +
                            std::to_string(services::kMaxSqlLength));
    }
  }
}

// The properties of Custom::RedshiftSql, and those CloudFormation adds to every custom resource.
constexpr std::string_view kSqlProperties[] = {"CreateSql", "UpdateSql", "DeleteSql"};
constexpr std::string_view kCloudFormationProperties[] = {"ServiceToken", "ServiceTimeout"};

// A property name as a person may have meant it: case, '_' and '-' ignored.
std::string loose_name(std::string_view name) {
  std::string out;
  for (char c : name) {
    if (c != '_' && c != '-') out += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  }
  return out;
}

// Refuses any property Custom::RedshiftSql does not know, whatever the request type: a misspelt
// DeleteSql accepted by the Create would make the Delete run nothing.
void check_sql_property_names(const Json& properties) {
  for (const auto& item : properties.items()) {
    const std::string& name = item.key();  // a plain reference: lambdas may capture it
    auto is = [&](std::string_view known) { return known == name; };
    if (std::any_of(std::begin(kSqlProperties), std::end(kSqlProperties), is) ||
        std::any_of(std::begin(kCloudFormationProperties), std::end(kCloudFormationProperties),
                    is)) {
      continue;
    }
    auto near =
        std::find_if(std::begin(kSqlProperties), std::end(kSqlProperties),
                     [&](std::string_view known) { return loose_name(known) == loose_name(name); });
    std::string shown = excerpt(name);
    if (near != std::end(kSqlProperties)) {
      throw invalid_request("property '" + shown + "' is not recognised; did you mean '" +
                            std::string(*near) + "'?");
    }
    throw invalid_request("property '" + shown +
                          "' is not recognised (supported: CreateSql, UpdateSql, DeleteSql)");
  }
}

// One SQL property of Custom::RedshiftSql: a string or a list of strings (one transaction).
std::vector<std::string> sql_property(const Json& properties, std::string_view key) {
  auto it = properties.find(key);
  if (it == properties.end() || it->is_null()) return {};
  if (it->is_string()) {
    const auto& sql = it->get_ref<const std::string&>();
    if (is_blank(sql)) return {};
    return {sql};
  }
  if (!it->is_array()) {
    throw invalid_request(std::string(key) + " must be SQL text or a list of SQL statements, not " +
                          std::string(json_type_name(*it)));
  }
  std::vector<std::string> sqls;
  for (std::size_t i = 0; i < it->size(); ++i) {
    const Json& entry = (*it)[i];
    if (!entry.is_string() || is_blank(entry.get_ref<const std::string&>())) {
      throw invalid_request(std::string(key) + "[" + std::to_string(i) +
                            "] must be a non-empty SQL string");
    }
    sqls.push_back(entry.get<std::string>());
  }
  return sqls;
}

// Every request checks all three SQL properties, not only its own, so a Create never accepts
// what its Update or Delete could not use. A Delete refused this way belongs to a resource an
// earlier version created: it fails, saying how to get out, rather than dropping nothing.
Plan plan_sql_resource(const Request& request) {
  const Json& properties = properties_of(request.raw, "ResourceProperties");
  const std::string key = request.request_type + "Sql";
  Plan plan;
  try {
    check_sql_property_names(properties);
    for (std::string_view property : kSqlProperties) {
      std::vector<std::string> sqls = sql_property(properties, property);
      if (!sqls.empty()) check_data_api_limits(sqls);
      if (property == key) plan.sqls = std::move(sqls);
    }
  } catch (const Error& e) {
    if (request.request_type != "Delete") throw;
    throw invalid_request(e.message() +
                          "; the Delete cannot run its DeleteSql: correct the properties with a "
                          "stack update, or delete the stack retaining this resource");
  }
  if (plan.sqls.empty()) plan.reason = key + " is empty: nothing to run";
  return plan;
}

Plan plan_user_resource(const Request& request) {
  const Json& properties = properties_of(request.raw, "ResourceProperties");
  Plan plan;
  if (request.request_type == "Delete") {
    plan.sqls = drop_user_sql(parse_redshift_username(properties));
    return plan;
  }
  RedshiftUser after = parse_redshift_user(properties);
  plan.data = {{"Username", after.username}};
  if (request.request_type == "Create") {
    plan.sqls = create_user_sql(after);
    return plan;
  }
  auto old = request.raw.find("OldResourceProperties");
  if (old == request.raw.end() || !old->is_object()) {
    throw invalid_request("an Update needs OldResourceProperties to know what to change");
  }
  RedshiftUser before;
  try {
    before = parse_redshift_user(*old);
  } catch (const Error& e) {
    // We refuse properties like these before any SQL runs, so they were never applied: this is
    // the rollback of an update we refused, and Redshift still has the user as `after` says.
    plan.reason = "nothing to change: the previous properties were refused before any SQL ran (" +
                  e.message() + ")";
    return plan;
  }
  plan.sqls = update_user_sql(before, after);
  if (plan.sqls.empty()) plan.reason = "nothing to change: the properties describe the same user";
  return plan;
}

// An Update of Custom::RedshiftUser whose SQL the tasker builds (not a seed-style sqlStatement):
// one whose failure must be remembered for its rollback.
bool is_user_update(const Request& request) {
  return request.request_type == "Update" && request.resource_type == kUserResource &&
         !request.raw.contains("sqlStatement");
}

// The waiter's UserUpdate member: digests of the properties the Update applies and of those the
// resource had.
Json user_update_digests(const Request& request) {
  return {
      {"Properties", properties_digest(properties_of(request.raw, "ResourceProperties"))},
      {"OldProperties", properties_digest(properties_of(request.raw, "OldResourceProperties"))}};
}

Plan plan_for(const Request& request) {
  if (auto it = request.raw.find("sqlStatement"); it != request.raw.end()) {
    if (!it->is_string() || is_blank(it->get_ref<const std::string&>())) {
      throw invalid_request("sqlStatement must be a non-empty SQL string");
    }
    return Plan{{it->get<std::string>()}, {}, Json::object()};
  }
  if (request.resource_type == kSqlResource) return plan_sql_resource(request);
  if (request.resource_type == kUserResource) return plan_user_resource(request);
  throw invalid_request("ResourceType '" +
                        truncate_utf8_chars(request.resource_type, 100, kTruncatedMarker) +
                        "' is not supported: " + std::string(kSupportedTypes));
}

Json summary(std::string_view status, const std::string& physical_id) {
  return {{"Status", status}, {"PhysicalResourceId", physical_id}};
}

// Valid UTF-8 (invalid sequences become U+FFFD), so lengths measured here hold after dumping.
std::string valid_utf8(const std::string& text) {
  if (is_valid_utf8(text)) return text;
  return Json::parse(dump_json(Json(text))).get<std::string>();
}

// Sets body[key] to the longest prefix of `text` (cut on a code point, marked) with which the
// body fits, but no shorter than `floor` bytes. Returns whether the body fits.
bool fit_member(Json& body, const char* key, const std::string& text, std::size_t floor) {
  auto fits = [&](std::size_t limit) {
    body[key] = limit >= text.size() ? text : truncate_utf8_bytes(text, limit, kTruncatedMarker);
    return dump_json(body).size() <= services::kMaxCfnResponseBytes;
  };
  if (fits(text.size())) return true;
  // The dumped size only grows with the limit (escapes make a byte cost up to six), so search.
  std::size_t low = std::min(floor, text.size());
  std::size_t high = std::min(text.size(), services::kMaxCfnResponseBytes);
  if (!fits(low)) return false;
  while (low < high) {
    const std::size_t middle = low + (high - low + 1) / 2;
    if (fits(middle)) {
      low = middle;
    } else {
      high = middle - 1;
    }
  }
  return fits(low);
}

}  // namespace

std::string cfn_response_body(const Json& request, bool success, const std::string& reason,
                              const std::string& physical_id, const Json& data) {
  std::string full_reason = valid_utf8(reason);
  if (full_reason.empty() && !success) full_reason = "failed (no reason was given)";
  std::string physical = valid_utf8(physical_id);
  if (physical.empty()) physical = valid_utf8(string_member(request, "LogicalResourceId"));
  if (physical.empty()) physical = "redshift-tasker";
  physical = truncate_utf8_bytes(physical, kMaxPhysicalIdBytes, "");

  Json body = {{"Status", success ? "SUCCESS" : "FAILED"},
               {"Reason", full_reason},
               {"PhysicalResourceId", physical},
               {"StackId", valid_utf8(string_member(request, "StackId"))},
               {"RequestId", valid_utf8(string_member(request, "RequestId"))},
               {"LogicalResourceId", valid_utf8(string_member(request, "LogicalResourceId"))},
               {"NoEcho", false},
               {"Data", data.is_object() ? data : Json::object()}};
  std::string text = dump_json(body);
  if (text.size() <= services::kMaxCfnResponseBytes) return text;

  // The Reason goes first (down to a useful minimum), then Data members, largest first.
  if (fit_member(body, "Reason", full_reason, std::min(kMinReasonBytes, full_reason.size()))) {
    return dump_json(body);
  }
  Json& kept = body["Data"];
  while (!kept.empty()) {
    auto largest = kept.begin();
    for (auto it = kept.begin(); it != kept.end(); ++it) {
      if (dump_json(*it).size() + it.key().size() >
          dump_json(*largest).size() + largest.key().size()) {
        largest = it;
      }
    }
    kept.erase(largest);
    if (dump_json(body).size() <= services::kMaxCfnResponseBytes) break;
  }
  if (fit_member(body, "Reason", full_reason, kLastReasonBytes)) return dump_json(body);

  // Only a malformed request gets here: its echoed fields alone are too large. CloudFormation
  // will not match such an answer anyway; the body still stays whole and within the limit.
  for (std::size_t cap : {512u, 128u, 32u}) {
    for (const char* key : {"PhysicalResourceId", "StackId", "RequestId", "LogicalResourceId"}) {
      body[key] = truncate_utf8_bytes(body[key].get<std::string>(), cap, "");
    }
    if (fit_member(body, "Reason", full_reason, kLastReasonBytes)) break;
  }
  return dump_json(body);
}

CustomResources::CustomResources(const Config& config, Launcher& launcher,
                                 std::shared_ptr<services::CfnResponder> responder,
                                 std::shared_ptr<StateTable> state)
    : config_(config),
      launcher_(launcher),
      responder_(std::move(responder)),
      state_(std::move(state)) {}

void CustomResources::note_user_update(const std::string& physical_id, const Json& digests,
                                       bool failed, const aws::CallContext& context) {
  if (physical_id.empty()) return;
  if (!failed) {
    // Never skipped: a record left behind would answer a later, real change back to these
    // properties without running its SQL. So the SUCCESS answer waits until it is gone: any
    // failure is one to retry (the completion comes back), never a reason to answer regardless.
    try {
      state_->forget_failed_update(physical_id, context);
    } catch (const Error& e) {
      throw Error(
          e.name(),
          "could not forget the failed update of " + for_log(physical_id) + ": " + e.message(),
          e.http_status(), /*retryable=*/true);
    }
    return;
  }
  try {
    FailedUpdate update;
    update.physical_id = physical_id;
    update.failed_digest = string_member(digests, "Properties");
    update.restored_digest = string_member(digests, "OldProperties");
    update.expires_at_s = now_epoch_seconds() + static_cast<std::int64_t>(config_.ttl_days) * 86400;
    state_->record_failed_update(update, context);
  } catch (const Error& e) {
    if (may_succeed_later(e)) throw;
    // Answering matters more: CloudFormation would otherwise wait an hour for nothing. Without
    // the record the rollback runs its reverse diff, as it would have before.
    spdlog::error("could not record the failed update of {}: {}: {}; answering anyway",
                  for_log(physical_id), e.name(), e.message());
  }
}

Json CustomResources::handle(const Json& raw, const aws::CallContext& context) {
  if (!raw.is_object()) throw invalid_request("a CloudFormation request must be a JSON object");
  if (auto problem = response_url_problem(raw); !problem.empty()) {
    throw invalid_request("the CloudFormation request cannot be answered: " + problem);
  }
  if (auto problem = responder_->url_problem(string_member(raw, "ResponseURL")); !problem.empty()) {
    // Refused before any work: nothing is ever sent to a host the sender chose.
    throw invalid_request("the CloudFormation request cannot be answered: its ResponseURL " +
                          problem);
  }
  const Request request = read_request(raw);
  log::ScopedSecret url_guard(request.response_url);

  auto answer = [&](bool success, const std::string& reason, const std::string& physical_id,
                    const Json& data) {
    responder_->send(request.response_url,
                     cfn_response_body(raw, success, reason, physical_id, data), context);
    spdlog::info("answered CloudFormation {} {} of {} (request {}) at once: {}",
                 success ? "SUCCESS" : "FAILED", for_log(request.request_type),
                 for_log(request.logical_id), for_log(request.request_id),
                 truncate_utf8_chars(reason, kMaxLoggedReasonChars));
    Json out = summary(success ? "SUCCESS" : "FAILED", physical_id);
    out["Reason"] = reason;
    return out;
  };

  if (auto problem = common_problems(request); !problem.empty()) {
    return answer(false, "invalid CloudFormation request: " + problem, request.failure_id(),
                  Json::object());
  }
  if (request.request_type == "Delete" &&
      request.physical_id.find(kFailedCreateTag) != std::string::npos) {
    return answer(true, "nothing to delete: the Create of this resource failed",
                  request.physical_id, Json::object());
  }

  const bool user_update = is_user_update(request);
  const Json digests = user_update ? user_update_digests(request) : Json();
  // Every FAILED answer to a user Update is recorded first, so its rollback is recognised.
  auto fail = [&](const std::string& reason) {
    if (user_update) note_user_update(request.physical_id, digests, true, context);
    return answer(false, reason, request.failure_id(), Json::object());
  };
  if (user_update) {
    std::optional<FailedUpdate> failed;
    try {
      failed = state_->failed_update(request.physical_id, context);
    } catch (const Error& e) {
      if (may_succeed_later(e)) throw;
      spdlog::error("could not look up failed updates of {}: {}: {}", for_log(request.physical_id),
                    e.name(), e.message());
    }
    if (failed && failed->failed_digest == string_member(digests, "OldProperties") &&
        failed->restored_digest == string_member(digests, "Properties")) {
      Json data = Json::object();
      try {
        data["Username"] =
            parse_redshift_username(properties_of(request.raw, "ResourceProperties"));
      } catch (const Error&) {
        // Properties the Create accepted; without a username there is just no Data.
      }
      return answer(true,
                    "nothing to change: this rolls back an update that failed without changing "
                    "anything, so Redshift still has the user these properties describe",
                    request.physical_id, data);
    }
  }

  Plan plan;
  try {
    plan = plan_for(request);
    if (!plan.sqls.empty()) check_data_api_limits(plan.sqls);
  } catch (const Error& e) {
    return fail(e.message());
  }
  if (plan.sqls.empty()) return answer(true, plan.reason, request.success_id(), plan.data);
  if (auto problem = describe_target_problem(config_.target); !problem.empty()) {
    return fail("the tasker's Redshift target is misconfigured: " + problem);
  }

  StartRequest start;
  start.caller_id = caller_id_for(request);
  start.resume = true;  // a retried invocation of this request must not run the SQL twice
  start.target = config_.target;
  start.sqls = std::move(plan.sqls);
  start.waiter.kind = WaiterKind::kCloudFormation;
  start.waiter.cloudformation = {{"ResponseURL", request.response_url},
                                 {"StackId", request.stack_id},
                                 {"RequestId", request.request_id},
                                 {"LogicalResourceId", request.logical_id},
                                 {"RequestType", request.request_type},
                                 {"ResourceType", request.resource_type},
                                 {"PhysicalResourceId", request.success_id()},
                                 {"FailedPhysicalResourceId", request.failure_id()},
                                 {"Data", plan.data}};
  if (user_update) start.waiter.cloudformation["UserUpdate"] = digests;
  StartResult started;
  try {
    started = launcher_.start(start, context);
  } catch (const Error& e) {
    // Worth another try (the invocation fails and is retried; nothing has been answered yet) or
    // final: then CloudFormation hears it now rather than after its timeout.
    if (may_succeed_later(e)) throw;
    return fail("Redshift did not start the SQL: " + e.name() + ": " + e.message());
  }
  spdlog::info("CloudFormation {} of {} (request {}) waits for statement {}", request.request_type,
               for_log(request.logical_id), for_log(request.request_id),
               started.key.statement_name());
  Json out = summary("STARTED", request.success_id());
  out["StatementId"] = started.response.value("Id", "");
  out["StatementName"] = started.key.statement_name();
  return out;
}

void CustomResources::respond_completion(const Json& waiter_request, const Outcome& outcome,
                                         const aws::CallContext& context) {
  if (!waiter_request.is_object() || !response_url_problem(waiter_request).empty()) {
    throw Error(error_names::kInternalError, "the CloudFormation waiter of statement " +
                                                 outcome.statement_name +
                                                 " has no usable ResponseURL");
  }
  const std::string url = string_member(waiter_request, "ResponseURL");
  log::ScopedSecret url_guard(url);
  const bool success = outcome.succeeded();
  std::string physical_id = string_member(waiter_request, "PhysicalResourceId");
  if (!success) {
    std::string failed = string_member(waiter_request, "FailedPhysicalResourceId");
    if (!failed.empty()) physical_id = failed;
  }

  std::string reason;
  const std::string statement =
      outcome.statement_id.empty() ? outcome.statement_name : outcome.statement_id;
  if (success) {
    reason = "SQL finished (statement " + statement + ")";
  } else {
    reason = string_member(waiter_request, "RequestType") + " failed: Redshift statement " +
             statement + " ended " + std::string(services::to_string(outcome.status));
    if (outcome.status == services::StatementStatus::kAborted) reason += " (cancelled)";
    reason +=
        outcome.error.empty() ? std::string(": Redshift gave no error text") : ": " + outcome.error;
  }
  Json data = waiter_request.contains("Data") && waiter_request["Data"].is_object()
                  ? waiter_request["Data"]
                  : Json::object();
  if (!outcome.statement_id.empty()) data["StatementId"] = outcome.statement_id;

  if (auto digests = waiter_request.find("UserUpdate");
      digests != waiter_request.end() && digests->is_object()) {
    note_user_update(string_member(waiter_request, "PhysicalResourceId"), *digests, !success,
                     context);
  }
  responder_->send(url, cfn_response_body(waiter_request, success, reason, physical_id, data),
                   context);
  spdlog::info("answered CloudFormation {} {} of {} (request {}) for statement {}",
               success ? "SUCCESS" : "FAILED",
               for_log(string_member(waiter_request, "RequestType")),
               for_log(string_member(waiter_request, "LogicalResourceId")),
               for_log(string_member(waiter_request, "RequestId")), statement);
}

}  // namespace rstasker::tasker
