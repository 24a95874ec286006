// The query runner: seed 004's polling state machine, one step per invocation. The state machine
// carries the runner state (queries, progress, waits) around a Task -> Choice -> Wait loop; every
// decision — poll again, move on, retry after a decorrelated-jitter wait, fail — is made here.
#include "rstasker/tasker/query_runner.hpp"

#include <re2/re2.h>
#include <spdlog/fmt/fmt.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <cctype>
#include <cmath>
#include <optional>
#include <random>
#include <set>
#include <span>

#include "rstasker/common/error.hpp"
#include "rstasker/common/text.hpp"
#include "rstasker/tasker/events.hpp"
#include "rstasker/tasker/metrics.hpp"

namespace rstasker::tasker {

namespace {

using FieldNames = std::span<const std::string_view>;

// The error an execution fails with when a query fails for good.
constexpr std::string_view kQueryFailed = "QueryFailed";

// Seed 004's defaults.
constexpr double kDefaultInitialWait = 30;
constexpr double kDefaultBaseWait = 15;
constexpr double kDefaultMultiplier = 1;
constexpr double kDefaultMaxWait = 450;
constexpr int kDefaultMaxRetries = 10;

// A Data API statement runs for 24 hours at most, so longer waits are never useful.
constexpr double kMaxWaitSeconds = 86400;
constexpr double kMaxMultiplier = 100;
constexpr int kMaxRetriesLimit = 100;
constexpr std::size_t kMaxPatternLength = 1000;
constexpr std::size_t kMaxQueries = 1000;
// Polling waits never drop below this, so a zero BaseWaitTime cannot spin an execution into the
// 25,000-event history limit of a standard state machine.
constexpr double kMinPollWait = 1;
// How much of an error text the runner state and the failure message keep.
constexpr std::size_t kStateErrorChars = 1000;
constexpr std::size_t kMessageErrorChars = 4000;
constexpr std::size_t kMessageSqlChars = 200;

constexpr std::string_view kStepFields[] = {"action", "executionArn", "defaults", "state",
                                            "idempotencyKey"};
constexpr std::string_view kQueryFields[] = {"ExecuteStatementParameters",
                                             "InitialWaitTime",
                                             "BaseWaitTime",
                                             "WaitMultiplier",
                                             "MaxWait",
                                             "MaxRetries",
                                             "RetryErrorMatch"};
constexpr std::string_view kExecuteStatementFields[] = {
    "Sql", "Parameters", "ClusterIdentifier", "WorkgroupName", "Database", "DbUser", "SecretArn",
    // Set by the runner itself; accepted (and not used)
    // so seed inputs keep working.
    "StatementName", "WithEvent", "ClientToken"};
constexpr std::string_view kDefaultsFields[] = {
    "ClusterIdentifier", "WorkgroupName",   "Database",       "DbUser",
    "SecretArn",         "InitialWaitTime", "BaseWaitTime",   "WaitMultiplier",
    "MaxWait",           "MaxRetries",      "RetryErrorMatch"};

struct Tuning {
  double initial_wait = kDefaultInitialWait;
  double base_wait = kDefaultBaseWait;
  double multiplier = kDefaultMultiplier;
  double max_wait = kDefaultMaxWait;
  int max_retries = kDefaultMaxRetries;
  std::string retry_error_match;  // "" retries every error
};

// One query, checked and resolved: the target and every tuning value are explicit.
struct Query {
  services::RedshiftTarget target;
  std::string sql;
  std::vector<services::SqlParameter> parameters;
  Tuning tuning;
};

// Progress through the current query.
struct Cursor {
  std::size_t index = 0;
  int attempt = 0;           // attempts started so far
  std::string statement_id;  // "" when this step must (re)start the query
  double poll_wait = 0;      // the next polling interval
  double retry_wait = 0;     // the previous retry sleep; decorrelated jitter grows from it
  std::string status;        // the last status seen, for people reading the execution history
  std::string last_error;    // the previous attempt's error, likewise
};

struct RunnerState {
  std::vector<Query> queries;
  Json results = Json::array();  // one entry per finished query
  Cursor cursor;
};

// What the state machine passes as `defaults`: the template's target and tuning defaults.
struct Defaults {
  services::RedshiftTarget target;
  Tuning tuning;
};

std::string type_of(const Json& value) {
  return std::string(json_type_name(value));
}

std::string field_name(const std::string& what, std::string_view key) {
  return what.empty() ? "field '" + std::string(key) + "'" : what + "." + std::string(key);
}

// Refuses fields outside `allowed`, pointing out a case mismatch when that is the likely mistake.
void check_known_fields(const Json& object, const std::string& what, FieldNames allowed) {
  for (const auto& [key, value] : object.items()) {
    if (std::find(allowed.begin(), allowed.end(), key) != allowed.end()) continue;
    std::string known;
    for (std::string_view candidate : allowed) {
      if (iequals(candidate, key)) {
        throw invalid_request(what + " has an unknown field '" + key + "'; did you mean '" +
                              std::string(candidate) + "'? (field names are case-sensitive)");
      }
      known += (known.empty() ? "" : ", ") + std::string(candidate);
    }
    throw invalid_request(what + " has an unknown field '" + key + "'; expected one of " + known);
  }
}

// A number (integer or fractional) within [min, max]; `fallback` when absent or null.
double number_field(const Json& object, std::string_view key, double fallback, double min,
                    double max, const std::string& what) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return fallback;
  if (!it->is_number()) {
    throw invalid_request(field_name(what, key) + " must be a number, not " + type_of(*it));
  }
  double value = it->get<double>();
  if (!std::isfinite(value) || value < min || value > max) {
    throw invalid_request(fmt::format("{} must be between {:g} and {:g}, not {}",
                                      field_name(what, key), min, max, it->dump()));
  }
  return value;
}

int whole_field(const Json& object, std::string_view key, int fallback, int min, int max,
                const std::string& what) {
  double value = number_field(object, key, fallback, min, max, what);
  if (value != std::floor(value)) {
    throw invalid_request(field_name(what, key) + " must be a whole number, not " +
                          object.at(key).dump());
  }
  return static_cast<int>(value);
}

// Compiles `pattern` for matching error texts. RE2 matches in time linear in the text whatever
// the pattern, so no pattern can stall the function on a long error message.
std::unique_ptr<RE2> compile_pattern(const std::string& pattern, const std::string& what) {
  if (utf8_length(pattern) > kMaxPatternLength) {
    throw invalid_request(what + ".RetryErrorMatch is longer than " +
                          std::to_string(kMaxPatternLength) + " characters");
  }
  RE2::Options options;
  options.set_log_errors(false);
  auto re = std::make_unique<RE2>(pattern, options);
  if (!re->ok()) {
    throw invalid_request(what + ".RetryErrorMatch is not a valid RE2 regular expression (" +
                          re->error() +
                          "); RE2 supports Python's syntax except look-around and "
                          "back-references");
  }
  return re;
}

Tuning parse_tuning(const Json& object, const Tuning& fallback, const std::string& what) {
  Tuning t;
  t.initial_wait =
      number_field(object, "InitialWaitTime", fallback.initial_wait, 0, kMaxWaitSeconds, what);
  t.base_wait = number_field(object, "BaseWaitTime", fallback.base_wait, 0, kMaxWaitSeconds, what);
  t.multiplier =
      number_field(object, "WaitMultiplier", fallback.multiplier, 0, kMaxMultiplier, what);
  if (t.multiplier <= 0) throw invalid_request(what + ".WaitMultiplier must be greater than 0");
  t.max_wait = number_field(object, "MaxWait", fallback.max_wait, 0, kMaxWaitSeconds, what);
  t.max_retries =
      whole_field(object, "MaxRetries", fallback.max_retries, 0, kMaxRetriesLimit, what);
  t.retry_error_match = fallback.retry_error_match;
  if (auto it = object.find("RetryErrorMatch"); it != object.end() && !it->is_null()) {
    if (!it->is_string()) {
      throw invalid_request(what +
                            ".RetryErrorMatch must be a string (a regular expression), "
                            "not " +
                            type_of(*it));
    }
    t.retry_error_match = it->get<std::string>();
  }
  if (!t.retry_error_match.empty()) compile_pattern(t.retry_error_match, what);
  return t;
}

// Target fields of `object` (ExecuteStatement names) as an override. Empty strings are refused,
// unless `empty_means_unset` (template parameters default to "").
TargetOverride parse_target(const Json& object, const std::string& what, bool empty_means_unset) {
  auto field = [&](std::string_view key) -> std::optional<std::string> {
    auto it = object.find(key);
    if (it == object.end() || it->is_null()) return std::nullopt;
    if (!it->is_string()) {
      throw invalid_request(field_name(what, key) + " must be a string, not " + type_of(*it));
    }
    if (it->get_ref<const std::string&>().empty()) {
      if (empty_means_unset) return std::nullopt;
      throw invalid_request(field_name(what, key) + " must not be empty");
    }
    return it->get<std::string>();
  };
  TargetOverride out;
  out.cluster_identifier = field("ClusterIdentifier");
  out.workgroup_name = field("WorkgroupName");
  out.database = field("Database");
  out.db_user = field("DbUser");
  out.secret_arn = field("SecretArn");
  if (out.cluster_identifier && out.workgroup_name) {
    throw invalid_request(what + " names both ClusterIdentifier and WorkgroupName (give one)");
  }
  if (out.db_user && out.secret_arn) {
    throw invalid_request(what + " names both DbUser and SecretArn (give one)");
  }
  return out;
}

Defaults parse_defaults(const Json* defaults, const services::RedshiftTarget& configured) {
  Defaults out{configured, Tuning{}};
  if (defaults == nullptr || defaults->is_null()) return out;
  if (!defaults->is_object()) {
    throw invalid_request("field 'defaults' must be an object, not " + type_of(*defaults));
  }
  check_known_fields(*defaults, "defaults", kDefaultsFields);
  out.target = apply_override(configured, parse_target(*defaults, "defaults", true));
  out.tuning = parse_tuning(*defaults, Tuning{}, "defaults");
  return out;
}

// One query of the input: a string (the SQL) or an object in seed 004's format.
Query parse_query(const Json& item, std::size_t index, const Defaults& defaults) {
  const std::string what = "query " + std::to_string(index);
  Query q;
  const Json* execute = &item;
  if (item.is_object()) {
    check_known_fields(item, what, kQueryFields);
    auto it = item.find("ExecuteStatementParameters");
    if (it == item.end()) {
      throw invalid_request(what +
                            " has no ExecuteStatementParameters (the SQL as a string, or "
                            "an object with Sql and optional target fields)");
    }
    execute = &*it;
    q.tuning = parse_tuning(item, defaults.tuning, what);
  } else if (item.is_string()) {
    q.tuning = defaults.tuning;
  } else {
    throw invalid_request(what +
                          " must be a string (the SQL) or an object with "
                          "ExecuteStatementParameters, not " +
                          type_of(item));
  }

  const std::string execute_what = item.is_string() ? what : what + ".ExecuteStatementParameters";
  TargetOverride target;
  if (execute->is_string()) {
    q.sql = execute->get<std::string>();
    check_sql(q.sql, execute_what);
  } else if (execute->is_object()) {
    check_known_fields(*execute, execute_what, kExecuteStatementFields);
    auto sql = execute->find("Sql");
    if (sql == execute->end() || !sql->is_string()) {
      throw invalid_request(execute_what + ".Sql must be a string (the SQL to run)" +
                            (sql == execute->end() ? "" : ", not " + type_of(*sql)));
    }
    q.sql = sql->get<std::string>();
    check_sql(q.sql, execute_what + ".Sql");
    if (auto p = execute->find("Parameters"); p != execute->end() && !p->is_null()) {
      q.parameters = parse_sql_parameters(*p, execute_what + ".Parameters");
    }
    target = parse_target(*execute, execute_what, false);
  } else {
    throw invalid_request(execute_what + " must be a string (the SQL) or an object, not " +
                          type_of(*execute));
  }
  q.target = apply_override(defaults.target, target);
  if (auto problem = describe_target_problem(q.target); !problem.empty()) {
    throw invalid_request(what + ": Redshift target: " + problem +
                          " (set it in ExecuteStatementParameters or in the template's defaults)");
  }
  return q;
}

std::vector<Query> parse_queries(const Json& list, const Defaults& defaults) {
  if (list.size() > kMaxQueries) {
    throw invalid_request("the runner input holds " + std::to_string(list.size()) +
                          " queries; at most " + std::to_string(kMaxQueries) + " are accepted");
  }
  std::vector<Query> queries;
  queries.reserve(list.size());
  for (std::size_t i = 0; i < list.size(); ++i)
    queries.push_back(parse_query(list[i], i, defaults));
  return queries;
}

// The normalised form of a query (seed 004's object format with everything explicit), carried in
// the runner state; parse_query reads it back unchanged.
Json query_to_json(const Query& q) {
  Json execute = {{"Sql", q.sql}};
  const auto& t = q.target;
  if (!t.cluster_identifier.empty()) execute["ClusterIdentifier"] = t.cluster_identifier;
  if (!t.workgroup_name.empty()) execute["WorkgroupName"] = t.workgroup_name;
  if (!t.database.empty()) execute["Database"] = t.database;
  if (!t.db_user.empty()) execute["DbUser"] = t.db_user;
  if (!t.secret_arn.empty()) execute["SecretArn"] = t.secret_arn;
  if (!q.parameters.empty()) {
    Json parameters = Json::array();
    for (const auto& p : q.parameters) parameters.push_back({{"name", p.name}, {"value", p.value}});
    execute["Parameters"] = std::move(parameters);
  }
  return {{"ExecuteStatementParameters", std::move(execute)},
          {"InitialWaitTime", q.tuning.initial_wait},
          {"BaseWaitTime", q.tuning.base_wait},
          {"WaitMultiplier", q.tuning.multiplier},
          {"MaxWait", q.tuning.max_wait},
          {"MaxRetries", q.tuning.max_retries},
          {"RetryErrorMatch", q.tuning.retry_error_match}};
}

std::string optional_string(const Json& object, std::string_view key, const std::string& what) {
  auto it = object.find(key);
  if (it == object.end() || it->is_null()) return {};
  if (!it->is_string()) {
    throw invalid_request(field_name(what, key) + " must be a string, not " + type_of(*it));
  }
  return it->get<std::string>();
}

// Reads a runner state a previous step returned (the state machine hands it back verbatim).
RunnerState parse_runner_state(const Json& state, const Defaults& defaults) {
  const std::string what = "runner state";
  auto queries = state.find("queries");
  auto current = state.find("current");
  if (queries == state.end() || current == state.end()) {
    throw invalid_request(
        "field 'state' must be the runner input (a list of queries) or the runner state a "
        "previous step returned (an object with 'queries' and 'current'); start the query "
        "runner with a list of SQL strings or query objects");
  }
  if (!queries->is_array() || queries->empty()) {
    throw invalid_request(what + ".queries must be a non-empty list");
  }
  RunnerState out;
  out.queries = parse_queries(*queries, defaults);

  auto results = state.find("results");
  if (results != state.end() && !results->is_null()) {
    if (!results->is_array()) throw invalid_request(what + ".results must be a list");
    out.results = *results;
  }
  if (!current->is_object()) throw invalid_request(what + ".current must be an object");
  const std::string cwhat = what + ".current";
  Cursor& c = out.cursor;
  if (!current->contains("index")) throw invalid_request(cwhat + ".index is missing");
  c.index = static_cast<std::size_t>(
      whole_field(*current, "index", 0, 0, static_cast<int>(out.queries.size()) - 1, cwhat));
  if (out.results.size() != c.index) {
    throw invalid_request(what + " is inconsistent: " + std::to_string(out.results.size()) +
                          " results for current query " + std::to_string(c.index));
  }
  const Tuning& t = out.queries[c.index].tuning;
  c.attempt = whole_field(*current, "attempt", 0, 0, kMaxRetriesLimit + 1, cwhat);
  c.statement_id = optional_string(*current, "statementId", cwhat);
  if (!c.statement_id.empty() && c.attempt == 0) {
    throw invalid_request(cwhat + " has a statementId but no attempt");
  }
  c.poll_wait = number_field(*current, "pollWait", t.base_wait, 0, kMaxWaitSeconds, cwhat);
  c.retry_wait = number_field(*current, "retryWait", t.base_wait, 0, kMaxWaitSeconds, cwhat);
  c.status = optional_string(*current, "status", cwhat);
  c.last_error = optional_string(*current, "lastError", cwhat);
  return out;
}

Json cursor_to_json(const Cursor& c) {
  Json out = {
      {"index", c.index},        {"attempt", c.attempt},      {"statementId", c.statement_id},
      {"pollWait", c.poll_wait}, {"retryWait", c.retry_wait}, {"status", c.status}};
  if (!c.last_error.empty()) out["lastError"] = c.last_error;
  return out;
}

// Whole seconds for a Wait state's SecondsPath: rounded, never negative, never above the cap.
std::int64_t whole_seconds(double seconds, double cap) {
  auto rounded = static_cast<std::int64_t>(std::llround(std::max(0.0, seconds)));
  return std::min(rounded, static_cast<std::int64_t>(std::floor(cap)));
}

Json wait_state(const RunnerState& state, std::int64_t wait_seconds) {
  Json queries = Json::array();
  for (const auto& q : state.queries) queries.push_back(query_to_json(q));
  return {{"next", "wait"},
          {"waitSeconds", wait_seconds},
          {"queries", std::move(queries)},
          {"results", state.results},
          {"current", cursor_to_json(state.cursor)}};
}

// Decorrelated jitter (the seed's algorithm): min(cap, uniform(base, previous * 3)).
double jitter_sleep(const Tuning& t, double previous) {
  thread_local std::mt19937_64 engine{std::random_device{}()};
  double low = t.base_wait;
  double high = std::max(low, previous * 3);
  double sleep = high > low ? std::uniform_real_distribution<double>(low, high)(engine) : low;
  return std::min(t.max_wait, sleep);
}

bool error_matches(const std::string& pattern, const std::string& error) {
  if (pattern.empty()) return true;
  // Compiled per decision: a retry happens at most MaxRetries times per query.
  auto re = compile_pattern(pattern, "the query");
  return RE2::PartialMatch(error, *re);
}

// One step's work on a parsed state. Kept apart from QueryRunner so the header stays small.
class Step {
 public:
  Step(RunnerState state, std::string execution_arn, std::string step_key,
       services::RedshiftData& redshift, Launcher& launcher, const aws::CallContext& context)
      : s_(std::move(state)),
        arn_(std::move(execution_arn)),
        step_key_(std::move(step_key)),
        redshift_(redshift),
        launcher_(launcher),
        context_(context) {}

