// Builds the production tasker: configuration from the environment, real AWS clients.
#pragma once

#include <cstdio>
#include <memory>

#include "rstasker/aws/credentials.hpp"
#include "rstasker/aws/http.hpp"
#include "rstasker/tasker/tasker.hpp"

namespace rstasker::tasker {

// Reads the configuration and builds every client (no network traffic). Throws
// ConfigurationError when the environment is incomplete or wrong. Metrics (EMF) are written to
// `metrics_out` at the end of each invocation (standard output in Lambda, where CloudWatch Logs
// reads them).
std::unique_ptr<Tasker> make_tasker(const aws::EnvLookup& env,
                                    std::shared_ptr<aws::HttpTransport> transport,
                                    std::FILE* metrics_out = stdout);

}  // namespace rstasker::tasker
