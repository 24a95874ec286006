// Step Functions callbacks against moto's executing Step Functions: a waitForTaskToken task waits
// for the tasker; the completion SQS event, handled by the tasker, ends it as SUCCEEDED, as FAILED
// caught by Catch ["FAILED"] with the Data API error in the cause, or finds it timed out.
//
// The task token comes from an `sqs:sendMessage.waitForTaskToken` task (moto's executor cannot run
// our Lambda function without the local stack); what the tasker does with it is the same.
#include <gtest/gtest.h>

#include <thread>

#include "rstasker/aws/endpoints.hpp"
#include "rstasker/common/error.hpp"
#include "rstasker/common/text.hpp"
#include "rstasker/services/dynamodb.hpp"
#include "rstasker/tasker/tasker.hpp"
#include "support/fakes.hpp"
#include "support/moto_server.hpp"

namespace rstasker::tasker {
namespace {

using namespace std::chrono_literals;
using rstasker::testing::MotoServer;

constexpr const char* kRoleArn = "arn:aws:iam::123456789012:role/sfn";

class SfnCallbackTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (MotoServer::unavailable_reason()) return;
    try {
      moto_ = std::make_unique<MotoServer>();
      moto_->enable_state_machine_execution();
    } catch (const std::exception& e) {
      start_error_ = e.what();
    }
  }
  static void TearDownTestSuite() { moto_.reset(); }

  void SetUp() override {
    RSTASKER_SKIP_IF_UNAVAILABLE(MotoServer::unavailable_reason());
    ASSERT_NE(moto_, nullptr) << "moto did not start: " << start_error_;
    std::shared_ptr<aws::HttpTransport> transport = aws::make_curl_transport();
    auto client = [&](const aws::ServiceSpec& spec, const aws::JsonProtocol& protocol) {
      return std::make_shared<const aws::JsonClient>(
          protocol, aws::resolve_endpoint(spec, moto_->region(), moto_->env()),
          moto_->credentials(), transport);
    };
    sfn_ = client(aws::service::kStepFunctions, aws::protocol::kStepFunctions);
    sqs_ = client(aws::service::kSqs, aws::protocol::kSqs);
    auto dynamo = std::make_shared<const services::DynamoDb>(
        client(aws::service::kDynamoDb, aws::protocol::kDynamoDb));
    std::string table = "sfn-" + random_uuid().substr(0, 8);
    dynamo->create_table(state_table_definition(table), ctx());
    Config config;
    config.target = {"cluster-1", "", "dev", "admin", ""};
    config.table_name = table;
    config.region = moto_->region();
    tasker_ = std::make_unique<Tasker>(
        config, Dependencies{redshift_, make_dynamodb_state_table(dynamo, table),
                             services::make_step_functions(sfn_),
                             std::make_shared<rstasker::testing::FakeCfnResponder>()});
    queue_ =
        sqs_->call("CreateQueue", {{"QueueName", "tokens-" + random_uuid().substr(0, 8)}}, ctx())
            .at("QueueUrl");
  }

  static aws::CallContext ctx() { return {Deadline::after(30s), {}}; }

  // A state machine whose task hands its token over (through SQS) and waits; FAILED and
  // States.Timeout are caught into $.error.
  std::string machine(int heartbeat_seconds = 0) {
    Json task = {{"Type", "Task"},
                 {"Resource", "arn:aws:states:::sqs:sendMessage.waitForTaskToken"},
                 {"Parameters",
                  {{"QueueUrl", queue_},
                   {"MessageBody",
                    {{"taskToken.$", "$$.Task.Token"}, {"executionArn.$", "$$.Execution.Id"}}}}},
                 {"Catch",
                  {{{"ErrorEquals", {"FAILED", "States.Timeout"}},
                    {"ResultPath", "$.error"},
                    {"Next", "Caught"}}}},
                 {"End", true}};
    if (heartbeat_seconds > 0) task["HeartbeatSeconds"] = heartbeat_seconds;
    Json definition = {
        {"StartAt", "RunSql"},
        {"States", {{"RunSql", task}, {"Caught", {{"Type", "Pass"}, {"End", true}}}}}};
    return sfn_
        ->call("CreateStateMachine",
               {{"name", "m-" + random_uuid().substr(0, 8)},
                {"definition", definition.dump()},
                {"roleArn", kRoleArn}},
               ctx())
        .at("stateMachineArn");
  }

  // Starts an execution and returns the waiting task's payload (taskToken, executionArn).
  Json start(const std::string& machine_arn) {
    sfn_->call("StartExecution",
               {{"stateMachineArn", machine_arn},
                {"name", "e-" + random_uuid().substr(0, 8)},
                {"input", "{}"}},
               ctx());
    Json received = sqs_->call(
        "ReceiveMessage",
        {{"QueueUrl", queue_}, {"WaitTimeSeconds", 10}, {"MaxNumberOfMessages", 1}}, ctx());
    EXPECT_EQ(received.value("Messages", Json::array()).size(), 1u) << received.dump();
    return Json::parse(received.at("Messages")[0].at("Body").get<std::string>());
  }

