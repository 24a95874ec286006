// The fault campaign: the whole local stack with tasker-local's fault layer between the function
// and AWS. Phase "first reply lost": every write the function makes is applied and its first
// answer lost (500), and every example of cfn/examples must end as it does without faults. Phase
// "seeded mix": rounds of Step Functions (plain, failing, batch, parameters, singleton, cancel),
// CloudFormation (Custom::RedshiftSql, Custom::RedshiftUser) and query-runner flows under a seeded
// mix of every fault (lost replies as 500s, cut connections and stalls; refusals; latency;
// duplicated, delayed and dropped completion events, which only reconcile can then finish).
// Each phase checks and prints its invariants: every outcome right; each task token answered
// exactly once; CloudFormation answers per request byte-identical; each statement's SQL run once
// (marker rows, and one Data API statement per statement name); no singleton lock left; no record
// left waiting once every statement has ended (its completion message was consumed unanswered).
//
// Parameters (environment), so bench/faults can run the same campaign longer:
// RSTASKER_FAULTS_SEED (1), RSTASKER_FAULTS_ROUNDS (rounds of the mix, 2) or
// RSTASKER_FAULTS_STATEMENTS (at least this many statements in the mix: rounds of
// kStatementsPerRound), RSTASKER_FAULTS_PARALLEL (rounds started at once, 2),
// RSTASKER_FAULTS_PHASES ("lost,mix"; "none" adds the mix's flows without faults),
// RSTASKER_FAULTS_PHASE_TIMEOUT (seconds a phase, or each wave of rounds of a long run, may take;
// 80),
// RSTASKER_FAULTS_REPORT (a file for the figures as JSON).
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "flows.hpp"
#include "local_stack.hpp"
#include "rstasker/aws/sigv4.hpp"
#include "rstasker/common/error.hpp"
#include "support/cfn_receiver.hpp"
#include "support/paths.hpp"
#include "support/process.hpp"

namespace rstasker::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// The campaign's own key: its control and check calls are never faulted (rules name the
// function's key).
const aws::Credentials kCampaignKey{"AKIDFAULTCAMPAIGN", "fault-campaign-secret", ""};
// The SQL statements of one round of the mix (mix_round): 11 by Step Functions (a batch of two
// counts two), 5 by CloudFormation.
constexpr int kStatementsPerRound = 16;
constexpr auto kCfnTimeout = 60s;
// A phase's flows (and the answers it waits for) must end this long after it began: two phases
// and the stack's deployment fit in ctest's 5 minutes.
constexpr auto kPhaseTimeout = 80s;
constexpr int kReconcileAfterSeconds = 3;

std::string env_or(const char* name, const std::string& fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? std::string(value) : fallback;
}

const char* const kInvariants[] = {
    "every outcome right",
    "each task token answered once",
    "CloudFormation answers identical",
    "each statement's SQL run once",
    "no singleton lock left",
    "no record left waiting",
};

struct Violations {
  std::mutex mutex;
  std::map<std::string, std::vector<std::string>> found;
  void add(const std::string& invariant, const std::string& what) {
    std::lock_guard lock(mutex);
    found[invariant].push_back(what);
  }
  std::size_t total() {
    std::lock_guard lock(mutex);
    std::size_t n = 0;
    for (const auto& [name, list] : found) n += list.size();
    return n;
  }
};

std::string join(const std::vector<std::string>& parts) {
  std::string text;
  for (const auto& part : parts) text += (text.empty() ? "" : ",") + part;
  return text;
}

// One waitForTaskToken task around the tasker with `fields` in its payload; FAILED caught
// (SqlFailed), any other error caught (OtherError), HeartbeatSeconds 30.
Json task_machine(const std::string& function_arn, const Json& fields) {
  // The idempotency key a user builds: the same across Retry attempts of the state.
  Json payload = {{"taskToken.$", "$$.Task.Token"},
                  {"executionArn.$", "$$.Execution.Id"},
                  {"idempotencyKey.$",
                   "States.Format('{}#{}#{}', $$.Execution.Id, $$.State.Name, "
                   "$$.State.EnteredTime)"}};
  payload.update(fields);
  return {
      {"StartAt", "Run"},
      {"States",
       {{"Run",
         {{"Type", "Task"},
          {"Resource", "arn:aws:states:::lambda:invoke.waitForTaskToken"},
          {"Parameters", {{"FunctionName", function_arn}, {"Payload", payload}}},
          {"HeartbeatSeconds", 30},
          {"Catch",
           {{{"ErrorEquals", {"FAILED"}}, {"ResultPath", "$.error"}, {"Next", "SqlFailed"}},
            {{"ErrorEquals", {"States.ALL"}}, {"ResultPath", "$.error"}, {"Next", "OtherError"}}}},
          {"ResultPath", "$.completion"},
          {"Next", "Finished"}}},
        {"Finished", {{"Type", "Succeed"}}},
        {"SqlFailed", {{"Type", "Pass"}, {"End", true}}},
        {"OtherError", {{"Type", "Pass"}, {"End", true}}}}}};
}

// An execution and what its end must look like ("" when right, else what is wrong).
struct Flow {
  std::string name;
  std::string arn;
  std::function<std::string(const Execution&)> check;
};

std::string expect_path(const Execution& run, const std::vector<std::string>& path) {
  if (run.status != "SUCCEEDED") return "status " + run.status + ": " + run.described.dump();
  if (run.path != path) {
    return "path " + join(run.path) + " (expected " + join(path) + "); output " + run.output.dump();
  }
  return {};
}

