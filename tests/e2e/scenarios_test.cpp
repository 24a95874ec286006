// End-to-end scenarios on the whole local stack, brought up once for this binary with
// scripts/local-stack and deployed from cfn/: the seed's six Step Functions scenarios and the
// other examples of cfn/examples/state-machines.yaml, the query runner of cfn/query-runner.yaml
// (both flavours), state machines the test writes itself, and CloudFormation custom resources
// (cfn/examples/custom-resources.yaml among them) answered on a local response URL. Every outcome
// is read back the way a user would: executions through the Step Functions API at the edge,
// statement results through the tasker function, database state through the Data API. And
// scripts/local-stack itself: `up` on a running stack changes nothing; at the end (the
// environment's TearDown), `up` after moto died forgets the stacks that died with it, and `down`
// leaves no process of the stack behind.
//
// The Step Functions executions are all started when the stack is up, so they run at the same
// time while the custom-resource tests (which run first) do their work; each test then waits for
// its own execution.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <ctime>
#include <filesystem>
#include <fstream>
#include <iomanip>
#include <map>
#include <memory>
#include <set>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "flows.hpp"
#include "local_stack.hpp"
#include "rstasker/common/error.hpp"
#include "support/cfn_receiver.hpp"
#include "support/paths.hpp"
#include "support/process.hpp"

namespace rstasker::testing {
namespace {

using namespace std::chrono_literals;

constexpr auto kExecutionTimeout = 120s;
constexpr auto kResponseTimeout = 60s;
// The query runner's template defaults for these tests, in seconds.
constexpr int kRunnerInitialWait = 1;
constexpr int kRunnerBaseWait = 1;
constexpr int kRunnerMaxWait = 4;

// What every test shares: the stack, and the executions started as soon as it was up.
struct Shared {
  std::unique_ptr<LocalStack> stack;
  std::map<std::string, std::string> examples;    // the examples stack's outputs
  std::map<std::string, std::string> runner;      // the query runner stack's outputs
  std::map<std::string, std::string> executions;  // scenario -> execution ARN
  std::string start_error;
};
Shared& shared() {
  static Shared instance;
  return instance;
}

// The input scripts/lib/demo.py gives the query runner in a run of the demo.
Json demo_query_runner_input() {
  const std::filesystem::path out = binary_dir() / "e2e-demo-query-runner-input.json";
  ProcessOptions options;
  options.argv = {"python3", (source_dir() / "scripts" / "lib" / "demo.py").string(),
                  "--query-runner-input"};
  options.log_file = out;
  options.log_command_line = false;
  if (run_to_completion(options) != 0) {
    throw std::runtime_error("demo.py --query-runner-input failed: " + read_file(out));
  }
  return Json::parse(read_file(out));
}

// After moto died under a deployed stack: `up` starts moto (and tasker-local) afresh, and the
// environment no longer advertises the stacks that died with the old moto.
void expect_up_forgets_the_stacks_of_a_dead_moto(LocalStack& stack) {
  const auto pids = stack.recorded_pids();
  ASSERT_TRUE(pids.contains("moto"));
  ASSERT_EQ(::kill(-pids.at("moto"), SIGKILL), 0) << "moto's process group";
  ASSERT_TRUE(await_process_exit(pids.at("moto"), 10s)) << "moto survived SIGKILL";
  std::string output;
  ASSERT_EQ(stack.run_script({"up"}, output), 0) << output;
  EXPECT_NE(output.find("started moto"), std::string::npos) << output;
  const std::string env = read_file(stack.dir() / "env");
  for (const char* stale : {"TASKER_FUNCTION_ARN=", "TASKER_STACK_NAME=", "TASKER_QUEUE_URL="}) {
    EXPECT_EQ(env.find(stale), std::string::npos) << stale << " is still in the env file:\n" << env;
  }
  EXPECT_NE(env.find("AWS_ENDPOINT_URL="), std::string::npos) << env;
  EXPECT_FALSE(std::filesystem::exists(stack.dir() / "outputs"));
  EXPECT_FALSE(std::filesystem::exists(stack.dir() / "stacks"));
}

// `down` stops every process of the stack: those it recorded, and any other whose command line
// or working directory names the state directory (function instances, PostgreSQL's backends),
// and moto and tasker-local by their ports.
void expect_down_leaves_no_process(LocalStack& stack) {
  const auto pids = stack.recorded_pids();
  for (const char* name : {"watchdog", "moto", "tasker-local", "postgres"}) {
    EXPECT_TRUE(pids.contains(name)) << "no " << name << " recorded before down";
  }
  std::map<std::string, std::string> ports;
  {
    std::istringstream lines(read_file(stack.dir() / "ports"));
    for (std::string line; std::getline(lines, line);) {
      if (auto eq = line.find('='); eq != std::string::npos) {
        ports[line.substr(0, eq)] = line.substr(eq + 1);
      }
    }
  }
  EXPECT_EQ(stack.down(), 0) << "scripts/local-stack down failed";
  for (const auto& [name, pid] : pids) {
    EXPECT_TRUE(await_process_exit(pid, 5s)) << name << " (pid " << pid << ") runs after down";
  }
  const std::vector<std::string> marks = {
      stack.dir().string(), "moto_launcher.py -H 127.0.0.1 -p " + ports["moto_port"] + " ",
      "--port " + ports["edge_port"] + " --moto-url"};
  for (const std::string& mark : marks) {
    for (pid_t pid : processes_mentioning(mark)) {
      EXPECT_TRUE(await_process_exit(pid, 5s))
          << "process " << pid << " (" << read_file("/proc/" + std::to_string(pid) + "/cmdline")
          << ") mentions '" << mark << "' and runs after down";
    }
  }
}

// Brings the stack up once for the binary, deploys the examples and starts every execution.
class StackEnvironment : public ::testing::Environment {
 public:
  void SetUp() override {
    if (LocalStack::unavailable_reason()) return;  // each test skips (or fails) in its SetUp
    Shared& s = shared();
    try {
      s.stack = std::make_unique<LocalStack>(binary_dir() / "e2e-local-stack");
      const std::string function = s.stack->env("TASKER_FUNCTION_ARN");
      s.examples = s.stack->deploy_stack("examples",
                                         source_dir() / "cfn" / "examples" / "state-machines.yaml",
                                         {{"TaskerFunctionArn", function}});
      // Short waits so the retries take seconds; errors matching "division by zero" are retried.
      s.runner =
          s.stack->deploy_stack("query-runner", source_dir() / "cfn" / "query-runner.yaml",
                                {{"TaskerFunctionArn", function},
                                 {"TaskerRoleName", s.stack->env("TASKER_ROLE_NAME")},
                                 {"DefaultClusterId", s.stack->env("TASKER_CLUSTER_IDENTIFIER")},
                                 {"DefaultDb", s.stack->env("TASKER_DATABASE")},
                                 {"DefaultUser", s.stack->env("TASKER_DB_USER")},
                                 {"DefaultInitialWaitTime", std::to_string(kRunnerInitialWait)},
                                 {"DefaultBaseWaitTime", std::to_string(kRunnerBaseWait)},
                                 {"DefaultMaxWait", std::to_string(kRunnerMaxWait)},
                                 {"DefaultMaxRetries", "3"},
                                 {"DefaultRetryErrorMatch", "division by zero"},
                                 {"CreateCallbackRunner", "true"}});
      // A record left for retry comes back after the completion queue's visibility timeout: six
      // function timeouts in the template (6 minutes), 2 seconds here so that the redelivery
      // test takes seconds. Set before any completion event exists: moto applies the timeout a
      // ReceiveMessage long poll read when it started.
      s.stack->sqs().call("SetQueueAttributes",
                          {{"QueueUrl", s.stack->env("TASKER_QUEUE_URL")},
                           {"Attributes", {{"VisibilityTimeout", "2"}}}},
                          {});
      const aws::JsonClient& sfn = s.stack->step_functions();
      const std::string callback =
          create_state_machine(sfn, "e2e-callback", callback_machine(function, 60, false));
      const std::string short_heartbeat =
          create_state_machine(sfn, "e2e-callback-2s", callback_machine(function, 2, false));
      const std::string batch =
          create_state_machine(sfn, "e2e-batch", callback_machine(function, 60, true));

      auto start = [&](const std::string& scenario, const std::string& machine,
                       const Json& input = Json::object()) {
        s.executions[scenario] = start_execution(sfn, machine, "e2e-" + scenario, input);
      };
      // The slowest first: they set the suite's pace.
      start("cancelling_statement", s.examples.at("CANCELLING_STATEMENT_ARN"));
      start("polling", s.examples.at("POLLING_ARN"));
      start("parallel_no_concurrency", s.examples.at("PARALLEL_NO_CONCURRENCY_ARN"));
      start("own_cancelled", short_heartbeat, {{"sql", "select pg_sleep(120) as e2e_cancelled"}});
      start("single_success", s.examples.at("SINGLE_SUCCESS_ARN"));
      start("single_failure", s.examples.at("SINGLE_FAILURE_ARN"));
      start("success_and_fail", s.examples.at("SUCCESS_AND_FAIL_ARN"));
      start("paging", s.examples.at("PAGING_ARN"));
      start("batch", s.examples.at("BATCH_ARN"));
      start("named_parameters", s.examples.at("NAMED_PARAMETERS_ARN"));
      start("own_answer", callback, {{"sql", "select 41 + 1"}});
      start("own_missing_table", callback, {{"sql", "select * from e2e_no_such_table"}});
      start("own_5000_rows", callback,
            {{"sql", "select n, 'row ' || n as label from generate_series(1, 5000) as n"}});
      const std::string runner = s.runner.at("STATE_MACHINE_ARN");
      start(
          "runner_retried", runner,
          {"create sequence e2e_runner_attempts",
           "select 1 / (case when nextval('e2e_runner_attempts') >= 3 then 1 else 0 end) as ok",
           {{"ExecuteStatementParameters",
             {{"Sql", "select :n as third"}, {"Parameters", {{{"name", "n"}, {"value", "3"}}}}}}}});
      start("runner_not_matching", runner,
            {"select 1 as first", "select * from e2e_runner_no_such_table", "select 3"});
      start("runner_no_retries", runner,
            {{{"ExecuteStatementParameters", "select 1 / 0"}, {"MaxRetries", 0}}});
      // The demo's query-runner input, as two runs of scripts/demo give it, on one database:
      // what a rerun of the demo on a kept stack (RSTASKER_DEMO_KEEP=1) does.
      for (const char* run : {"demo_runner_first_run", "demo_runner_second_run"}) {
        start(run, runner, demo_query_runner_input());
      }
      start("runner_callback", s.runner.at("CALLBACK_STATE_MACHINE_ARN"),
            {"create table e2e_runner_callback (n integer)",
             "insert into e2e_runner_callback values (7)"});
      // Cancelled by its test while it sleeps; long enough that it still runs by then.
      start("runner_callback_cancelled", s.runner.at("CALLBACK_STATE_MACHINE_ARN"),
            {"select pg_sleep(600) as e2e_runner_callback_cancelled"});
      start("own_batch_rolled_back", batch,
            {{"sqls",
              {"create table e2e_batch_rolled_back (n integer)",
               "insert into e2e_batch_rolled_back values (1), (2)", "select 1 / 0"}}});
    } catch (const std::exception& e) {
      s.start_error = e.what();
    }
  }

