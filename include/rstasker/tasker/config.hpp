// The tasker's configuration, read once at start-up from the environment.
#pragma once

#include <chrono>
#include <string>

#include "rstasker/aws/credentials.hpp"
#include "rstasker/services/redshift_data.hpp"

namespace rstasker::tasker {

struct Config {
  // Default target (CLUSTER_IDENTIFIER or WORKGROUP_NAME, DATABASE, DB_USER, SECRET_ARN); events
  // may override any part of it.
  services::RedshiftTarget target;
  std::string table_name;  // DDB_TABLE_NAME
  int ttl_days = 7;        // TTL: days a statement's state is kept
  std::string region;
  aws::Credentials credentials;
  // Statements waiting longer than this are examined by `reconcile` (RECONCILE_AFTER_SECONDS).
  std::chrono::seconds reconcile_after{900};
  // CloudWatch metrics in Embedded Metric Format on standard output (METRICS_ENABLED: true or
  // false; METRICS_NAMESPACE: 1 to 255 printable ASCII characters, not starting with "AWS/").
  bool metrics_enabled = true;
  std::string metrics_namespace = "RedshiftTasker";
};

// Reads and checks the configuration. Throws ConfigurationError describing every problem found
// (all of them at once, so a deployment is fixed in one go).
Config config_from_env(const aws::EnvLookup& env);

// Checks that `target` names exactly one of cluster / workgroup, a database, and for a cluster
// exactly one of db user / secret; returns "" or a description of what is wrong.
std::string describe_target_problem(const services::RedshiftTarget& target);

}  // namespace rstasker::tasker