  // The current query has no running statement: start it.
  Json start_current() {
    Cursor& c = s_.cursor;
    const Query& q = s_.queries[c.index];
    ++c.attempt;
    StartRequest request;
    request.caller_id = arn_;  // so describeStatement / cancelStatement "LATEST" find it
    request.target = q.target;
    request.sqls = {q.sql};
    request.parameters = q.parameters;
    // A key per query and attempt: a retried step (same input, same key) finds the statement
    // its failed invocation started instead of running the query twice.
    if (!step_key_.empty()) {
      request.idempotency_key =
          step_key_ + "#" + std::to_string(c.index) + "#" + std::to_string(c.attempt);
    }
    StartResult started;
    try {
      started = launcher_.start(request, context_);
    } catch (const Error& e) {
      if (e.name() == error_names::kInvalidRequest ||
          e.name() == error_names::kConfigurationError) {
        throw;
      }
      // No answer: the statement may run. With a key, the step fails and its retry resumes it;
      // counting it as a failed attempt would start the query again under a new key.
      if (!step_key_.empty() && (e.http_status() == 0 || e.http_status() >= 500)) throw;
      // The Data API refused the statement (too many active statements, no connection, ...):
      // a failed attempt like any other, retried when RetryErrorMatch says so.
      c.statement_id.clear();
      c.status = "START_FAILED";
      return failed(e.name() + ": " + e.message(), /*abort=*/false);
    }
    c.statement_id = started.response.value("Id", "");
    if (c.statement_id.empty()) {
      throw Error(error_names::kInternalError, "ExecuteStatement returned no statement Id");
    }
    c.status = "SUBMITTED";
    c.poll_wait = q.tuning.base_wait;
    spdlog::info("query runner {}: query {} attempt {} started as statement {}", arn_, c.index,
                 c.attempt, c.statement_id);
    return wait_state(s_, whole_seconds(q.tuning.initial_wait, kMaxWaitSeconds));
  }