class Campaign {
 public:
  Campaign(LocalStack& stack, std::map<std::string, std::string> examples,
           std::map<std::string, std::string> runner, std::map<std::string, std::string> machines)
      : stack_(stack),
        examples_(std::move(examples)),
        runner_(std::move(runner)),
        machines_(std::move(machines)),
        transport_(aws::make_curl_transport()) {
    auto client = [&](const aws::JsonProtocol& protocol, const std::string& name,
                      const aws::Credentials& key) {
      return std::make_unique<aws::JsonClient>(
          protocol, aws::Endpoint{stack.env("AWS_ENDPOINT_URL"), stack.env("AWS_REGION"), name},
          key, transport_, aws::RetryPolicy{.max_attempts = 3});
    };
    sfn_ = client(aws::protocol::kStepFunctions, "states", kCampaignKey);
    dynamodb_ = client(aws::protocol::kDynamoDb, "dynamodb", kCampaignKey);
    data_api_ = client(aws::protocol::kRedshiftData, "redshift-data", kCampaignKey);
    // ListStatements is scoped to the caller: the function's statements are listed with its key
    // (the rules fault only the operations they name, never ListStatements).
    function_data_api_ = client(aws::protocol::kRedshiftData, "redshift-data", stack.credentials());
  }

  // --- the fault layer's control endpoint ---

  aws::HttpResponse control(const std::string& method, const std::string& body = "") {
    aws::HttpRequest request;
    request.method = method;
    request.url = stack_.env("AWS_ENDPOINT_URL") + "/_tasker_local/faults";
    request.headers = {{"X-Tasker-Local-Control", "faults"}};
    request.body = body;
    aws::HttpResponse answer = transport_->send(request, Deadline::after(30s));
    if (answer.status != 200) {
      throw std::runtime_error("the fault layer refused " + method + ": " + answer.body);
    }
    return answer;
  }
  void set_rules(const Json& rules) { control("PUT", rules.dump()); }
  Json counters() { return Json::parse(control("GET").body).at("counters"); }

  // --- SQL through the Data API with the campaign's key ---

  std::string sql_value(const std::string& sql) {
    const std::string id =
        data_api_
            ->call("ExecuteStatement",
                   {{"ClusterIdentifier", stack_.env("TASKER_CLUSTER_IDENTIFIER")},
                    {"Database", stack_.env("TASKER_DATABASE")},
                    {"DbUser", stack_.env("TASKER_DB_USER")},
                    {"Sql", sql}},
                   {})
            .at("Id");
    Json described;
    eventually(
        [&] {
          described = data_api_->call("DescribeStatement", {{"Id", id}}, {});
          const std::string status = described.at("Status");
          return status == "FINISHED" || status == "FAILED" || status == "ABORTED";
        },
        60s, 20ms);
    if (described.at("Status") != "FINISHED") {
      throw std::runtime_error("`" + sql + "`: " + described.dump());
    }
    if (!described.value("HasResultSet", false)) return {};
    Json result = data_api_->call("GetStatementResult", {{"Id", id}}, {});
    const Json records = result.value("Records", Json::array());
    if (records.empty() || records[0].empty()) return {};
    const Json& field = records[0][0];
    if (field.contains("stringValue")) return field.at("stringValue");
    if (field.contains("longValue")) return std::to_string(field.at("longValue").get<long long>());
    if (field.contains("booleanValue")) return field.at("booleanValue").get<bool>() ? "t" : "f";
    return {};
  }

  // --- flows ---

  void start(const std::string& name, const std::string& machine, const Json& input,
             std::function<std::string(const Execution&)> check, int statements) {
    Flow flow{name, "", std::move(check)};
    flow.arn = start_execution(*sfn_, machine, name, input);
    std::lock_guard lock(mutex_);
    flows_.push_back(std::move(flow));
    statements_ += statements;
  }

  std::string marker_sql(const std::string& id) {
    {
      std::lock_guard lock(mutex_);
      markers_.push_back(id);
    }
    return "insert into campaign_markers values ('" + id + "')";
  }

  // Sends one CloudFormation request as CloudFormation does (an asynchronous invoke) and waits
  // for its first answer; the status of that answer ("" when none came).
  std::string cfn_request(CfnReceiver& receiver, const std::string& request_id,
                          const std::string& type, const std::string& resource_type,
                          const std::string& logical_id, const Json& properties,
                          const std::string& physical_id, const Json& old_properties,
                          std::string* physical_out) {
    Json props = properties;
    props["ServiceToken"] = stack_.env("TASKER_FUNCTION_ARN");
    Json request = {{"RequestType", type},
                    {"ResponseURL", receiver.url("/campaign/" + request_id +
                                                 "?X-Amz-Expires=7200&X-Amz-Signature=c")},
                    {"StackId",
                     "arn:aws:cloudformation:us-east-1:123456789012:stack/campaign/"
                     "6a1e0000-0000-4000-8000-00000000000f"},
                    {"RequestId", request_id},
                    {"ResourceType", resource_type},
                    {"LogicalResourceId", logical_id},
                    {"ServiceToken", stack_.env("TASKER_FUNCTION_ARN")},
                    {"ResourceProperties", props}};
    if (type != "Create") request["PhysicalResourceId"] = physical_id;
    if (type == "Update") {
      Json old = old_properties;
      old["ServiceToken"] = stack_.env("TASKER_FUNCTION_ARN");
      request["OldResourceProperties"] = old;
    }
    {
      std::lock_guard lock(mutex_);
      cfn_requests_.insert(request_id);
      ++statements_;
    }
    aws::HttpResponse invoked =
        stack_.invoke(stack_.env("TASKER_FUNCTION_NAME"), request.dump(), "Event");
    if (invoked.status != 202) return "invoke answered " + std::to_string(invoked.status);
    std::string status;
    eventually(
        [&] {
          for (const ReceivedRequest& r : receiver.received()) {
            try {
              Json body = Json::parse(r.body);
              if (body.value("RequestId", "") != request_id) continue;
              status = body.value("Status", "?");
              if (physical_out != nullptr) *physical_out = body.value("PhysicalResourceId", "");
              if (status == "FAILED") status += ": " + body.value("Reason", "");
              return true;
            } catch (const std::exception&) {
              continue;
            }
          }
          return false;
        },
        std::clamp(std::chrono::duration_cast<std::chrono::milliseconds>(deadline_ - Clock::now()),
                   std::chrono::milliseconds(1000), std::chrono::milliseconds(kCfnTimeout)),
        200ms);
    return status;
  }

