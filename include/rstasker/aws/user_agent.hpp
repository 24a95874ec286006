// The User-Agent every AWS call carries, in the SDKs' format, so CloudTrail's userAgent names us.
#pragma once

#include <string>

#include "rstasker/aws/credentials.hpp"

namespace rstasker::aws {

// "redshift-tasker/<version> ua/2.0 os/linux lang/c++#20 md/arch#<x86_64|arm64>
// md/commit#<commit>" and, in Lambda, " exec-env/<AWS_EXECUTION_ENV>" (the SDKs' field;
// "AWS_Lambda_provided.al2023" when Lambda runs us without setting it: AWS_LAMBDA_FUNCTION_NAME
// tells we are in Lambda).
std::string user_agent(const EnvLookup& env);

// user_agent() of the process's environment, read once (the environment does not change).
const std::string& process_user_agent();

}  // namespace rstasker::aws