  // The current query's statement is running or has ended: look at it and decide.
  Json poll_current() {
    Cursor& c = s_.cursor;
    const Query& q = s_.queries[c.index];
    Json described = redshift_.describe_statement(c.statement_id, context_);
    std::string status = described.value("Status", "");
    c.status = status;
    switch (services::parse_statement_status(status)) {
      case services::StatementStatus::kFinished:
        return finished(described);
      case services::StatementStatus::kFailed:
        return failed(described.value("Error", std::string("(the Data API gave no error text)")),
                      false);
      case services::StatementStatus::kAborted: {
        std::string why = "the statement was cancelled (ABORTED)";
        std::string error = described.value("Error", "");
        return failed(error.empty() ? why : why + ": " + error, true);
      }
      default: {
        // Still running (or a status this version does not know): poll again, waiting longer.
        double wait = std::max(kMinPollWait, std::min(q.tuning.max_wait, c.poll_wait));
        c.poll_wait = std::min(q.tuning.max_wait, c.poll_wait * q.tuning.multiplier);
        return wait_state(s_, std::max<std::int64_t>(1, whole_seconds(wait, kMaxWaitSeconds)));
      }
    }
  }

 private:
  Json finished(const Json& described) {
    Cursor& c = s_.cursor;
    Json result = {{"StatementId", c.statement_id}, {"Attempts", c.attempt}};
    for (const char* key : {"HasResultSet", "ResultRows", "Duration"}) {
      if (auto it = described.find(key); it != described.end()) result[key] = *it;
    }
    s_.results.push_back(std::move(result));
    spdlog::info("query runner {}: query {} finished (statement {}, attempt {})", arn_, c.index,
                 c.statement_id, c.attempt);
    if (s_.results.size() == s_.queries.size()) {
      return {{"next", "succeed"}, {"output", s_.results}};
    }
    const Tuning& next = s_.queries[c.index + 1].tuning;
    c = Cursor{c.index + 1, 0, "", next.base_wait, next.base_wait, "", ""};
    return start_current();
  }