  // One round of the seeded mix's flows, tagged `tag` (unique in the run).
  void mix_round(const std::string& tag, CfnReceiver& receiver) {
    start(
        tag + "-plain", machines_.at("plain"), {{"sql", marker_sql(tag + "-plain")}},
        [](const Execution& run) {
          return expect_path(run, {"Run", "Finished"});
        },
        1);
    start(
        tag + "-failing", machines_.at("plain"),
        {{"sql", "insert into campaign_markers select 'x' from campaign_no_such_table"}},
        [](const Execution& run) {
          std::string wrong = expect_path(run, {"Run", "SqlFailed"});
          if (wrong.empty() &&
              run.output.dump().find("campaign_no_such_table") == std::string::npos) {
            wrong = "the failure does not name the missing table: " + run.output.dump();
          }
          return wrong;
        },
        1);
    start(
        tag + "-batch", machines_.at("batch"),
        {{"sqls", {marker_sql(tag + "-batch-1"), marker_sql(tag + "-batch-2")}}},
        [](const Execution& run) {
          return expect_path(run, {"Run", "Finished"});
        },
        2);
    {
      std::lock_guard lock(mutex_);
      markers_.push_back(tag + "-params");
    }
    start(
        tag + "-params", machines_.at("parameters"),
        {{"sql", "insert into campaign_markers values (:id)"},
         {"parameters", {{{"name", "id"}, {"value", tag + "-params"}}}}},
        [](const Execution& run) {
          return expect_path(run, {"Run", "Finished"});
        },
        1);
    start(
        tag + "-singleton", machines_.at("singleton"), {{"sql", marker_sql(tag + "-singleton")}},
        [](const Execution& run) {
          return expect_path(run, {"Run", "Finished"});
        },
        1);
    start(
        tag + "-cancel", machines_.at("cancel"),
        {{"sql", "select pg_sleep(60) as campaign_cancel_" + tag}},
        [](const Execution& run) {
          if (run.status != "SUCCEEDED") return "status " + run.status;
          if (run.path.empty() || run.path.back() != "Aborted") {
            return "path " + join(run.path) + "; output " + run.output.dump();
          }
          return std::string();
        },
        1);
    start(
        tag + "-runner", runner_.at("STATE_MACHINE_ARN"),
        Json::array({marker_sql(tag + "-runner-1"), marker_sql(tag + "-runner-2")}),
        [](const Execution& run) {
          if (run.status != "SUCCEEDED") return "status " + run.status + " " + run.described.dump();
          return std::string();
        },
        2);
    start(
        tag + "-runner-callback", runner_.at("CALLBACK_STATE_MACHINE_ARN"),
        Json::array({marker_sql(tag + "-runcb-1"), marker_sql(tag + "-runcb-2")}),
        [](const Execution& run) {
          if (run.status != "SUCCEEDED") return "status " + run.status + " " + run.described.dump();
          return std::string();
        },
        2);

    // CloudFormation: a Custom::RedshiftSql whose every SQL leaves a marker, and a user.
    auto expect_cfn = [&](const std::string& what, const std::string& status,
                          const std::string& expected) {
      if (status != expected) {
        violations_.add(kInvariants[0],
                        tag + " " + what + ": answered '" + status + "', expected " + expected);
      }
    };
    // Markers are expected only of the requests sent: after a failed Create there is nothing to
    // update or delete (CloudFormation would roll back).
    auto insert = [](const std::string& id) {
      return "insert into campaign_markers values ('" + id + "')";
    };
    const Json sql_properties = {{"CreateSql", marker_sql(tag + "-cfn-create")},
                                 {"UpdateSql", "select 'no update yet'"},
                                 {"DeleteSql", insert(tag + "-cfn-delete")}};
    std::string physical;
    const std::string created =
        cfn_request(receiver, tag + "-sql-create", "Create", "Custom::RedshiftSql", "CampaignSql",
                    sql_properties, "", Json(), &physical);
    expect_cfn("RedshiftSql Create", created, "SUCCESS");
    if (created == "SUCCESS") {
      Json updated = sql_properties;
      updated["UpdateSql"] = marker_sql(tag + "-cfn-update");
      expect_cfn("RedshiftSql Update",
                 cfn_request(receiver, tag + "-sql-update", "Update", "Custom::RedshiftSql",
                             "CampaignSql", updated, physical, sql_properties, nullptr),
                 "SUCCESS");
      marker_sql(tag + "-cfn-delete");
      expect_cfn("RedshiftSql Delete",
                 cfn_request(receiver, tag + "-sql-delete", "Delete", "Custom::RedshiftSql",
                             "CampaignSql", updated, physical, Json(), nullptr),
                 "SUCCESS");
    }
    std::string user = "campaign_" + tag;
    std::replace(user.begin(), user.end(), '-', '_');
    const Json user_properties = {
        {"username", user}, {"password", "md5" + std::string(32, 'a')}, {"connection_limit", "2"}};
    std::string user_physical;
    const std::string user_created =
        cfn_request(receiver, tag + "-user-create", "Create", "Custom::RedshiftUser",
                    "CampaignUser", user_properties, "", Json(), &user_physical);
    expect_cfn("RedshiftUser Create", user_created, "SUCCESS");
    if (user_created != "SUCCESS") return;
    expect_cfn("RedshiftUser Delete",
               cfn_request(receiver, tag + "-user-delete", "Delete", "Custom::RedshiftUser",
                           "CampaignUser", user_properties, user_physical, Json(), nullptr),
               "SUCCESS");
    if (sql_value("select count(*) from pg_roles where rolname = '" + user + "'") != "0") {
      violations_.add(kInvariants[0], tag + ": user " + user + " still exists after its Delete");
    }
  }

