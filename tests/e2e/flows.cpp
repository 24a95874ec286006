// Flows shared by the end-to-end tests (see flows.hpp).
#include "flows.hpp"

#include <algorithm>
#include <set>
#include <stdexcept>

#include "support/paths.hpp"
#include "support/process.hpp"

namespace rstasker::testing {

// A state machine of the test's own, as a user would write one: one waitForTaskToken task that
// runs `$.sql` (or the list `$.sqls`), FAILED caught, and a HeartbeatSeconds timeout caught and
// followed by cancelStatement LATEST and describeStatement LATEST until the statement is ABORTED.
Json callback_machine(const std::string& function_arn, int heartbeat_seconds, bool batch) {
  Json payload = {{"taskToken.$", "$$.Task.Token"}, {"executionArn.$", "$$.Execution.Id"}};
  payload[batch ? "sqlStatements.$" : "sqlStatement.$"] = batch ? "$.sqls" : "$.sql";
  auto invoke = [&](const Json& call) {
    return Json{{"Type", "Task"},
                {"Resource", "arn:aws:states:::lambda:invoke"},
                {"Parameters", {{"FunctionName", function_arn}, {"Payload", call}}}};
  };
  Json cancel = invoke({{"action", "cancelStatement"},
                        {"statementId", "LATEST"},
                        {"executionArn.$", "$$.Execution.Id"}});
  cancel["ResultSelector"] = {{"Status.$", "$.Payload.Status"}};
  cancel["ResultPath"] = "$.cancel";
  cancel["Next"] = "Describe";
  Json describe = invoke({{"action", "describeStatement"},
                          {"statementId", "LATEST"},
                          {"executionArn.$", "$$.Execution.Id"}});
  describe["ResultSelector"] = {{"Status.$", "$.Payload.Status"}};
  describe["ResultPath"] = "$.statement";
  describe["Next"] = "IsAborted";
  return {
      {"Comment", "an e2e test's own state machine around the tasker"},
      {"StartAt", "Run"},
      {"States",
       {{"Run",
         {{"Type", "Task"},
          {"Resource", "arn:aws:states:::lambda:invoke.waitForTaskToken"},
          {"Parameters", {{"FunctionName", function_arn}, {"Payload", payload}}},
          {"HeartbeatSeconds", heartbeat_seconds},
          {"Catch",
           {{{"ErrorEquals", {"States.Timeout"}}, {"ResultPath", "$.error"}, {"Next", "Cancel"}},
            {{"ErrorEquals", {"FAILED"}}, {"ResultPath", "$.error"}, {"Next", "SqlFailed"}}}},
          {"ResultPath", "$.completion"},
          {"Next", "Finished"}}},
        {"Finished", {{"Type", "Succeed"}}},
        {"SqlFailed", {{"Type", "Pass"}, {"End", true}}},
        {"Cancel", cancel},
        {"Describe", describe},
        {"IsAborted",
         {{"Type", "Choice"},
          {"Choices",
           {{{"Variable", "$.statement.Status"}, {"StringEquals", "ABORTED"}, {"Next", "Aborted"}},
            {{"Variable", "$.statement.Status"},
             {"StringEquals", "FINISHED"},
             {"Next", "NotAborted"}},
            {{"Variable", "$.statement.Status"},
             {"StringEquals", "FAILED"},
             {"Next", "NotAborted"}}}},
          {"Default", "WaitForAbort"}}},
        {"WaitForAbort", {{"Type", "Wait"}, {"Seconds", 1}, {"Next", "Describe"}}},
        {"Aborted", {{"Type", "Succeed"}}},
        {"NotAborted", {{"Type", "Fail"}, {"Error", "NotAborted"}}}}}};
}

std::string create_state_machine(const aws::JsonClient& sfn, const std::string& name,
                                 const Json& definition) {
  return sfn
      .call("CreateStateMachine",
            {{"name", name}, {"definition", definition.dump()}, {"roleArn", kStateMachineRole}}, {})
      .at("stateMachineArn")
      .get<std::string>();
}

// A CloudFormation template as JSON, read with cfn-lint's parser (it knows CloudFormation's YAML
// tags); cfn-lint is installed with the test dependencies.
Json template_as_json(const std::filesystem::path& file) {
  const std::filesystem::path out = binary_dir() / ("e2e-" + file.stem().string() + ".json");
  ProcessOptions options;
  options.argv = {"python3", "-c",
                  "import json, sys\n"
                  "from cfnlint.decode import decode\n"
                  "template, problems = decode(sys.argv[1])\n"
                  "if problems: sys.exit(str(problems))\n"
                  "print(json.dumps(template))\n",
                  file.string()};
  options.log_file = out;
  options.log_command_line = false;
  const int status = run_to_completion(options);
  if (status != 0) {
    throw std::runtime_error("cannot read " + file.string() + ": " + read_file(out));
  }
  return Json::parse(read_file(out));
}

// A resource's properties with every {"Ref": parameter} replaced by the parameter's value, as
// CloudFormation sends them (custom resource properties arrive as strings).
Json resolve_refs(const Json& value, const std::map<std::string, std::string>& parameters) {
  if (value.is_object()) {
    if (value.size() == 1 && value.contains("Ref")) {
      return parameters.at(value.at("Ref").get<std::string>());
    }
    Json out = Json::object();
    for (const auto& [key, item] : value.items()) out[key] = resolve_refs(item, parameters);
    return out;
  }
  if (value.is_array()) {
    Json out = Json::array();
    for (const Json& item : value) out.push_back(resolve_refs(item, parameters));
    return out;
  }
  return value;
}

// The template's resources in the order CloudFormation creates them: each after the resources
// its DependsOn names.
std::vector<std::string> creation_order(const Json& resources) {
  std::vector<std::string> order;
  std::set<std::string> placed;
  while (order.size() < resources.size()) {
    const std::size_t before = order.size();
    for (const auto& [name, resource] : resources.items()) {
      if (placed.contains(name)) continue;
      std::vector<std::string> needs;
      if (auto it = resource.find("DependsOn"); it != resource.end()) {
        needs = it->is_array() ? it->get<std::vector<std::string>>()
                               : std::vector<std::string>{it->get<std::string>()};
      }
      if (std::all_of(needs.begin(), needs.end(),
                      [&](const std::string& n) { return placed.contains(n); })) {
        order.push_back(name);
        placed.insert(name);
      }
    }
    if (order.size() == before) throw std::runtime_error("the template's DependsOn has a cycle");
  }
  return order;
}

}  // namespace rstasker::testing
