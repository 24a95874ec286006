// tasker-local as a child of an integration test (see tasker_local.hpp).
#include "support/tasker_local.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <stdexcept>

#include "support/paths.hpp"

namespace rstasker::testing {

std::unique_ptr<Process> start_tasker_local(const TaskerLocalOptions& options) {
  ProcessOptions process;
  process.argv = {(binary_dir() / "tasker-local").string(),
                  "--port",
                  std::to_string(options.port),
                  "--moto-url",
                  options.moto_url,
                  "--region",
                  options.region,
                  "--access-key-id",
                  options.key.access_key_id,
                  "--secret-access-key",
                  options.key.secret_access_key,
                  "--log-dir",
                  (options.work_dir / "functions").string(),
                  "--cache-dir",
                  (options.work_dir / "code").string()};
  process.argv.insert(process.argv.end(), options.extra.begin(), options.extra.end());
  process.log_name = options.log_name;
  auto tasker_local = std::make_unique<Process>(process);
  if (!wait_for_tcp_port(options.port, std::chrono::seconds(30), tasker_local.get())) {
    throw std::runtime_error("tasker-local did not listen:\n" + tasker_local->log_tail());
  }
  return tasker_local;
}

void expect_clean_stop(std::unique_ptr<Process>& tasker_local) {
  if (!tasker_local) return;
  const int status = tasker_local->stop(std::chrono::seconds(10));
  EXPECT_EQ(status, 0) << "tasker-local did not stop cleanly:\n" << tasker_local->log_tail();
  tasker_local.reset();
}

}  // namespace rstasker::testing