  // cfn/examples: every state machine of state-machines.yaml, and custom-resources.yaml created,
  // updated and deleted.
  void examples_round(CfnReceiver& receiver) {
    auto ex = [&](const std::string& name, const std::string& output,
                  std::function<std::string(const Execution&)> check, int statements) {
      start("lost-" + name, examples_.at(output), Json::object(), std::move(check), statements);
    };
    ex(
        "single-success", "SINGLE_SUCCESS_ARN",
        [](const Execution& run) {
          return expect_path(run, {"RunSql", "Succeeded"});
        },
        1);
    ex(
        "single-failure", "SINGLE_FAILURE_ARN",
        [](const Execution& run) {
          return expect_path(run, {"RunFailingSql", "DescribeFailure", "FailureHandled"});
        },
        1);
    ex(
        "success-and-fail", "SUCCESS_AND_FAIL_ARN",
        [](const Execution& run) {
          return expect_path(run, {"First", "Second", "SecondFailed"});
        },
        2);
    ex(
        "parallel", "PARALLEL_NO_CONCURRENCY_ARN",
        [](const Execution& run) {
          if (run.status != "SUCCEEDED") return "status " + run.status + " " + run.described.dump();
          std::vector<std::string> outcomes;
          for (const Json& o : run.output)
            outcomes.push_back(o.is_string() ? o.get<std::string>() : o.dump());
          std::sort(outcomes.begin(), outcomes.end());
          if (outcomes != std::vector<std::string>{"ran", "refused"}) {
            return "output " + run.output.dump();
          }
          return std::string();
        },
        1);
    ex(
        "cancelling", "CANCELLING_STATEMENT_ARN",
        [](const Execution& run) {
          if (run.status != "SUCCEEDED") return "status " + run.status + " " + run.described.dump();
          if (!run.output.contains("statement") ||
              run.output.at("statement").value("Status", "") != "ABORTED") {
            return "output " + run.output.dump();
          }
          return std::string();
        },
        1);
    ex(
        "polling", "POLLING_ARN",
        [](const Execution& run) {
          if (run.status != "SUCCEEDED") return "status " + run.status + " " + run.described.dump();
          if (run.path.back() != "Done" ||
              run.output.at("statement").value("Status", "") != "FINISHED") {
            return "path " + join(run.path) + " output " + run.output.dump();
          }
          return std::string();
        },
        1);
    ex(
        "paging", "PAGING_ARN",
        [](const Execution& run) {
          if (run.status != "SUCCEEDED") return "status " + run.status + " " + run.described.dump();
          if (run.output != Json({{"pages", 3}, {"rows", 2500}, {"totalRows", 2500}})) {
            return "output " + run.output.dump();
          }
          return std::string();
        },
        1);
    ex(
        "batch", "BATCH_ARN",
        [](const Execution& run) {
          return expect_path(run, {"RunBatch", "Done"});
        },
        3);
    ex(
        "named-parameters", "NAMED_PARAMETERS_ARN",
        [](const Execution& run) {
          std::string wrong = expect_path(run, {"Run", "Result"});
          if (wrong.empty() &&
              run.output != Json::parse(R"([[{"longValue": 42}, {"stringValue": "hello"}]])")) {
            wrong = "output " + run.output.dump();
          }
          return wrong;
        },
        1);

    // custom-resources.yaml: Create in dependency order, Update of the connection limit, Delete
    // in reverse order; each must answer SUCCESS.
    const Json resources =
        template_as_json(source_dir() / "cfn" / "examples" / "custom-resources.yaml")
            .at("Resources");
    const std::vector<std::string> order = creation_order(resources);
    std::map<std::string, std::string> parameters = {
        {"TaskerFunctionArn", stack_.env("TASKER_FUNCTION_ARN")},
        {"EtlUserPasswordHash", sql_value("select 'md5' || md5('e2e-pw' || 'rstasker_etl')")},
        {"EtlUserConnectionLimit", "5"}};
    auto properties_of = [&](const std::string& name) {
      Json properties = resolve_refs(resources.at(name).at("Properties"), parameters);
      properties.erase("ServiceToken");
      return properties;
    };
    std::map<std::string, std::pair<std::string, Json>> deployed;  // physical id, properties
    auto expect_success = [&](const std::string& what, const std::string& status) {
      if (status != "SUCCESS") {
        violations_.add(kInvariants[0],
                        "custom-resources.yaml " + what + ": answered '" + status + "'");
      }
    };
    for (const std::string& name : order) {
      std::string physical;
      const Json properties = properties_of(name);
      expect_success(name + " Create", cfn_request(receiver, "lost-" + name + "-create", "Create",
                                                   resources.at(name).at("Type"), name, properties,
                                                   "", Json(), &physical));
      deployed[name] = {physical, properties};
    }
    parameters["EtlUserConnectionLimit"] = "7";
    for (const std::string& name : order) {
      const Json properties = properties_of(name);
      if (properties == deployed.at(name).second) continue;
      expect_success(name + " Update",
                     cfn_request(receiver, "lost-" + name + "-update", "Update",
                                 resources.at(name).at("Type"), name, properties,
                                 deployed.at(name).first, deployed.at(name).second, nullptr));
      deployed[name].second = properties;
    }
    if (sql_value("select rolconnlimit from pg_roles where rolname = 'rstasker_etl'") != "7") {
      violations_.add(kInvariants[0], "custom-resources.yaml: EtlUser's connection limit is not 7");
    }
    for (auto it = order.rbegin(); it != order.rend(); ++it) {
      expect_success(
          *it + " Delete",
          cfn_request(receiver, "lost-" + *it + "-delete", "Delete", resources.at(*it).at("Type"),
                      *it, deployed.at(*it).second, deployed.at(*it).first, Json(), nullptr));
    }
    if (sql_value("select count(*) from pg_roles where rolname in ('rstasker_etl', "
                  "'rstasker_loaders')") != "0") {
      violations_.add(kInvariants[0], "custom-resources.yaml: its roles remain after Delete");
    }
  }