  void TearDown() override {
    Shared& s = shared();
    if (!s.stack) return;
    const std::filesystem::path logs = s.stack->dir() / "logs";
    // Last, as they end the deployed stack: a moto restarted by `up`, then `down`.
    expect_up_forgets_the_stacks_of_a_dead_moto(*s.stack);
    expect_down_leaves_no_process(*s.stack);
    s.stack.reset();
    // The function ran as this build's binary: under ASan + UBSan any report in its output (or
    // tasker-local's, which also checks for leaks when it stops) is a failure of the product.
    std::error_code error;
    for (auto it = std::filesystem::recursive_directory_iterator(logs, error);
         it != std::filesystem::recursive_directory_iterator(); it.increment(error)) {
      if (error || !it->is_regular_file()) continue;
      std::ifstream in(it->path());
      std::ostringstream text;
      text << in.rdbuf();
      for (const char* report : {"ERROR: AddressSanitizer", "ERROR: LeakSanitizer",
                                 "runtime error:", "SUMMARY: UndefinedBehaviorSanitizer"}) {
        EXPECT_EQ(text.str().find(report), std::string::npos)
            << it->path() << " holds a sanitizer report (" << report << ")";
      }
    }
  }
};

::testing::Environment* const kStack = ::testing::AddGlobalTestEnvironment(new StackEnvironment);

class EndToEnd : public ::testing::Test {
 protected:
  void SetUp() override {
    RSTASKER_SKIP_IF_UNAVAILABLE(LocalStack::unavailable_reason());
    ASSERT_TRUE(shared().start_error.empty()) << shared().start_error;
  }

  static LocalStack& stack() { return *shared().stack; }

  // The execution started for `scenario`, once it has ended.
  static Execution finished(const std::string& scenario) {
    Execution execution = await_execution(stack().step_functions(),
                                          shared().executions.at(scenario), kExecutionTimeout);
    EXPECT_NE(execution.status, "RUNNING")
        << scenario << " still runs after " << kExecutionTimeout.count() << " s";
    return execution;
  }

  static Json invoke_tasker(const Json& event) { return stack().invoke_tasker(event); }

  // describeStatement / getStatementResult LATEST for an execution, through the function.
  static Json latest(const std::string& action, const std::string& execution_arn,
                     const std::string& next_token = "") {
    Json event = {{"action", action}, {"statementId", "LATEST"}, {"executionArn", execution_arn}};
    if (!next_token.empty()) event["nextToken"] = next_token;
    return invoke_tasker(event);
  }