  // The current attempt failed with `error`: wait and retry, or fail the execution.
  Json failed(const std::string& error, bool abort) {
    Cursor& c = s_.cursor;
    const Query& q = s_.queries[c.index];
    const int retries_used = c.attempt - 1;
    std::string why_final;
    if (abort) {
      why_final = "a cancelled statement is not retried";
    } else if (q.tuning.max_retries == 0) {
      why_final = "MaxRetries is 0";
    } else if (retries_used >= q.tuning.max_retries) {
      why_final = "no retries left (MaxRetries " + std::to_string(q.tuning.max_retries) + ")";
    } else if (!error_matches(q.tuning.retry_error_match, error)) {
      why_final = "the error does not match RetryErrorMatch '" +
                  truncate_utf8_chars(q.tuning.retry_error_match, 100) + "'";
    }
    if (!why_final.empty()) throw query_failed(error, why_final);

    double sleep = jitter_sleep(q.tuning, c.retry_wait);
    c.retry_wait = sleep;
    c.last_error = truncate_utf8_chars(error, kStateErrorChars);
    const std::string failed_statement = c.statement_id;
    c.statement_id.clear();
    std::int64_t wait = whole_seconds(sleep, q.tuning.max_wait);
    spdlog::warn("query runner {}: query {} attempt {} failed (statement {}); retrying in {} s: {}",
                 arn_, c.index, c.attempt, failed_statement.empty() ? "-" : failed_statement, wait,
                 truncate_utf8_chars(error, 300));
    metrics::count(metric::kQueryRunnerRetries);
    return wait_state(s_, wait);
  }