  // Waits (until the deadline) for the flows started so far, so that a long run keeps a bounded
  // number of executions in flight; finish_and_check judges them later.
  void settle() {
    for (const Flow& flow : flows_) {
      const auto left = std::chrono::duration_cast<std::chrono::seconds>(deadline_ - Clock::now());
      if (left.count() <= 0) return;
      await_execution(*sfn_, flow.arn, left);
    }
  }
  void restart_deadline(std::chrono::seconds timeout) { deadline_ = Clock::now() + timeout; }

  // Waits for every flow (stopping those still running at the deadline) and checks them all.
  void finish_and_check(CfnReceiver& receiver) {
    const auto give_up = deadline_;
    for (const Flow& flow : flows_) {
      const auto left = std::chrono::duration_cast<std::chrono::seconds>(give_up - Clock::now());
      Execution run = await_execution(*sfn_, flow.arn, std::max(left, std::chrono::seconds(1)));
      if (run.status == "RUNNING") {
        violations_.add(kInvariants[0], flow.name + ": still RUNNING at the phase's deadline");
        try {
          sfn_->call("StopExecution", {{"executionArn", flow.arn}}, {});
        } catch (const Error&) {
          // it may have ended meanwhile
        }
      } else if (std::string wrong = flow.check(run); !wrong.empty()) {
        violations_.add(kInvariants[0], flow.name + ": " + wrong);
      }
      flow_ok_.push_back(run.status != "RUNNING" && flow.check(run).empty());
      executions_.push_back(std::move(run));
    }
    // The checks' own calls (ListStatements with the function's key among them) meet no fault.
    set_rules({{"rules", Json::array()}});
    check_tokens();
    check_cfn_answers(receiver);
    check_markers();
    check_statement_names();
    check_state_table();
  }

  // Accepted SendTaskSuccess/SendTaskFailure per task token (the edge counts them by digest):
  // never more than one; exactly one for each task that ended by a callback (TaskSucceeded, or
  // TaskFailed with the tasker's FAILED) in a flow whose outcome was right (a wrong outcome is
  // reported once, as such).
  void check_tokens() {
    const Json counts = counters().at("accepted_callbacks");
    for (const auto& [digest, n] : counts.items()) {
      if (n.get<int>() > 1) {
        violations_.add(kInvariants[1], "a task token was answered " + n.dump() + " times");
      }
    }
    for (std::size_t i = 0; i < executions_.size(); ++i) {
      const Execution& run = executions_[i];
      if (run.status == "RUNNING") {
        // Still waiting at the deadline: its newest callback task's token must not be one the
        // tasker considers answered while no answer was accepted.
        std::string token;
        for (const Json& event : run.history) {
          if (event.value("type", "") != "TaskScheduled") continue;
          try {
            token = Json::parse(
                        event.at("taskScheduledEventDetails").at("parameters").get<std::string>())
                        .at("Payload")
                        .value("taskToken", "");
          } catch (const std::exception&) {
            token.clear();
          }
        }
        if (!token.empty() && !counts.contains(aws::sha256_hex(token))) {
          violations_.add(kInvariants[1], flows_[i].name +
                                              ": still waiting for a callback that no SendTask* "
                                              "answered (see the function's log for its token)");
        }
        continue;
      }
      std::map<std::int64_t, const Json*> by_id;
      for (const Json& event : run.history) by_id[event.value("id", std::int64_t{0})] = &event;
      for (const Json& event : run.history) {
        const std::string type = event.value("type", "");
        if (type != "TaskSucceeded" && type != "TaskFailed") continue;
        if (type == "TaskFailed" &&
            event.value("taskFailedEventDetails", Json::object()).value("error", "") != "FAILED") {
          continue;  // the invoke itself failed: nobody was to call back
        }
        // The task's TaskScheduled, up the previousEventId chain.
        std::string token;
        const Json* at = &event;
        for (int hops = 0; hops < 10 && at != nullptr; ++hops) {
          if (at->value("type", "") == "TaskScheduled") {
            try {
              const Json parameters = Json::parse(
                  at->at("taskScheduledEventDetails").at("parameters").get<std::string>());
              token = parameters.at("Payload").value("taskToken", "");
            } catch (const std::exception&) {
            }
            break;
          }
          auto previous = by_id.find(at->value("previousEventId", std::int64_t{-1}));
          at = previous == by_id.end() ? nullptr : previous->second;
        }
        if (token.empty()) continue;  // not a waitForTaskToken task
        ++tokens_;
        if (!flow_ok_[i]) continue;
        if (!counts.contains(aws::sha256_hex(token))) {
          violations_.add(kInvariants[1], flows_[i].name +
                                              ": its task ended by a callback, "
                                              "but no SendTask* was accepted");
        }
      }
    }
  }

  // Every answer to one request is byte-identical.
  void check_cfn_answers(CfnReceiver& receiver) {
    std::map<std::string, std::vector<std::string>> bodies;
    for (const ReceivedRequest& r : receiver.received()) {
      try {
        bodies[Json::parse(r.body).value("RequestId", "?")].push_back(r.body);
      } catch (const std::exception&) {
        violations_.add(kInvariants[2], "an answer that is not JSON: " + r.body);
      }
    }
    for (const std::string& id : cfn_requests_) {
      auto it = bodies.find(id);
      if (it == bodies.end()) {
        violations_.add(kInvariants[0], "CloudFormation request " + id + " never answered");
        continue;
      }
      cfn_answers_ += it->second.size();
      for (const std::string& body : it->second) {
        if (body != it->second.front()) {
          violations_.add(kInvariants[2], id + ": " + it->second.front() + " then " + body);
        }
      }
    }
  }