  // The Cause of a caught FAILED, parsed: {state, statementId, statementName, error}.
  static Json failure_cause(const Json& error) {
    EXPECT_EQ(error.value("Error", ""), "FAILED") << error.dump();
    return Json::parse(error.value("Cause", "{}"));
  }

  static std::size_t count(const std::vector<std::string>& path, const std::string& state) {
    return static_cast<std::size_t>(std::count(path.begin(), path.end(), state));
  }

  // --- CloudFormation custom resources ---------------------------------------------------------

  struct CfnResource {
    std::string logical_id;
    std::string type;
    std::string physical_id;  // from the Create response
    Json properties;
  };

  // Sends one CloudFormation request to the function as CloudFormation does (an asynchronous
  // invoke), with `receiver` as its response URL, and returns the response it PUT there.
  static Json cfn_request(CfnReceiver& receiver, CfnResource& resource,
                          const std::string& request_type, const Json& properties) {
    const std::size_t before = receiver.received().size();
    Json properties_with_token = properties;
    properties_with_token["ServiceToken"] = stack().env("TASKER_FUNCTION_ARN");
    Json request = {
        {"RequestType", request_type},
        {"ResponseURL", receiver.url("/e2e/" + resource.logical_id + "/" + request_type +
                                     "?X-Amz-Expires=7200&X-Amz-Signature=e2e")},
        {"StackId",
         "arn:aws:cloudformation:us-east-1:123456789012:stack/e2e/"
         "6a1e0000-0000-4000-8000-000000000001"},
        {"RequestId", "e2e-" + resource.logical_id + "-" + request_type},
        {"ResourceType", resource.type},
        {"LogicalResourceId", resource.logical_id},
        {"ServiceToken", stack().env("TASKER_FUNCTION_ARN")},
        {"ResourceProperties", properties_with_token}};
    if (request_type != "Create") request["PhysicalResourceId"] = resource.physical_id;
    if (request_type == "Update") {
      Json old = resource.properties;
      old["ServiceToken"] = stack().env("TASKER_FUNCTION_ARN");
      request["OldResourceProperties"] = old;
    }
    aws::HttpResponse invoked =
        stack().invoke(stack().env("TASKER_FUNCTION_NAME"), request.dump(), "Event");
    EXPECT_EQ(invoked.status, 202) << invoked.body;
    if (!receiver.wait_for(before + 1, kResponseTimeout)) {
      ADD_FAILURE() << "no CloudFormation response to " << request_type << " of "
                    << resource.logical_id << " within " << kResponseTimeout.count() << " s\n"
                    << stack().function_logs().substr(0, 20000);
      return Json::object();
    }
    const ReceivedRequest answer = receiver.received().at(before);
    EXPECT_EQ(answer.method, "PUT");
    EXPECT_EQ(answer.status, 200) << answer.body;
    EXPECT_TRUE(answer.problems.empty()) << answer.problems.front();
    Json body = Json::parse(answer.body);
    EXPECT_EQ(body.value("RequestId", ""), request.at("RequestId"));
    EXPECT_EQ(body.value("LogicalResourceId", ""), resource.logical_id);
    EXPECT_EQ(body.value("StackId", ""), request.at("StackId"));
    if (request_type == "Create") resource.physical_id = body.value("PhysicalResourceId", "");
    resource.properties = properties;
    return body;
  }
};

// --- CloudFormation custom resources (run first: the executions run meanwhile) -----------------

TEST_F(EndToEnd, RedshiftSqlResourceIsCreatedUpdatedAndDeleted) {
  CfnReceiver receiver;
  CfnResource table{"E2eTable", "Custom::RedshiftSql", "", Json::object()};
  const Json properties = {{"CreateSql", "create table e2e_cfn_table (n integer)"},
                           {"UpdateSql", "alter table e2e_cfn_table add column label text"},
                           {"DeleteSql", "drop table e2e_cfn_table"}};
  const std::string columns =
      "select count(*) from information_schema.columns where table_name = 'e2e_cfn_table'";

  Json created = cfn_request(receiver, table, "Create", properties);
  EXPECT_EQ(created.value("Status", ""), "SUCCESS") << created.dump();
  EXPECT_TRUE(table.physical_id.starts_with("E2eTable:")) << table.physical_id;
  EXPECT_EQ(sql_value(stack(), columns), "1");

  Json updated = cfn_request(receiver, table, "Update", properties);
  EXPECT_EQ(updated.value("Status", ""), "SUCCESS") << updated.dump();
  EXPECT_EQ(updated.value("PhysicalResourceId", ""), table.physical_id);
  EXPECT_EQ(sql_value(stack(), columns), "2") << "UpdateSql did not run";

  Json deleted = cfn_request(receiver, table, "Delete", properties);
  EXPECT_EQ(deleted.value("Status", ""), "SUCCESS") << deleted.dump();
  EXPECT_EQ(deleted.value("PhysicalResourceId", ""), table.physical_id);
  EXPECT_EQ(sql_value(stack(), "select to_regclass('e2e_cfn_table') is null"), "true");
  EXPECT_EQ(receiver.received().size(), 3u) << "each request is answered exactly once";
}

TEST_F(EndToEnd, RedshiftUserResourceIsCreatedRenamedAndDeleted) {
  CfnReceiver receiver;
  CfnResource user{"E2eUser", "Custom::RedshiftUser", "", Json::object()};
  // md5 + md5(password + username), as the resource requires: printf '%s%s' e2e-secret <name>.
  const Json created_properties = {{"username", "e2e_cfn_user"},
                                   {"password", "md5785ace72f22b138301067778a9259763"},
                                   {"create_db", "true"},
                                   {"connection_limit", "3"},
                                   {"valid_until", "2030-01-01"}};
  auto role = [&](const std::string& name) {
    return sql_value(stack(),
                     "select rolcanlogin || ',' || rolcreatedb || ',' || rolconnlimit || ',' || "
                     "rolpassword from pg_authid where rolname = '" +
                         name + "'");
  };

  Json created = cfn_request(receiver, user, "Create", created_properties);
  EXPECT_EQ(created.value("Status", ""), "SUCCESS") << created.dump();
  EXPECT_EQ(created["Data"].value("Username", ""), "e2e_cfn_user") << created.dump();
  EXPECT_EQ(role("e2e_cfn_user"), "true,true,3,md5785ace72f22b138301067778a9259763");

  Json renamed_properties = created_properties;
  renamed_properties["username"] = "e2e_cfn_renamed";
  renamed_properties["password"] = "md5b36112ed2ba79705f35b846269620990";
  renamed_properties["connection_limit"] = "5";
  Json updated = cfn_request(receiver, user, "Update", renamed_properties);
  EXPECT_EQ(updated.value("Status", ""), "SUCCESS") << updated.dump();
  EXPECT_EQ(updated.value("PhysicalResourceId", ""), user.physical_id) << "renamed in place";
  EXPECT_EQ(updated["Data"].value("Username", ""), "e2e_cfn_renamed") << updated.dump();
  EXPECT_EQ(role("e2e_cfn_user"), "") << "the old name is gone";
  EXPECT_EQ(role("e2e_cfn_renamed"), "true,true,5,md5b36112ed2ba79705f35b846269620990");

  Json deleted = cfn_request(receiver, user, "Delete", renamed_properties);
  EXPECT_EQ(deleted.value("Status", ""), "SUCCESS") << deleted.dump();
  EXPECT_EQ(deleted.value("PhysicalResourceId", ""), user.physical_id);
  EXPECT_EQ(role("e2e_cfn_renamed"), "");
}

// A Create whose SQL fails answers FAILED with PostgreSQL's text; CloudFormation then deletes the
// resource, and that Delete succeeds without running the DeleteSql (there is nothing to drop).
TEST_F(EndToEnd, RedshiftSqlResourceWhoseCreateFailedIsDeletedWithoutSql) {
  CfnReceiver receiver;
  CfnResource table{"E2eFailedCreate", "Custom::RedshiftSql", "", Json::object()};
  const Json properties = {{"CreateSql", "insert into e2e_failed_create_missing values (1)"},
                           {"DeleteSql", "create table e2e_failed_create_marker (n integer)"}};
  Json created = cfn_request(receiver, table, "Create", properties);
  EXPECT_EQ(created.value("Status", ""), "FAILED") << created.dump();
  EXPECT_NE(created.value("Reason", "").find("e2e_failed_create_missing"), std::string::npos)
      << created.dump();
  ASSERT_FALSE(table.physical_id.empty()) << "a failed Create still names a resource";

  Json deleted = cfn_request(receiver, table, "Delete", properties);
  EXPECT_EQ(deleted.value("Status", ""), "SUCCESS") << deleted.dump();
  EXPECT_EQ(deleted.value("PhysicalResourceId", ""), table.physical_id);
  EXPECT_EQ(sql_value(stack(), "select to_regclass('e2e_failed_create_marker') is null"), "true")
      << "the DeleteSql of a resource that was never created ran";
}

// cfn/examples/custom-resources.yaml, deployed the way CloudFormation would (moto cannot run
// custom resources): every resource's Create in dependency order, an Update of what a parameter
// change touches, then every Delete in reverse order, each answered on a local response URL.
TEST_F(EndToEnd, Example_CustomResourcesTemplateIsCreatedUpdatedAndDeleted) {
  const Json resources =
      template_as_json(source_dir() / "cfn" / "examples" / "custom-resources.yaml").at("Resources");
  const std::vector<std::string> order = creation_order(resources);
  std::map<std::string, std::string> parameters = {
      {"TaskerFunctionArn", stack().env("TASKER_FUNCTION_ARN")},
      {"EtlUserPasswordHash",
       sql_value(stack(), "select 'md5' || md5('e2e-pw' || 'rstasker_etl')")},
      {"EtlUserConnectionLimit", "5"}};
  auto properties_of = [&](const std::string& name) {
    Json properties = resolve_refs(resources.at(name).at("Properties"), parameters);
    properties.erase("ServiceToken");  // cfn_request adds it
    return properties;
  };
  auto user = [&] {
    return sql_value(
        stack(),
        "select rolconnlimit || ',' || pg_has_role('rstasker_etl', 'rstasker_loaders', "
        "'member') || ',' || has_table_privilege('rstasker_etl', "
        "'rstasker_reporting.daily_loads', 'INSERT') from pg_roles where rolname = "
        "'rstasker_etl'");
  };

  CfnReceiver receiver;
  std::map<std::string, CfnResource> deployed;
  for (const std::string& name : order) {
    CfnResource resource{name, resources.at(name).at("Type"), "", Json::object()};
    Json answer = cfn_request(receiver, resource, "Create", properties_of(name));
    ASSERT_EQ(answer.value("Status", ""), "SUCCESS") << name << ": " << answer.dump();
    deployed.emplace(name, resource);
  }
  EXPECT_EQ(sql_value(stack(), "select to_regclass('rstasker_reporting.daily_loads') is not null"),
            "true");
  EXPECT_EQ(user(), "5,true,true") << "connection limit, group membership, grant";

  // A new connection limit changes EtlUser's properties only: that one resource is updated.
  parameters["EtlUserConnectionLimit"] = "7";
  for (const std::string& name : order) {
    const Json properties = properties_of(name);
    if (properties == deployed.at(name).properties) continue;
    EXPECT_EQ(name, "EtlUser");
    Json answer = cfn_request(receiver, deployed.at(name), "Update", properties);
    ASSERT_EQ(answer.value("Status", ""), "SUCCESS") << name << ": " << answer.dump();
  }
  EXPECT_EQ(user(), "7,true,true");

  for (auto it = order.rbegin(); it != order.rend(); ++it) {
    CfnResource& resource = deployed.at(*it);
    Json answer = cfn_request(receiver, resource, "Delete", resource.properties);
    ASSERT_EQ(answer.value("Status", ""), "SUCCESS") << *it << ": " << answer.dump();
    EXPECT_EQ(answer.value("PhysicalResourceId", ""), resource.physical_id);
  }
  EXPECT_EQ(sql_value(stack(),
                      "select count(*) from pg_namespace where nspname = "
                      "'rstasker_reporting'"),
            "0");
  EXPECT_EQ(sql_value(stack(),
                      "select count(*) from pg_roles where rolname in ('rstasker_etl', "
                      "'rstasker_loaders')"),
            "0");
}

// The completion is delivered through SQS; the first delivery cannot call back (the response
// URL answers 503 to every attempt the function makes), so the function lists the record in
// batchItemFailures; the event-source mapping lets it come back after the visibility timeout,
// and the second delivery calls back. The SQL runs once, and CloudFormation hears once.
TEST_F(EndToEnd, CompletionThatFailsOnceIsRedeliveredAndCalledBackOnce) {
  CfnReceiver receiver;
  receiver.fail_next(1000, 503);
  CfnResource table{"E2eRedelivered", "Custom::RedshiftSql", "", Json::object()};
  Json request_properties = {{"CreateSql", "create table e2e_redelivered (n integer)"}};

  // As cfn_request, but the first answers are failures by design.
  Json properties = request_properties;
  properties["ServiceToken"] = stack().env("TASKER_FUNCTION_ARN");
  Json request = {{"RequestType", "Create"},
                  {"ResponseURL", receiver.url("/e2e/redelivered?X-Amz-Signature=e2e")},
                  {"StackId",
                   "arn:aws:cloudformation:us-east-1:123456789012:stack/e2e/"
                   "6a1e0000-0000-4000-8000-000000000002"},
                  {"RequestId", "e2e-redelivered-create"},
                  {"ResourceType", table.type},
                  {"LogicalResourceId", table.logical_id},
                  {"ResourceProperties", properties}};
  ASSERT_EQ(stack().invoke(stack().env("TASKER_FUNCTION_NAME"), request.dump(), "Event").status,
            202);

  // The first delivery gave up: its retries were refused and the function said so.
  const std::string gave_up = "could not call back for statement cfn:";
  ASSERT_TRUE(eventually(
      [&] {
        return !receiver.received().empty() &&
               stack().function_logs().find(gave_up) != std::string::npos;
      },
      kResponseTimeout))
      << "the first delivery never failed to call back\n"
      << stack().function_logs().substr(0, 20000);
  receiver.fail_next(0);

  ASSERT_TRUE(eventually(
      [&] {
        const auto received = receiver.received();
        return std::any_of(received.begin(), received.end(),
                           [](const ReceivedRequest& r) { return r.status == 200; });
      },
      kResponseTimeout))
      << "the redelivered completion never called back\n"
      << stack().function_logs().substr(0, 20000);
  // Once called back, the record is done: the queue empties and nothing more arrives.
  EXPECT_TRUE(eventually(
      [&] {
        Json attributes =
            stack()
                .sqs()
                .call("GetQueueAttributes",
                      {{"QueueUrl", stack().env("TASKER_QUEUE_URL")},
                       {"AttributeNames",
                        {"ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"}}},
                      {})
                .at("Attributes");
        return attributes.at("ApproximateNumberOfMessages") == "0" &&
               attributes.at("ApproximateNumberOfMessagesNotVisible") == "0";
      },
      20s));

  const std::vector<ReceivedRequest> received = receiver.received();
  ASSERT_GE(received.size(), 2u);
  for (std::size_t i = 0; i + 1 < received.size(); ++i) {
    EXPECT_EQ(received[i].status, 503) << "attempt " << i << " of the first delivery";
  }
  EXPECT_EQ(received.back().status, 200) << "exactly one answer got through, and it was the last";
  Json body = Json::parse(received.back().body);
  EXPECT_EQ(body.value("Status", ""), "SUCCESS") << received.back().body;
  EXPECT_EQ(body.value("RequestId", ""), "e2e-redelivered-create");
  EXPECT_TRUE(received.back().problems.empty()) << received.back().problems.front();
  // The SQL ran once (a second CREATE TABLE would have failed the resource).
  EXPECT_EQ(sql_value(stack(), "select to_regclass('e2e_redelivered') is not null"), "true");

  // The function's own account: one failed delivery, one completion, of the same statement.
  const std::string logs = stack().function_logs();
  const std::size_t at = logs.find(gave_up);
  ASSERT_NE(at, std::string::npos);
  const std::size_t name_start = at + std::string("could not call back for statement ").size();
  const std::string statement = logs.substr(name_start, logs.find(' ', name_start) - name_start);
  std::size_t completions = 0;
  std::istringstream lines(logs);
  for (std::string line; std::getline(lines, line);) {
    if (line.find("statement " + statement + " (") != std::string::npos &&
        line.find(": completed") != std::string::npos) {
      ++completions;
    }
  }
  EXPECT_EQ(completions, 1u) << "statement " << statement << "\n" << logs.substr(0, 20000);
}

// --- The seed's six scenarios (cfn/examples/state-machines.yaml) -------------------------------

TEST_F(EndToEnd, Seed_SingleSuccess) {
  Execution run = finished("single_success");
  ASSERT_EQ(run.status, "SUCCEEDED") << run.described.dump();
  EXPECT_EQ(run.path, (std::vector<std::string>{"RunSql", "Succeeded"}));
  // The task's output is the completion event as EventBridge delivered it.
  const Json& detail = run.output.at("statement").at("detail");
  EXPECT_EQ(detail.at("state"), "FINISHED");
  EXPECT_TRUE(detail.at("statementName").get<std::string>().starts_with(run.arn + ":"))
      << detail.dump();
  Json result = latest("getStatementResult", run.arn);
  EXPECT_EQ(result.at("ColumnMetadata").at(0).at("name"), "one") << result.dump();
  EXPECT_EQ(result.at("Records").at(0).at(0).at("longValue"), 1) << result.dump();
}

TEST_F(EndToEnd, Seed_SingleFailure) {
  Execution run = finished("single_failure");
  ASSERT_EQ(run.status, "SUCCEEDED") << run.described.dump();
  EXPECT_EQ(run.path,
            (std::vector<std::string>{"RunFailingSql", "DescribeFailure", "FailureHandled"}));
  const std::string postgres_says =
      "relation \"rstasker_example_table_that_does_not_exist\" does not exist";
  Json cause = failure_cause(run.output.at("error"));
  EXPECT_EQ(cause.value("state", ""), "FAILED");
  EXPECT_NE(cause.value("error", "").find(postgres_says), std::string::npos) << cause.dump();
  EXPECT_EQ(run.output.at("statement").at("Status"), "FAILED");
  EXPECT_NE(run.output.at("statement").value("Error", "").find(postgres_says), std::string::npos);
}

TEST_F(EndToEnd, Seed_SuccessAndFail) {
  Execution run = finished("success_and_fail");
  ASSERT_EQ(run.status, "SUCCEEDED") << run.described.dump();
  EXPECT_EQ(run.path, (std::vector<std::string>{"First", "Second", "SecondFailed"}));
  EXPECT_EQ(run.output.at("first").at("detail").at("state"), "FINISHED");
  Json cause = failure_cause(run.output.at("error"));
  EXPECT_NE(cause.value("error", "").find("division by zero"), std::string::npos) << cause.dump();
}

TEST_F(EndToEnd, Seed_ParallelNoConcurrency) {
  Execution run = finished("parallel_no_concurrency");
  ASSERT_EQ(run.status, "SUCCEEDED") << run.described.dump();
  // One branch ran the singleton, the other caught ConcurrentExecution (its only Catch).
  std::vector<std::string> outcomes = run.output.get<std::vector<std::string>>();
  std::sort(outcomes.begin(), outcomes.end());
  EXPECT_EQ(outcomes, (std::vector<std::string>{"ran", "refused"})) << run.output.dump();
  EXPECT_EQ(count(run.path, "RanA") + count(run.path, "RanB"), 1u);
  EXPECT_EQ(count(run.path, "RefusedA") + count(run.path, "RefusedB"), 1u);
  EXPECT_EQ(run.path.back(), "Done");
}

TEST_F(EndToEnd, Seed_CancellingStatement) {
  Execution run = finished("cancelling_statement");
  ASSERT_EQ(run.status, "SUCCEEDED") << run.described.dump();
  ASSERT_GE(run.path.size(), 6u);
  EXPECT_EQ(
      std::vector<std::string>(run.path.begin(), run.path.begin() + 5),
      (std::vector<std::string>{"LongSql", "Cancel", "WaitForAbort", "Describe", "IsAborted"}));
  EXPECT_EQ(run.path.back(), "Cancelled");
  EXPECT_EQ(run.output.at("error").at("Error"), "States.Timeout");
  EXPECT_EQ(run.output.at("cancel").at("Status"), true);
  EXPECT_EQ(run.output.at("statement").at("Status"), "ABORTED");
  EXPECT_EQ(latest("describeStatement", run.arn).at("Status"), "ABORTED");
  // Cancelled on PostgreSQL too: the sleep no longer runs.
  EXPECT_EQ(sql_value(stack(),
                      "select count(*) from pg_stat_activity where query = 'select pg_sleep(600)'"),
            "0");
}

TEST_F(EndToEnd, Seed_Polling) {
  Execution run = finished("polling");
  ASSERT_EQ(run.status, "SUCCEEDED") << run.described.dump();
  EXPECT_EQ(run.path.front(), "Start");
  EXPECT_EQ(run.path.back(), "Done");
  // pg_sleep(5) outlives the first 2-second wait: the loop went round at least twice.
  EXPECT_GE(count(run.path, "Describe"), 2u);
  EXPECT_EQ(count(run.path, "Describe"), count(run.path, "Wait"));
  EXPECT_EQ(run.output.at("statement").at("Status"), "FINISHED");
  EXPECT_EQ(run.output.at("statement").at("Id"), run.output.at("started").at("Id"));
}

// --- The other examples -------------------------------------------------------------------------

TEST_F(EndToEnd, Example_PagingInTheStateMachine) {
  Execution run = finished("paging");
  ASSERT_EQ(run.status, "SUCCEEDED") << run.described.dump();
  EXPECT_EQ(run.output, Json({{"pages", 3}, {"rows", 2500}, {"totalRows", 2500}}));
  EXPECT_EQ(count(run.path, "NextPage"), 2u);
}

TEST_F(EndToEnd, Example_Batch) {
  Execution run = finished("batch");
  ASSERT_EQ(run.status, "SUCCEEDED") << run.described.dump();
  EXPECT_EQ(run.path, (std::vector<std::string>{"RunBatch", "Done"}));
  EXPECT_EQ(run.output.at("batch").at("detail").at("state"), "FINISHED");
  Json described = latest("describeStatement", run.arn);
  EXPECT_EQ(described.at("Status"), "FINISHED");
  const Json& subs = described.at("SubStatements");
  ASSERT_EQ(subs.size(), 3u) << described.dump();
  for (const Json& sub : subs) EXPECT_EQ(sub.at("Status"), "FINISHED") << sub.dump();
  // The third statement saw the rows the second inserted: one transaction.
  Json result =
      invoke_tasker({{"action", "getStatementResult"}, {"statementId", subs[2].at("Id")}});
  EXPECT_EQ(result.at("Records").at(0).at(0).at("longValue"), 3) << result.dump();
}

TEST_F(EndToEnd, Example_NamedParameters) {
  Execution run = finished("named_parameters");
  ASSERT_EQ(run.status, "SUCCEEDED") << run.described.dump();
  EXPECT_EQ(run.path, (std::vector<std::string>{"Run", "Result"}));
  EXPECT_EQ(run.output, Json::parse(R"([[{"longValue": 42}, {"stringValue": "hello"}]])"));
}

// --- The query runner (cfn/query-runner.yaml, seed 004) -----------------------------------------

// The retry waits of a query-runner execution: the Wait states entered after a failed attempt
// (the runner state then names the error and no running statement), in order. The runner state
// in the Wait state's input carries the exact values the step decided with: the jitter sleep it
// drew (current.retryWait, unrounded), the whole seconds the Wait state waits, and the query's
// tuning.
struct RetryWait {
  std::int64_t seconds;  // waitSeconds: what the Wait state waits
  double retry_wait;     // current.retryWait: the drawn sleep, before rounding
  double previous;       // current.retryWait of the runner state before: the previous sleep
  double base_wait;      // the query's BaseWaitTime
  double max_wait;       // the query's MaxWait
  std::size_t index;     // the query
  int failed_attempt;    // the attempt that failed
  std::string error;     // its error
  double entered = 0;    // WaitStateEntered and WaitStateExited times, epoch seconds
  double exited = -1;
};

// A history event's timestamp in epoch seconds: moto gives ISO 8601 text with milliseconds
// ("2024-03-05T10:20:30.123Z"), AWS's JSON protocol a number of seconds.
double event_time(const Json& event) {
  const Json& stamp = event.at("timestamp");
  if (stamp.is_number()) return stamp.get<double>();
  std::tm parts{};
  double fraction = 0;
  const std::string text = stamp.get<std::string>();
  std::istringstream in(text);
  in >> std::get_time(&parts, "%Y-%m-%dT%H:%M:%S");
  if (in.fail()) throw std::runtime_error("unreadable history timestamp " + text);
  if (in.peek() == '.') in >> fraction;  // ".123"
  return static_cast<double>(timegm(&parts)) + fraction;
}

std::vector<RetryWait> retry_waits(const Execution& run) {
  std::vector<RetryWait> waits;
  bool in_retry_wait = false;
  std::map<std::size_t, double> last_retry_wait;  // per query: current.retryWait last seen
  for (const Json& event : run.history) {
    const std::string type = event.value("type", "");
    if (type == "WaitStateExited" && in_retry_wait) {
      waits.back().exited = event_time(event);
      in_retry_wait = false;
    }
    if (type != "WaitStateEntered") continue;
    const Json input = Json::parse(event.at("stateEnteredEventDetails").value("input", "{}"));
    const Json& current = input.at("current");
    const std::size_t index = current.at("index").get<std::size_t>();
    const double retry_wait = current.at("retryWait").get<double>();
    if (current.value("statementId", "").empty() && current.contains("lastError")) {
      const Json& query = input.at("queries").at(index);
      const double base_wait = query.at("BaseWaitTime").get<double>();
      const auto seen = last_retry_wait.find(index);
      waits.push_back({input.at("waitSeconds").get<std::int64_t>(), retry_wait,
                       seen == last_retry_wait.end() ? base_wait : seen->second, base_wait,
                       query.at("MaxWait").get<double>(), index, current.at("attempt").get<int>(),
                       current.at("lastError"), event_time(event)});
      in_retry_wait = true;
    }
    last_retry_wait[index] = retry_wait;
  }
  return waits;
}

TEST_F(EndToEnd, QueryRunner_RetriesAMatchingErrorAfterJitteredWaitsAndSucceeds) {
  Execution run = finished("runner_retried");
  ASSERT_EQ(run.status, "SUCCEEDED") << run.described.dump();
  ASSERT_EQ(run.output.size(), 3u) << run.output.dump();
  EXPECT_EQ(run.output[0].value("Attempts", 0), 1);
  EXPECT_EQ(run.output[1].value("Attempts", 0), 3) << "failed twice, then succeeded";
  EXPECT_EQ(run.output[2].value("Attempts", 0), 1);
  std::set<std::string> statements;
  for (const Json& query : run.output) statements.insert(query.value("StatementId", ""));
  EXPECT_EQ(statements.size(), 3u) << run.output.dump();

  // Each failure was followed by a Wait of the decorrelated-jitter length before the query ran
  // again. Checked on the exact values the runner state carries: the sleep drawn is
  // min(MaxWait, uniform(BaseWaitTime, max(BaseWaitTime, previous sleep x 3))), where the
  // previous sleep (unrounded) starts at BaseWaitTime for each query, and the Wait state waits it
  // rounded to whole seconds (never above MaxWait).
  const std::vector<RetryWait> waits = retry_waits(run);
  ASSERT_EQ(waits.size(), 2u) << run.history.dump();
  for (std::size_t i = 0; i < waits.size(); ++i) {
    const RetryWait& w = waits[i];
    EXPECT_EQ(w.index, 1u);
    EXPECT_EQ(w.failed_attempt, static_cast<int>(i + 1));
    EXPECT_NE(w.error.find("division by zero"), std::string::npos) << w.error;
    EXPECT_EQ(w.base_wait, kRunnerBaseWait);
    EXPECT_EQ(w.max_wait, kRunnerMaxWait);
    EXPECT_EQ(w.previous, i == 0 ? w.base_wait : waits[i - 1].retry_wait) << "wait " << i;
    EXPECT_GE(w.retry_wait, w.base_wait) << "wait " << i;
    EXPECT_LE(w.retry_wait, std::min(w.max_wait, std::max(w.base_wait, w.previous * 3)))
        << "wait " << i << " after a sleep of " << w.previous;
    EXPECT_EQ(w.seconds,
              std::min(std::llround(w.retry_wait), static_cast<long long>(std::floor(w.max_wait))))
        << "wait " << i << " drew " << w.retry_wait;
    // The Wait state really waited (its history timestamps have millisecond granularity).
    ASSERT_GE(w.exited, 0) << "wait " << i << " never exited";
    EXPECT_GE(w.exited - w.entered, static_cast<double>(w.seconds) - 0.001)
        << "wait " << i << " of " << w.seconds << " s ended early";
  }
  EXPECT_EQ(sql_value(stack(), "select last_value from e2e_runner_attempts"), "3");
}

TEST_F(EndToEnd, QueryRunner_ErrorNotMatchingRetryErrorMatchFailsWithoutRetry) {
  Execution run = finished("runner_not_matching");
  ASSERT_EQ(run.status, "FAILED") << run.described.dump();
  EXPECT_EQ(run.described.value("error", ""), "QueryFailed") << run.described.dump();
  // A function error's Cause is the error JSON the function reported.
  const std::string cause =
      Json::parse(run.described.value("cause", "{}")).value("errorMessage", "");
  EXPECT_NE(cause.find("query 2 of 3"), std::string::npos) << cause;
  EXPECT_NE(cause.find("1 attempt"), std::string::npos) << cause;
  EXPECT_NE(cause.find("does not match RetryErrorMatch"), std::string::npos) << cause;
  EXPECT_NE(cause.find("relation \"e2e_runner_no_such_table\" does not exist"), std::string::npos)
      << cause;
  EXPECT_TRUE(retry_waits(run).empty()) << "no retry was waited for";
}

TEST_F(EndToEnd, QueryRunner_MaxRetriesZeroFailsAtOnce) {
  Execution run = finished("runner_no_retries");
  ASSERT_EQ(run.status, "FAILED") << run.described.dump();
  EXPECT_EQ(run.described.value("error", ""), "QueryFailed");
  // A function error's Cause is the error JSON the function reported.
  const std::string cause =
      Json::parse(run.described.value("cause", "{}")).value("errorMessage", "");
  EXPECT_NE(cause.find("MaxRetries is 0"), std::string::npos) << cause;
  EXPECT_NE(cause.find("division by zero"), std::string::npos) << cause;
  EXPECT_TRUE(retry_waits(run).empty());
}

TEST_F(EndToEnd, Demo_QueryRunnerInputRunsAgainOnTheSameDatabase) {
  for (const char* run : {"demo_runner_first_run", "demo_runner_second_run"}) {
    Execution execution = finished(run);
    EXPECT_EQ(execution.status, "SUCCEEDED") << run << ": " << execution.described.dump();
    ASSERT_EQ(execution.output.size(), 3u) << run << ": " << execution.output.dump();
    EXPECT_EQ(execution.output[1].value("Attempts", 0), 3) << run << ": retried twice";
  }
}

TEST_F(EndToEnd, QueryRunner_CallbackFlavourRunsQueriesInOrder) {
  Execution run = finished("runner_callback");
  ASSERT_EQ(run.status, "SUCCEEDED") << run.described.dump();
  EXPECT_EQ(count(run.path, "Run"), 2u);
  EXPECT_EQ(count(run.path, "Wait"), 0u) << "nothing polls";
  EXPECT_EQ(sql_value(stack(), "select sum(n) from e2e_runner_callback"), "7");
}

// A cancelled statement is not run again, as in the polling flavour: the execution fails with
// ABORTED after one attempt (the callback it gets is FAILED with the cause's state ABORTED).
TEST_F(EndToEnd, QueryRunner_CallbackFlavourDoesNotRetryACancelledStatement) {
  const std::string arn = shared().executions.at("runner_callback_cancelled");
  const Json latest_event = {{"statementId", "LATEST"}, {"executionArn", arn}};
  // The statement is started by the execution's first task; cancel it once it runs.
  std::string status;
  for (int attempt = 0; attempt < 120 && status != "STARTED"; ++attempt) {
    try {
      Json event = latest_event;
      event["action"] = "describeStatement";
      status = invoke_tasker(event).value("Status", "");
    } catch (const std::runtime_error&) {
      // PreviousExecutionNotFound: not started yet.
    }
    if (status != "STARTED") std::this_thread::sleep_for(1s);
  }
  ASSERT_EQ(status, "STARTED");
  Json cancel = latest_event;
  cancel["action"] = "cancelStatement";
  invoke_tasker(cancel);

  Execution run = finished("runner_callback_cancelled");
  ASSERT_EQ(run.status, "FAILED") << run.described.dump();
  EXPECT_EQ(run.described.value("error", ""), "ABORTED") << run.described.dump();
  EXPECT_EQ(count(run.path, "Statement"), 1u) << "a cancelled statement was run again";
  Json cause = Json::parse(run.described.value("cause", "{}"));
  EXPECT_EQ(cause.value("state", ""), "ABORTED") << run.described.dump();
}

// --- State machines of the test's own -----------------------------------------------------------

TEST_F(EndToEnd, AnyStateMachine_AnswerIsReadThroughTheFunction) {
  Execution run = finished("own_answer");
  ASSERT_EQ(run.status, "SUCCEEDED") << run.described.dump();
  EXPECT_EQ(run.path, (std::vector<std::string>{"Run", "Finished"}));
  EXPECT_EQ(run.output.at("completion").at("detail").at("state"), "FINISHED");
  Json result = latest("getStatementResult", run.arn);
  EXPECT_EQ(result.at("Records").at(0).at(0).at("longValue"), 42) << result.dump();
}

TEST_F(EndToEnd, AnyStateMachine_MissingTableFailsWithPostgresText) {
  Execution run = finished("own_missing_table");
  ASSERT_EQ(run.status, "SUCCEEDED") << run.described.dump();
  EXPECT_EQ(run.path, (std::vector<std::string>{"Run", "SqlFailed"}));
  Json cause = failure_cause(run.output.at("error"));
  EXPECT_EQ(cause.value("state", ""), "FAILED");
  EXPECT_NE(cause.value("error", "").find("relation \"e2e_no_such_table\" does not exist"),
            std::string::npos)
      << cause.dump();
  EXPECT_TRUE(cause.value("statementName", "").starts_with(run.arn + ":")) << cause.dump();
}

TEST_F(EndToEnd, AnyStateMachine_StatementPastItsHeartbeatIsCancelled) {
  Execution run = finished("own_cancelled");
  ASSERT_EQ(run.status, "SUCCEEDED") << run.described.dump();
  ASSERT_GE(run.path.size(), 4u);
  EXPECT_EQ(std::vector<std::string>(run.path.begin(), run.path.begin() + 4),
            (std::vector<std::string>{"Run", "Cancel", "Describe", "IsAborted"}));
  EXPECT_EQ(run.path.back(), "Aborted");
  EXPECT_EQ(run.output.at("error").at("Error"), "States.Timeout");
  EXPECT_EQ(run.output.at("statement").at("Status"), "ABORTED");
  EXPECT_EQ(latest("describeStatement", run.arn).at("Status"), "ABORTED");
  EXPECT_EQ(sql_value(stack(),
                      "select count(*) from pg_stat_activity where query like "
                      "'select pg_sleep(120) as e2e_cancelled%'"),
            "0");
}

// A second task with the caller and idempotencyKey of a finished one (what a Retry attempt of a
// state gives the tasker) starts nothing: it is answered inside its own invocation with the first
// statement's outcome. That callback reaches Step Functions before the invocation returns, so
// before the task's heartbeat clock starts (moto_launcher patch 6 makes moto take it as AWS does).
TEST_F(EndToEnd, AnyStateMachine_ARepeatedIdempotencyKeyIsAnsweredAtOnce) {
  const aws::JsonClient& sfn = stack().step_functions();
  Json definition = callback_machine(stack().env("TASKER_FUNCTION_ARN"), 60, false);
  Json& payload = definition["States"]["Run"]["Parameters"]["Payload"];
  payload["executionArn.$"] = "$.caller";
  payload["idempotencyKey.$"] = "$.key";
  const std::string machine = create_state_machine(sfn, "e2e-keyed", definition);
  std::string caller = machine;
  caller.replace(caller.find(":stateMachine:"), 14, ":execution:");
  caller += ":e2e-keyed-first";
  run_sql(stack(), "create table e2e_keyed (n integer)");
  const Json input = {
      {"caller", caller}, {"key", "Run#1"}, {"sql", "insert into e2e_keyed values (1)"}};

  Execution first = await_execution(sfn, start_execution(sfn, machine, "e2e-keyed-first", input),
                                    kExecutionTimeout);
  ASSERT_EQ(first.status, "SUCCEEDED") << first.described.dump();
  ASSERT_EQ(first.path, (std::vector<std::string>{"Run", "Finished"}));
  Execution repeat = await_execution(sfn, start_execution(sfn, machine, "e2e-keyed-repeat", input),
                                     kExecutionTimeout);
  ASSERT_EQ(repeat.status, "SUCCEEDED") << repeat.described.dump();
  // Answered, not timed out (a States.Timeout would have gone on to Cancel).
  EXPECT_EQ(repeat.path, (std::vector<std::string>{"Run", "Finished"})) << repeat.output.dump();
  EXPECT_EQ(repeat.output.at("completion").at("detail").at("statementId"),
            first.output.at("completion").at("detail").at("statementId"))
      << repeat.output.dump();
  EXPECT_EQ(sql_value(stack(), "select count(*) from e2e_keyed"), "1");
}

TEST_F(EndToEnd, AnyStateMachine_FiveThousandRowsArePagedWithNextToken) {
  Execution run = finished("own_5000_rows");
  ASSERT_EQ(run.status, "SUCCEEDED") << run.described.dump();
  EXPECT_EQ(run.output.at("completion").at("detail").at("rows"), 5000);
  std::vector<long long> numbers;
  std::size_t pages = 0;
  std::string next_token;
  do {
    Json page = latest("getStatementResult", run.arn, next_token);
    ++pages;
    ASSERT_LE(pages, 5000u) << "paging does not end";
    EXPECT_EQ(page.at("TotalNumRows"), 5000);
    for (const Json& record : page.at("Records")) {
      const long long n = record.at(0).at("longValue").get<long long>();
      EXPECT_EQ(record.at(1).at("stringValue"), "row " + std::to_string(n));
      numbers.push_back(n);
    }
    next_token = page.value("NextToken", "");
  } while (!next_token.empty());
  EXPECT_GT(pages, 1u) << "a 5,000-row result comes in several pages";
  ASSERT_EQ(numbers.size(), 5000u);
  for (std::size_t i = 0; i < numbers.size(); ++i) {
    ASSERT_EQ(numbers[i], static_cast<long long>(i + 1))
        << "row " << i << " of " << pages << " pages";
  }
}

TEST_F(EndToEnd, AnyStateMachine_FailedBatchCommitsNothing) {
  Execution run = finished("own_batch_rolled_back");
  ASSERT_EQ(run.status, "SUCCEEDED") << run.described.dump();
  EXPECT_EQ(run.path, (std::vector<std::string>{"Run", "SqlFailed"}));
  Json cause = failure_cause(run.output.at("error"));
  EXPECT_NE(cause.value("error", "").find("division by zero"), std::string::npos) << cause.dump();
  EXPECT_EQ(sql_value(stack(), "select to_regclass('e2e_batch_rolled_back') is null"), "true")
      << "the table of the failed batch's first statement was committed";
}

// --- scripts/local-stack ------------------------------------------------------------------------

TEST_F(EndToEnd, LocalStack_UpWhenUpChangesNothing) {
  const std::string ports = read_file(stack().dir() / "ports");
  const std::string env = read_file(stack().dir() / "env");
  const auto pids = stack().recorded_pids();
  std::string output;
  ASSERT_EQ(stack().run_script({"up"}, output), 0) << output;
  EXPECT_NE(output.find("already up"), std::string::npos) << output;
  EXPECT_EQ(read_file(stack().dir() / "ports"), ports);
  EXPECT_EQ(stack().recorded_pids(), pids) << "a process was restarted";
  EXPECT_EQ(read_file(stack().dir() / "env"), env);
  for (const auto& [name, pid] : pids) EXPECT_TRUE(process_alive(pid)) << name;
}

}  // namespace
}  // namespace rstasker::testing
