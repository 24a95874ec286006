// Configuration from environment variables, with every problem reported at once.
#include "rstasker/tasker/config.hpp"

#include <algorithm>
#include <charconv>
#include <vector>

#include "rstasker/common/error.hpp"

namespace rstasker::tasker {

namespace {

// Parses a positive integer, or returns false.
bool parse_positive(const std::string& text, long long max, long long* out) {
  long long value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value <= 0 || value > max) {
    return false;
  }
  *out = value;
  return true;
}

}  // namespace

std::string describe_target_problem(const services::RedshiftTarget& target) {
  std::vector<std::string> problems;
  bool cluster = !target.cluster_identifier.empty();
  bool workgroup = !target.workgroup_name.empty();
  if (cluster == workgroup) {
    problems.emplace_back(cluster ? "both a cluster identifier and a workgroup name are set"
                                  : "neither a cluster identifier nor a workgroup name is set");
  }
  if (target.database.empty()) problems.emplace_back("no database is set");
  if (!target.db_user.empty() && !target.secret_arn.empty()) {
    problems.emplace_back("both a database user and a secret ARN are set (use one)");
  }
  if (cluster && target.db_user.empty() && target.secret_arn.empty()) {
    problems.emplace_back("a cluster needs a database user or a secret ARN");
  }
  std::string out;
  for (const auto& p : problems) out += (out.empty() ? "" : "; ") + p;
  return out;
}

Config config_from_env(const aws::EnvLookup& env) {
  Config config;
  std::vector<std::string> problems;
  auto get = [&env](const char* name) { return env(name).value_or(""); };

  config.target.cluster_identifier = get("CLUSTER_IDENTIFIER");
  config.target.workgroup_name = get("WORKGROUP_NAME");
  config.target.database = get("DATABASE");
  config.target.db_user = get("DB_USER");
  config.target.secret_arn = get("SECRET_ARN");
  if (auto problem = describe_target_problem(config.target); !problem.empty()) {
    problems.push_back(
        "Redshift target (CLUSTER_IDENTIFIER or WORKGROUP_NAME, DATABASE, DB_USER "
        "or SECRET_ARN): " +
        problem);
  }

  config.table_name = get("DDB_TABLE_NAME");
  if (config.table_name.empty()) problems.emplace_back("DDB_TABLE_NAME is not set");

  if (auto ttl = env("TTL")) {
    long long days = 0;
    if (parse_positive(*ttl, 3650, &days)) {
      config.ttl_days = static_cast<int>(days);
    } else {
      problems.push_back("TTL=" + *ttl + " is not a whole number of days between 1 and 3650");
    }
  }
  if (auto after = env("RECONCILE_AFTER_SECONDS")) {
    long long seconds = 0;
    if (parse_positive(*after, 86400, &seconds)) {
      config.reconcile_after = std::chrono::seconds(seconds);
    } else {
      problems.push_back("RECONCILE_AFTER_SECONDS=" + *after +
                         " is not a whole number of seconds between 1 and 86400");
    }
  }

  if (auto enabled = env("METRICS_ENABLED")) {
    if (*enabled == "true" || *enabled == "false") {
      config.metrics_enabled = *enabled == "true";
    } else {
      problems.push_back("METRICS_ENABLED=" + *enabled + " is not true or false");
    }
  }
  if (auto name_space = env("METRICS_NAMESPACE")) {
    bool printable = std::all_of(name_space->begin(), name_space->end(),
                                 [](char c) { return c >= 0x20 && c < 0x7f; });
    if (name_space->empty() || name_space->size() > 255 || !printable ||
        name_space->starts_with("AWS/")) {
      problems.push_back(
          "METRICS_NAMESPACE must be 1 to 255 printable ASCII characters, not "
          "starting with AWS/");
    } else {
      config.metrics_namespace = *name_space;
    }
  }

  for (auto read :
       {+[](const aws::EnvLookup&e, Config&c) { c.region = aws::region_from_env(e); },
        +[](const aws::EnvLookup&e, Config&c) { c.credentials = aws::credentials_from_env(e); }}) {
    try {
      read(env, config);
    } catch (const Error& e) {
      problems.push_back(e.message());
    }
  }

  if (!problems.empty()) {
    std::string message = "invalid configuration: ";
    for (std::size_t i = 0; i < problems.size(); ++i) {
      message += (i == 0 ? "" : "; ") + problems[i];
    }
    throw configuration_error(message);
  }
  return config;
}

}  // namespace rstasker::tasker