  Error query_failed(const std::string& error, const std::string& why_final) const {
    const Cursor& c = s_.cursor;
    const Query& q = s_.queries[c.index];
    std::string message = fmt::format(
        "query {} of {} (index {}) failed after {} attempt{} ({}); statement {}: {}; SQL: {}",
        c.index + 1, s_.queries.size(), c.index, c.attempt, c.attempt == 1 ? "" : "s", why_final,
        c.statement_id.empty() ? "(not started)" : c.statement_id,
        truncate_utf8_chars(error, kMessageErrorChars),
        truncate_utf8_chars(q.sql, kMessageSqlChars));
    spdlog::error("query runner {}: {}", arn_, message);
    return Error(kQueryFailed, message);
  }

  RunnerState s_;
  std::string arn_;
  std::string step_key_;  // the step's idempotencyKey, or ""
  services::RedshiftData& redshift_;
  Launcher& launcher_;
  const aws::CallContext& context_;
};

}  // namespace

QueryRunner::QueryRunner(const Config& config, std::shared_ptr<services::RedshiftData> redshift,
                         Launcher& launcher)
    : config_(config), redshift_(std::move(redshift)), launcher_(launcher) {}

Json QueryRunner::step(const Json& event, const aws::CallContext& context) {
  if (!event.is_object()) {
    throw invalid_request("a queryRunnerStep event must be a JSON object, not " + type_of(event));
  }
  check_known_fields(event, "the queryRunnerStep event", kStepFields);
  const std::string arn = optional_string(event, "executionArn", "");
  if (arn.empty()) {
    throw invalid_request(
        "a queryRunnerStep event needs 'executionArn' (in the state machine: "
        "\"executionArn.$\": \"$$.Execution.Id\")");
  }
  check_execution_arn(arn);
  const std::string step_key = optional_string(event, "idempotencyKey", "");
  if (auto key = event.find("idempotencyKey"); key != event.end() && !key->is_null()) {
    check_idempotency_key(step_key);
  }
  auto state = event.find("state");
  if (state == event.end() || state->is_null()) {
    throw invalid_request(
        "a queryRunnerStep event needs 'state' (in the state machine: "
        "\"state.$\": \"$\")");
  }
  auto defaults_it = event.find("defaults");
  Defaults defaults =
      parse_defaults(defaults_it == event.end() ? nullptr : &*defaults_it, config_.target);

  if (state->is_array()) {
    // The first step: the execution input, seed 004's list of queries. Every query is checked
    // before anything runs.
    RunnerState fresh;
    fresh.queries = parse_queries(*state, defaults);
    if (fresh.queries.empty()) return {{"next", "succeed"}, {"output", Json::array()}};
    const Tuning& t = fresh.queries[0].tuning;
    fresh.cursor = Cursor{0, 0, "", t.base_wait, t.base_wait, "", ""};
    spdlog::info("query runner {}: {} queries to run", arn, fresh.queries.size());
    return Step(std::move(fresh), arn, step_key, *redshift_, launcher_, context).start_current();
  }
  if (!state->is_object()) {
    throw invalid_request(
        "field 'state' must be a list of queries (the runner input) or the "
        "runner state a previous step returned, not " +
        type_of(*state));
  }
  RunnerState resumed = parse_runner_state(*state, defaults);
  const bool must_start = resumed.cursor.statement_id.empty();
  Step step(std::move(resumed), arn, step_key, *redshift_, launcher_, context);
  return must_start ? step.start_current() : step.poll_current();
}

}  // namespace rstasker::tasker
