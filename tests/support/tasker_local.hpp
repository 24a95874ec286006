// tasker-local (this build's) as a child of an integration test: the edge in front of moto, with
// the options every such test gives it, started and waited for in one place.
#pragma once

#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "rstasker/aws/sigv4.hpp"
#include "support/process.hpp"

namespace rstasker::testing {

struct TaskerLocalOptions {
  int port = 0;          // the edge's port (moto must already run with this port as MOTO_PORT)
  std::string moto_url;  // moto's own address
  std::string region;
  aws::Credentials key;            // the stack's credentials (--access-key-id, ...)
  std::filesystem::path work_dir;  // functions/ (their logs) and code/ (unpacked zips) go here
  std::vector<std::string> extra;  // further arguments (--pg, --accept-key, --faults, ...)
  std::string log_name = "tasker-local";
};

// Starts tasker-local and waits until its edge listens. Throws std::runtime_error with the tail
// of its log when it exits or does not listen within 30 s.
std::unique_ptr<Process> start_tasker_local(const TaskerLocalOptions& options);

// Stops it (SIGTERM, 10 s) and checks that it ended cleanly, as it must on SIGTERM (exit 0, and
// no sanitizer report, which would make the status non-zero).
void expect_clean_stop(std::unique_ptr<Process>& tasker_local);

}  // namespace rstasker::testing
