// The User-Agent of AWS calls: the SDKs' format, our version, architecture and Lambda's exec-env.
#include "rstasker/aws/user_agent.hpp"

#include <gtest/gtest.h>

#include <map>

#include "rstasker/version.hpp"

namespace rstasker::aws {
namespace {

EnvLookup ua_env(std::map<std::string, std::string, std::less<>> values) {
  return [values = std::move(values)](std::string_view name) -> std::optional<std::string> {
    auto it = values.find(name);
    if (it == values.end()) return std::nullopt;
    return it->second;
  };
}

TEST(UserAgent, NamesUsOurVersionAndArchitecture) {
  const std::string agent = user_agent(ua_env({}));
  EXPECT_TRUE(agent.starts_with(std::string("redshift-tasker/") + kVersion + " ")) << agent;
  EXPECT_NE(agent.find(std::string(" md/arch#") + kArchitecture), std::string::npos) << agent;
  EXPECT_NE(agent.find(std::string(" md/commit#") + kCommit), std::string::npos) << agent;
  EXPECT_EQ(agent.find("exec-env/"), std::string::npos) << "not in Lambda: " << agent;
  EXPECT_TRUE(std::string(kArchitecture) == "x86_64" || std::string(kArchitecture) == "arm64");
}

TEST(UserAgent, InLambdaNamesTheExecutionEnvironment) {
  EXPECT_TRUE(user_agent(ua_env({{"AWS_LAMBDA_FUNCTION_NAME", "fn"}}))
                  .ends_with(" exec-env/AWS_Lambda_provided.al2023"));
  EXPECT_TRUE(user_agent(ua_env({{"AWS_LAMBDA_FUNCTION_NAME", "fn"},
                                 {"AWS_EXECUTION_ENV", "AWS_Lambda_custom"}}))
                  .ends_with(" exec-env/AWS_Lambda_custom"));
}

}  // namespace
}  // namespace rstasker::aws
