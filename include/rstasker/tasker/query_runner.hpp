// The query runner (seed 004's polling state machine, driven by this binary): one step of the
// state machine's loop per invocation — start the current query, poll it, retry it after a
// decorrelated-jitter wait, or move on — returning the runner state the machine carries along.
#pragma once

#include <memory>

#include "rstasker/aws/json_client.hpp"
#include "rstasker/common/json.hpp"
#include "rstasker/services/redshift_data.hpp"
#include "rstasker/tasker/config.hpp"
#include "rstasker/tasker/launcher.hpp"

namespace rstasker::tasker {

class QueryRunner {
 public:
  QueryRunner(const Config& config, std::shared_ptr<services::RedshiftData> redshift,
              Launcher& launcher);

  // Handles {"action": "queryRunnerStep", ...}. Throws InvalidRequest for a malformed input and
  // the error the state machine is meant to fail with when a query fails for good.
  Json step(const Json& event, const aws::CallContext& context);

 private:
  const Config& config_;
  std::shared_ptr<services::RedshiftData> redshift_;
  Launcher& launcher_;
};

}  // namespace rstasker::tasker
