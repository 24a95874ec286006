// The User-Agent of our AWS calls (see user_agent.hpp).
#include "rstasker/aws/user_agent.hpp"

#include "rstasker/version.hpp"

namespace rstasker::aws {

std::string user_agent(const EnvLookup& env) {
  std::string agent = std::string("redshift-tasker/") + kVersion +
                      " ua/2.0 os/linux lang/c++#20 md/arch#" + kArchitecture + " md/commit#" +
                      kCommit;
  std::string exec_env = env("AWS_EXECUTION_ENV").value_or("");
  if (exec_env.empty() && !env("AWS_LAMBDA_FUNCTION_NAME").value_or("").empty()) {
    exec_env = "AWS_Lambda_provided.al2023";
  }
  if (!exec_env.empty()) agent += " exec-env/" + exec_env;
  return agent;
}

const std::string& process_user_agent() {
  static const std::string agent = user_agent(process_env());
  return agent;
}

}  // namespace rstasker::aws