  void check_markers() {
    std::map<std::string, int> counts;
    Json result =
        data_api_->call("ExecuteStatement",
                        {{"ClusterIdentifier", stack_.env("TASKER_CLUSTER_IDENTIFIER")},
                         {"Database", stack_.env("TASKER_DATABASE")},
                         {"DbUser", stack_.env("TASKER_DB_USER")},
                         {"Sql", "select id, count(*) from campaign_markers group by id"}},
                        {});
    const std::string id = result.at("Id");
    eventually(
        [&] {
          return data_api_->call("DescribeStatement", {{"Id", id}}, {}).at("Status") == "FINISHED";
        },
        30s, 20ms);
    std::string token;
    do {
      Json request = {{"Id", id}};
      if (!token.empty()) request["NextToken"] = token;
      Json page = data_api_->call("GetStatementResult", request, {});
      for (const Json& record : page.value("Records", Json::array())) {
        counts[record.at(0).at("stringValue")] =
            static_cast<int>(record.at(1).at("longValue").get<long long>());
      }
      token = page.value("NextToken", "");
    } while (!token.empty());
    for (const std::string& marker : markers_) {
      const int n = counts.contains(marker) ? counts.at(marker) : 0;
      if (n != 1) violations_.add(kInvariants[3], marker + " ran " + std::to_string(n) + " times");
      counts.erase(marker);
    }
    for (const auto& [marker, n] : counts) {
      if (marker.starts_with(tag_prefix_)) {
        violations_.add(kInvariants[3], "unexpected marker " + marker);
      }
    }
  }

  // One Data API statement per statement name: a retried start reuses its statement.
  void check_statement_names() {
    std::map<std::string, int> names;
    Json request = {{"Status", "ALL"}, {"MaxResults", 100}};
    for (int pages = 0; pages < 1000; ++pages) {
      Json page = function_data_api_->call("ListStatements", request, {});
      for (const Json& s : page.value("Statements", Json::array())) {
        const std::string name = s.value("StatementName", "");
        if (!name.empty()) ++names[name];
      }
      if (page.value("NextToken", "").empty()) break;
      request["NextToken"] = page.at("NextToken");
    }
    for (const auto& [name, n] : names) {
      if (n > 1 && reported_.insert("name " + name).second) {
        // A statement name is <record id>:<invocation id>: a task token lives in neither.
        violations_.add(kInvariants[3],
                        "statement name " + name + " started " + std::to_string(n) + " statements");
      }
    }
  }

  void check_state_table() {
    Json request = {{"TableName", stack_.env("TASKER_TABLE_NAME")}, {"ConsistentRead", true}};
    for (int pages = 0; pages < 1000; ++pages) {
      Json page = dynamodb_->call("Scan", request, {});
      for (const Json& item : page.value("Items", Json::array())) {
        const std::string id = item.at("id").value("S", "");
        const std::string sort = item.at("invocationId").value("S", "");
        if (!reported_.insert(id + ":" + sort).second) continue;
        if (sort == "lock") {
          violations_.add(kInvariants[4], "lock " + id + " left (holder " +
                                              item.value("holder", Json::object()).value("S", "?") +
                                              ")");
          continue;
        }
        // A record with a waiter stays in the sparse waiting-index (attribute "waiting") until
        // it is answered; records without one (the polling query runner's) never enter it.
        const std::string state = item.value("state", Json::object()).value("S", "");
        if (item.contains("waiting")) {
          violations_.add(kInvariants[5],
                          id + ":" + sort + " is " + state +
                              ", its waiter unanswered, after every statement ended");
        }
      }
      if (!page.contains("LastEvaluatedKey")) break;
      request["ExclusiveStartKey"] = page.at("LastEvaluatedKey");
    }
  }

  // Prints the phase's report; returns its violations.
  std::size_t report(const std::string& phase, const Json& rules) {
    const Json c = counters();
    std::ostringstream out;
    out << "\n=== fault campaign, phase \"" << phase << "\" (seed " << rules.value("seed", 0)
        << ") ===\n";
    out << "  flows: " << flows_.size() << " executions, " << cfn_requests_.size()
        << " CloudFormation requests (" << cfn_answers_ << " answers)\n";
    out << "  statements: " << statements_ << ", marker rows expected: " << markers_.size()
        << ", task tokens seen: " << tokens_ << "\n";
    out << "  faults injected:";
    for (const auto& [kind, n] : c.at("injected").items()) out << " " << kind << " " << n;
    out << "\n  by operation:";
    for (const auto& [op, kinds] : c.at("injected_by_operation").items()) {
      out << "\n    " << op << ":";
      for (const auto& [kind, n] : kinds.items()) out << " " << kind << " " << n;
    }
    std::uint64_t repeated = 0;
    const Json repeated_callbacks = c.value("repeated_callbacks", Json::object());
    for (const auto& [digest, n] : repeated_callbacks.items()) {
      repeated += n.get<std::uint64_t>();
    }
    out << "\n  callbacks on closed tasks (answered TaskTimedOut, as AWS does): " << repeated;
    out << "\n  invariants:\n";
    for (const char* invariant : kInvariants) {
      const auto& list = violations_.found[invariant];
      out << "    " << (list.empty() ? "ok  " : "FAIL") << "  " << invariant;
      if (!list.empty()) out << ": " << list.size() << " violation(s)";
      out << "\n";
      for (std::size_t i = 0; i < list.size() && i < 12; ++i)
        out << "          - " << list[i] << "\n";
      if (list.size() > 12) out << "          - ... " << list.size() - 12 << " more\n";
    }
    std::cout << out.str() << std::flush;
    figures_[phase] = {{"statements", statements_},
                       {"executions", flows_.size()},
                       {"cfn_requests", cfn_requests_.size()},
                       {"faults", c.at("injected")},
                       {"violations", violations_.total()}};
    return violations_.total();
  }

  // Forgets the phase's flows and checks (the stack stays).
  void reset(const std::string& tag_prefix, std::chrono::seconds timeout) {
    deadline_ = Clock::now() + timeout;
    flows_.clear();
    executions_.clear();
    flow_ok_.clear();
    markers_.clear();
    cfn_requests_.clear();
    statements_ = 0;
    tokens_ = 0;
    cfn_answers_ = 0;
    violations_.found.clear();
    tag_prefix_ = tag_prefix;
    control("DELETE");
  }