  // The tasker starts the SQL for the waiting task, as the Lambda invoke would.
  Json execute(const Json& task) {
    return tasker_->handle({{"sqlStatement", "select 1"},
                            {"taskToken", task.at("taskToken")},
                            {"executionArn", task.at("executionArn")}},
                           ctx());
  }

  Json complete(const Json& started, const std::string& state) {
    Json body = {{"version", "0"},
                 {"id", random_uuid()},
                 {"detail-type", "Redshift Data Statement Status Change"},
                 {"source", "aws.redshift-data"},
                 {"detail",
                  {{"statementName", started.at("StatementName")},
                   {"statementId", started.at("Id")},
                   {"state", state},
                   {"rows", 1}}}};
    return tasker_->handle(
        {{"Records",
          {{{"messageId", "m1"}, {"eventSource", "aws:sqs"}, {"body", dump_json(body)}}}}},
        ctx());
  }

  // DescribeExecution once it left RUNNING (moto offers no notification to wait on).
  Json finished(const std::string& execution) {
    auto until = std::chrono::steady_clock::now() + 30s;
    auto pause = 10ms;
    while (true) {
      Json d = sfn_->call("DescribeExecution", {{"executionArn", execution}}, ctx());
      if (d.at("status") != "RUNNING" || std::chrono::steady_clock::now() > until) return d;
      std::this_thread::sleep_for(pause);
      pause = std::min<std::chrono::milliseconds>(pause * 2, 200ms);
    }
  }

  static inline std::unique_ptr<MotoServer> moto_;
  static inline std::string start_error_;
  std::shared_ptr<const aws::JsonClient> sfn_, sqs_;
  std::shared_ptr<rstasker::testing::FakeRedshiftData> redshift_ =
      std::make_shared<rstasker::testing::FakeRedshiftData>();
  std::unique_ptr<Tasker> tasker_;
  std::string queue_;
};

TEST_F(SfnCallbackTest, FinishedStatementSucceedsTheTaskWithTheEventAsOutput) {
  Json task = start(machine());
  Json started = execute(task);
  EXPECT_TRUE(complete(started, "FINISHED")["batchItemFailures"].empty());
  Json described = finished(task.at("executionArn"));
  ASSERT_EQ(described.at("status"), "SUCCEEDED") << described.dump();
  Json output = Json::parse(described.at("output").get<std::string>());
  EXPECT_EQ(output.at("detail").at("statementId"), started.at("Id"));
  EXPECT_EQ(output.at("detail").at("state"), "FINISHED");
  EXPECT_EQ(output.at("source"), "aws.redshift-data");
}

TEST_F(SfnCallbackTest, FailedStatementIsCaughtAsFailedWithTheErrorInTheCause) {
  Json task = start(machine());
  Json started = execute(task);
  redshift_->set_status(started.at("Id"), "FAILED", "ERROR: relation \"nope\" does not exist");
  EXPECT_TRUE(complete(started, "FAILED")["batchItemFailures"].empty());
  Json described = finished(task.at("executionArn"));
  ASSERT_EQ(described.at("status"), "SUCCEEDED") << described.dump();  // caught
  Json error = Json::parse(described.at("output").get<std::string>()).at("error");
  EXPECT_EQ(error.at("Error"), "FAILED");
  Json cause = Json::parse(error.at("Cause").get<std::string>());
  EXPECT_EQ(cause.at("error"), "ERROR: relation \"nope\" does not exist");
  EXPECT_EQ(cause.at("state"), "FAILED");
  EXPECT_EQ(cause.at("statementId"), started.at("Id"));
}

TEST_F(SfnCallbackTest, ACompletionAfterTheHeartbeatTimedOutIsFinalNotRetried) {
  Json task = start(machine(/*heartbeat_seconds=*/1));
  Json started = execute(task);
  Json described = finished(task.at("executionArn"));
  ASSERT_EQ(described.at("status"), "SUCCEEDED") << described.dump();
  EXPECT_EQ(Json::parse(described.at("output").get<std::string>()).at("error").at("Error"),
            "States.Timeout");
  // The statement ends later: its waiter is gone, which is no reason to retry the message.
  EXPECT_TRUE(complete(started, "ABORTED")["batchItemFailures"].empty());
  EXPECT_TRUE(complete(started, "ABORTED")["batchItemFailures"].empty()) << "duplicate";
}

TEST_F(SfnCallbackTest, AClosedTaskAnswersHeartbeatsAsGone) {
  // The recovery after a crash between callback and bookkeeping relies on this: a heartbeat on a
  // token whose task is closed tells the new claimant the waiter was already called back.
  Json task = start(machine());
  sfn_->call("SendTaskSuccess", {{"taskToken", task.at("taskToken")}, {"output", "{}"}}, ctx());
  ASSERT_EQ(finished(task.at("executionArn")).at("status"), "SUCCEEDED");
  try {
    sfn_->call("SendTaskHeartbeat", {{"taskToken", task.at("taskToken")}}, ctx());
    ADD_FAILURE() << "a heartbeat on a closed task was accepted";
  } catch (const Error& e) {
    EXPECT_TRUE(services::is_waiter_gone(e)) << e.name() << ": " << e.message();
  }
}

}  // namespace
}  // namespace rstasker::tasker
