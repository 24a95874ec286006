// Flows shared by the end-to-end tests: the callback state machine a user would write around the
// tasker, and CloudFormation templates read and resolved the way CloudFormation would.
#pragma once

#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "rstasker/aws/json_client.hpp"
#include "rstasker/common/json.hpp"

namespace rstasker::testing {

// The role every state machine the tests create names (moto accepts any).
inline constexpr const char* kStateMachineRole =
    "arn:aws:iam::123456789012:role/e2e-state-machines";

// A state machine of the test's own, as a user would write one: one waitForTaskToken task that
// runs `$.sql` (or the list `$.sqls`), FAILED caught, and a HeartbeatSeconds timeout caught and
// followed by cancelStatement LATEST and describeStatement LATEST until the statement is ABORTED.
Json callback_machine(const std::string& function_arn, int heartbeat_seconds, bool batch);

// CreateStateMachine with kStateMachineRole; the machine's ARN.
std::string create_state_machine(const aws::JsonClient& sfn, const std::string& name,
                                 const Json& definition);

// A CloudFormation template as JSON, read with cfn-lint's parser (it knows CloudFormation's YAML
// tags); cfn-lint is installed with the test dependencies.
Json template_as_json(const std::filesystem::path& file);

// A resource's properties with every {"Ref": parameter} replaced by the parameter's value, as
// CloudFormation sends them (custom resource properties arrive as strings).
Json resolve_refs(const Json& value, const std::map<std::string, std::string>& parameters);

// The template's resources in the order CloudFormation creates them: each after the resources
// its DependsOn names.
std::vector<std::string> creation_order(const Json& resources);

}  // namespace rstasker::testing