  const Json& figures() const { return figures_; }

 private:
  LocalStack& stack_;
  std::map<std::string, std::string> examples_;
  std::map<std::string, std::string> runner_;
  std::map<std::string, std::string> machines_;
  std::shared_ptr<aws::HttpTransport> transport_;
  std::unique_ptr<aws::JsonClient> sfn_, dynamodb_, data_api_, function_data_api_;

  std::mutex mutex_;
  std::vector<Flow> flows_;
  std::vector<Execution> executions_;
  std::vector<bool> flow_ok_;  // per execution: its outcome was right
  std::vector<std::string> markers_;
  std::set<std::string> cfn_requests_;
  std::size_t statements_ = 0, tokens_ = 0, cfn_answers_ = 0;
  std::string tag_prefix_;
  Clock::time_point deadline_ = Clock::now();  // the phase's: flows and answers wait until then
  std::set<std::string> reported_;             // leftovers already reported by an earlier phase
  Violations violations_;
  Json figures_ = Json::object();
};

// Every write the function makes: applied, and its first answer lost.
Json first_reply_lost_rules(const std::string& function_key) {
  return {{"seed", 0},
          {"rules",
           {{{"name", "write-first-reply-lost"},
             {"access_key", function_key},
             {"service", {"dynamodb", "states", "redshift-data"}},
             {"operation",
              {"PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems", "BatchWriteItem",
               "SendTaskSuccess", "SendTaskFailure", "SendTaskHeartbeat", "ExecuteStatement",
               "BatchExecuteStatement", "CancelStatement"}},
             {"first_per_body", true},
             {"fault", "lost-reply"}}}}};
}

// The seeded mix: every kind of fault on the function's calls and its completion events.
Json mixed_rules(const std::string& function_key, std::uint64_t seed) {
  const Json writes = {"PutItem", "UpdateItem", "DeleteItem", "TransactWriteItems"};
  const Json starts = {"ExecuteStatement", "BatchExecuteStatement"};
  const Json callbacks = {"SendTaskSuccess", "SendTaskFailure"};
  auto rule = [&](const std::string& name, const std::string& service, const Json& operations,
                  Json fault) {
    fault["name"] = name;
    fault["access_key"] = function_key;
    fault["service"] = service;
    fault["operation"] = operations;
    return fault;
  };
  return {
      {"seed", seed},
      {"rules",
       {rule("ddb-write-lost-500", "dynamodb", writes,
             {{"fault", "lost-reply"}, {"first_per_body", true}, {"probability", 0.3}}),
        rule("callback-lost-drop", "states", callbacks,
             {{"fault", "lost-reply"},
              {"mode", "drop"},
              {"first_per_body", true},
              {"probability", 0.3}}),
        rule("start-lost-stall", "redshift-data", starts,
             {{"fault", "lost-reply"},
              {"mode", "stall"},
              {"delay_ms", 1500},
              {"first_per_body", true},
              {"probability", 0.15}}),
        rule("start-lost-500", "redshift-data",
             Json::array({"ExecuteStatement", "BatchExecuteStatement", "CancelStatement"}),
             {{"fault", "lost-reply"}, {"first_per_body", true}, {"probability", 0.2}}),
        rule("ddb-write-provisioned", "dynamodb", writes,
             {{"fault", "refuse"},
              {"error", "ProvisionedThroughputExceededException"},
              {"probability", 0.08}}),
        rule("ddb-read-throttled", "dynamodb", Json::array({"GetItem", "Query", "Scan"}),
             {{"fault", "refuse"}, {"error", "ThrottlingException"}, {"probability", 0.08}}),
        rule("states-503", "states",
             Json::array({"SendTaskSuccess", "SendTaskFailure", "SendTaskHeartbeat"}),
             {{"fault", "refuse"}, {"error", "ServiceUnavailable"}, {"probability", 0.08}}),
        rule("data-429", "redshift-data", Json::array({"DescribeStatement", "GetStatementResult"}),
             {{"fault", "refuse"}, {"error", "TooManyRequestsException"}, {"probability", 0.05}}),
        rule("data-500", "redshift-data", Json::array({"DescribeStatement", "ListStatements"}),
             {{"fault", "refuse"}, {"error", "InternalServerError"}, {"probability", 0.05}}),
        rule("latency", "dynamodb", Json::array({"GetItem", "Query", "PutItem", "UpdateItem"}),
             {{"fault", "latency"}, {"delay_ms", 150}, {"probability", 0.15}}),
        {{"name", "completion-duplicate"},
         {"service", "completion"},
         {"fault", "duplicate"},
         {"probability", 0.2}},
        {{"name", "completion-delay"},
         {"service", "completion"},
         {"fault", "delay"},
         {"delay_ms", 2500},
         {"probability", 0.2}},
        {{"name", "completion-drop"},
         {"service", "completion"},
         {"fault", "drop"},
         {"probability", 0.1}}}}};
}

TEST(FaultCampaign, EveryOutcomeRightAndEveryWaiterAnsweredOnceUnderFaults) {
  RSTASKER_SKIP_IF_UNAVAILABLE(LocalStack::unavailable_reason());
  const std::uint64_t seed = std::stoull(env_or("RSTASKER_FAULTS_SEED", "1"));
  const int statements = std::stoi(env_or("RSTASKER_FAULTS_STATEMENTS", "0"));
  const int rounds = statements > 0 ? (statements + kStatementsPerRound - 1) / kStatementsPerRound
                                    : std::stoi(env_or("RSTASKER_FAULTS_ROUNDS", "2"));
  const int parallel = std::max(1, std::stoi(env_or("RSTASKER_FAULTS_PARALLEL", "2")));
  const std::string phases = env_or("RSTASKER_FAULTS_PHASES", "lost,mix");
  const std::chrono::seconds phase_timeout(
      std::stoi(env_or("RSTASKER_FAULTS_PHASE_TIMEOUT", std::to_string(kPhaseTimeout.count()))));

  // tasker-local accepts the campaign's key; reconcile acts on records a few seconds old.
  ::setenv("TASKER_LOCAL_ACCEPT_KEYS",
           (kCampaignKey.access_key_id + ":" + kCampaignKey.secret_access_key).c_str(), 1);
  ::setenv("RSTASKER_RECONCILE_AFTER_SECONDS", std::to_string(kReconcileAfterSeconds).c_str(), 1);
  LocalStack stack(binary_dir() / "e2e-faults-stack");
  const std::string function = stack.env("TASKER_FUNCTION_ARN");
  auto examples =
      stack.deploy_stack("examples", source_dir() / "cfn" / "examples" / "state-machines.yaml",
                         {{"TaskerFunctionArn", function}});
  auto runner = stack.deploy_stack("query-runner", source_dir() / "cfn" / "query-runner.yaml",
                                   {{"TaskerFunctionArn", function},
                                    {"TaskerRoleName", stack.env("TASKER_ROLE_NAME")},
                                    {"DefaultClusterId", stack.env("TASKER_CLUSTER_IDENTIFIER")},
                                    {"DefaultDb", stack.env("TASKER_DATABASE")},
                                    {"DefaultUser", stack.env("TASKER_DB_USER")},
                                    {"DefaultInitialWaitTime", "1"},
                                    {"DefaultBaseWaitTime", "1"},
                                    {"DefaultMaxWait", "2"},
                                    {"DefaultMaxRetries", "1"},
                                    {"CreateCallbackRunner", "true"}});
  // Kept messages come back in 2 s rather than the template's minutes.
  stack.sqs().call(
      "SetQueueAttributes",
      {{"QueueUrl", stack.env("TASKER_QUEUE_URL")}, {"Attributes", {{"VisibilityTimeout", "2"}}}},
      {});
  const aws::JsonClient& sfn = stack.step_functions();
  std::map<std::string, std::string> machines = {
      {"plain", create_state_machine(sfn, "campaign-plain",
                                     task_machine(function, {{"sqlStatement.$", "$.sql"}}))},
      {"batch", create_state_machine(sfn, "campaign-batch",
                                     task_machine(function, {{"sqlStatements.$", "$.sqls"}}))},
      {"parameters",
       create_state_machine(sfn, "campaign-parameters",
                            task_machine(function, {{"sqlStatement.$", "$.sql"},
                                                    {"parameters.$", "$.parameters"}}))},
      {"singleton",
       create_state_machine(sfn, "campaign-singleton",
                            task_machine(function, {{"action", "executeSingletonStatement"},
                                                    {"sqlStatement.$", "$.sql"}}))},
      {"cancel",
       create_state_machine(sfn, "campaign-cancel", callback_machine(function, 2, false))}};

  Campaign campaign(stack, examples, runner, machines);
  campaign.sql_value("create table campaign_markers (id text not null)");

  // Reconcile, as the schedule would run it: the only way a dropped completion ends.
  std::atomic<bool> stop{false};
  std::thread reconciler;
  // Stops the reconciler however the test ends (a failed call throws out of the phases).
  struct Joiner {
    std::atomic<bool>& stop;
    std::thread& thread;
    ~Joiner() {
      stop = true;
      if (thread.joinable()) thread.join();
    }
  } joiner{stop, reconciler};
  reconciler = std::thread([&] {
    while (!stop) {
      try {
        stack.invoke(stack.env("TASKER_FUNCTION_NAME"), R"({"action":"reconcile"})");
      } catch (const std::exception&) {
      }
      for (int i = 0; i < 20 && !stop; ++i) std::this_thread::sleep_for(100ms);
    }
  });

  std::size_t violations = 0;
  if (phases.find("lost") != std::string::npos) {
    campaign.reset("lost-", phase_timeout);
    const Json rules = first_reply_lost_rules(stack.credentials().access_key_id);
    campaign.set_rules(rules);
    CfnReceiver receiver;
    campaign.examples_round(receiver);
    campaign.finish_and_check(receiver);
    violations += campaign.report("first reply of every write lost", rules);
  }
  // "none": the mix's flows without faults, the baseline the invariants must hold on anyway.
  for (const std::string mode : {"none", "mix"}) {
    if (phases.find(mode) == std::string::npos) continue;
    const std::string prefix = (mode == "none" ? "n" : "s") + std::to_string(seed) + "r";
    campaign.reset(prefix, phase_timeout);
    const Json rules = mode == "none" ? Json{{"seed", seed}, {"rules", Json::array()}}
                                      : mixed_rules(stack.credentials().access_key_id, seed);
    campaign.set_rules(rules);
    CfnReceiver receiver;
    for (int first = 0; first < rounds; first += parallel) {
      campaign.restart_deadline(phase_timeout);  // a phase's timeout holds for each wave
      std::vector<std::thread> workers;
      for (int r = first; r < std::min(rounds, first + parallel); ++r) {
        workers.emplace_back([&, r] {
          try {
            campaign.mix_round(prefix + std::to_string(r), receiver);
          } catch (const std::exception& e) {
            ADD_FAILURE() << "round " << r << ": " << e.what();
          }
        });
      }
      for (auto& worker : workers) worker.join();
      if (first + parallel < rounds) campaign.settle();
    }
    campaign.finish_and_check(receiver);
    violations += campaign.report(mode == "none" ? "no faults" : "seeded mix", rules);
  }
  if (const std::string file = env_or("RSTASKER_FAULTS_REPORT", ""); !file.empty()) {
    std::ofstream(file) << campaign.figures().dump(2) << "\n";
  }
  EXPECT_EQ(violations, 0u) << "invariant violations (the report above lists them); logs in "
                            << stack.dir() / "logs";
}

}  // namespace
}  // namespace rstasker::testing
