// scripts/moto_launcher.py: with its patches, moto's executing Step Functions runs one execution
// after another, hands SendTaskFailure's cause to a Catch and runs the state machines of
// CloudFormation stacks, and moto's SQS leaves messages of queues with an event-source mapping
// alone (tasker-local runs the mappings), and its DynamoDB gives one winner to racing conditional
// writes; without them it must not start.
#include <gtest/gtest.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "rstasker/aws/endpoints.hpp"
#include "rstasker/aws/http.hpp"
#include "rstasker/aws/json_client.hpp"
#include "rstasker/aws/sigv4.hpp"
#include "rstasker/common/error.hpp"
#include "support/moto_server.hpp"
#include "support/paths.hpp"

namespace rstasker::testing {
namespace {

using namespace std::chrono_literals;

constexpr const char* kRoleArn = "arn:aws:iam::123456789012:role/x";

// For the test report (ctest --output-junit / --gtest_output): how long moto took to start.
long elapsed_ms(std::chrono::steady_clock::time_point since) {
  return static_cast<long>(std::chrono::duration_cast<std::chrono::milliseconds>(
                               std::chrono::steady_clock::now() - since)
                               .count());
}

class MotoLauncherTest : public ::testing::Test {
 protected:
  // One server for the suite: starting moto costs about a second.
  static void SetUpTestSuite() {
    if (MotoServer::unavailable_reason()) return;  // each test skips (or fails) in SetUp
    try {
      auto start = std::chrono::steady_clock::now();
      moto_ = std::make_unique<MotoServer>();
      RecordProperty("moto_startup_ms", static_cast<int>(elapsed_ms(start)));
      moto_->enable_state_machine_execution();
      auto transport = std::shared_ptr<aws::HttpTransport>(aws::make_curl_transport());
      sfn_ = std::make_unique<aws::JsonClient>(
          aws::protocol::kStepFunctions,
          aws::resolve_endpoint(aws::service::kStepFunctions, moto_->region(), moto_->env()),
          moto_->credentials(), transport);
      sqs_ = std::make_unique<aws::JsonClient>(
          aws::protocol::kSqs,
          aws::resolve_endpoint(aws::service::kSqs, moto_->region(), moto_->env()),
          moto_->credentials(), transport);
      transport_ = transport;
    } catch (const std::exception& e) {
      start_error_ = e.what();
    }
  }
  static void TearDownTestSuite() {
    transport_.reset();
    sqs_.reset();
    sfn_.reset();
    moto_.reset();
  }
  void SetUp() override {
    RSTASKER_SKIP_IF_UNAVAILABLE(MotoServer::unavailable_reason());
    ASSERT_NE(sfn_, nullptr) << "moto did not start: " << start_error_;
  }

  static std::string create_state_machine(const std::string& name, const Json& definition) {
    Json request = {{"name", name}, {"definition", definition.dump()}, {"roleArn", kRoleArn}};
    return sfn_->call("CreateStateMachine", request, {}).at("stateMachineArn").get<std::string>();
  }

  static std::string start_execution(const std::string& machine, const std::string& name,
                                     const Json& input) {
    Json request = {{"stateMachineArn", machine}, {"name", name}, {"input", input.dump()}};
    return sfn_->call("StartExecution", request, {}).at("executionArn").get<std::string>();
  }

  // DescribeExecution once the execution has left RUNNING (moto gives no way to be told).
  static Json finished_execution(const std::string& execution) {
    const auto deadline = std::chrono::steady_clock::now() + 30s;
    auto pause = 10ms;
    while (true) {
      Json described = sfn_->call("DescribeExecution", {{"executionArn", execution}}, {});
      if (described.at("status") != "RUNNING" || std::chrono::steady_clock::now() > deadline) {
        return described;
      }
      std::this_thread::sleep_for(pause);
      pause = std::min(pause * 2, std::chrono::milliseconds(200));
    }
  }

  // A signed call to moto's Lambda REST API.
  static aws::HttpResponse lambda_api(const std::string& method, const std::string& path,
                                      const Json& body = nullptr) {
    aws::HttpRequest request;
    request.method = method;
    request.url = moto_->endpoint() + path;
    if (!body.is_null()) {
      request.body = body.dump();
      request.set_header("Content-Type", "application/json");
    }
    aws::Signer(moto_->region(), "lambda")
        .sign(request, moto_->credentials(), std::chrono::system_clock::now());
    return transport_->send(request, Deadline::after(30s));
  }

  static inline std::unique_ptr<MotoServer> moto_;
  static inline std::unique_ptr<aws::JsonClient> sfn_;
  static inline std::unique_ptr<aws::JsonClient> sqs_;
  static inline std::shared_ptr<aws::HttpTransport> transport_;
  static inline std::string start_error_;
};

TEST_F(MotoLauncherTest, ExecutionsAfterTheFirstStillStart) {
  std::string machine = create_state_machine(
      "two-in-a-row",
      {{"StartAt", "Echo"}, {"States", {{"Echo", {{"Type", "Pass"}, {"End", true}}}}}});
  for (int run = 1; run <= 3; ++run) {
    std::string name = "run-" + std::to_string(run);
    std::string execution;
    ASSERT_NO_THROW(execution = start_execution(machine, name, {{"run", run}})) << name;
    Json described = finished_execution(execution);
    EXPECT_EQ(described.at("status"), "SUCCEEDED") << described.dump();
    EXPECT_EQ(Json::parse(described.at("output").get<std::string>()), Json({{"run", run}}));
  }
}

TEST_F(MotoLauncherTest, SendTaskFailureCauseReachesTheCatch) {
  std::string queue = sqs_->call("CreateQueue", {{"QueueName", "task-tokens"}}, {})
                          .at("QueueUrl")
                          .get<std::string>();
  // The task sends its token to the queue and waits; the test plays the worker.
  Json definition = {
      {"StartAt", "Wait"},
      {"States",
       {{"Wait",
         {{"Type", "Task"},
          {"Resource", "arn:aws:states:::sqs:sendMessage.waitForTaskToken"},
          {"Parameters",
           {{"QueueUrl", queue},
            {"MessageBody", {{"token.$", "$$.Task.Token"}, {"input.$", "$"}}}}},
          {"Catch", {{{"ErrorEquals", {"FAILED"}}, {"ResultPath", "$.error"}, {"Next", "Caught"}}}},
          {"End", true}}},
        {"Caught", {{"Type", "Pass"}, {"End", true}}}}}};
  std::string machine = create_state_machine("task-failure", definition);
  std::string execution = start_execution(machine, "fails", {{"sql", "select 1/0"}});

  Json received =
      sqs_->call("ReceiveMessage",
                 {{"QueueUrl", queue}, {"WaitTimeSeconds", 10}, {"MaxNumberOfMessages", 1}}, {});
  ASSERT_TRUE(received.contains("Messages") && received.at("Messages").size() == 1)
      << received.dump();
  Json body = Json::parse(received.at("Messages")[0].at("Body").get<std::string>());
  EXPECT_EQ(body.at("input"), Json({{"sql", "select 1/0"}}));
  const std::string cause = R"({"message":"division by zero","sqlState":"22012"})";
  sfn_->call("SendTaskFailure",
             {{"taskToken", body.at("token")}, {"error", "FAILED"}, {"cause", cause}}, {});

  Json described = finished_execution(execution);
  ASSERT_EQ(described.at("status"), "SUCCEEDED") << described.dump();
  Json output = Json::parse(described.at("output").get<std::string>());
  EXPECT_EQ(output.at("error"), Json({{"Error", "FAILED"}, {"Cause", cause}})) << output.dump();
  EXPECT_EQ(output.at("sql"), "select 1/0");
}

// Patch 3: a queue with an event-source mapping is left to whoever polls it (tasker-local).
// Unpatched, moto receives every new message itself to push it to the function (which it cannot
// run here), so the message's first real receive already counts 2.
TEST_F(MotoLauncherTest, MessagesOfMappedQueuesWaitForTheirPoller) {
  moto_->query("iam", {{"Action", "CreateRole"},
                       {"RoleName", "mapped-function-role"},
                       {"AssumeRolePolicyDocument", "{}"},
                       {"Version", "2010-05-08"}});
  // An empty zip: moto stores code without looking into it.
  aws::HttpResponse function =
      lambda_api("POST", "/2015-03-31/functions",
                 {{"FunctionName", "mapped-function"},
                  {"Runtime", "provided.al2023"},
                  {"Handler", "bootstrap"},
                  {"Role", "arn:aws:iam::123456789012:role/mapped-function-role"},
                  {"Code", {{"ZipFile", "UEsFBgAAAAAAAAAAAAAAAAAAAAAAAA=="}}}});
  ASSERT_EQ(function.status, 201) << function.body;
  std::string queue = sqs_->call("CreateQueue", {{"QueueName", "mapped-queue"}}, {})
                          .at("QueueUrl")
                          .get<std::string>();
  const std::string queue_arn = "arn:aws:sqs:us-east-1:123456789012:mapped-queue";
  aws::HttpResponse mapping = lambda_api(
      "POST", "/2015-03-31/event-source-mappings/",
      {{"FunctionName", "mapped-function"}, {"EventSourceArn", queue_arn}, {"BatchSize", 10}});
  ASSERT_EQ(mapping.status / 100, 2) << mapping.body;
  const std::string uuid = Json::parse(mapping.body).at("UUID").get<std::string>();

  // The mapping is still moto's to list: tasker-local finds it there.
  aws::HttpResponse listed =
      lambda_api("GET", "/2015-03-31/event-source-mappings/?FunctionName=mapped-function");
  ASSERT_EQ(listed.status, 200) << listed.body;
  Json mappings = Json::parse(listed.body).at("EventSourceMappings");
  ASSERT_EQ(mappings.size(), 1u) << listed.body;
  EXPECT_EQ(mappings[0].at("UUID"), uuid);
  EXPECT_EQ(mappings[0].at("EventSourceArn"), queue_arn);

  sqs_->call("SendMessage", {{"QueueUrl", queue}, {"MessageBody", "for the poller"}}, {});
  Json counts =
      sqs_->call("GetQueueAttributes",
                 {{"QueueUrl", queue},
                  {"AttributeNames",
                   {"ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"}}},
                 {});
  EXPECT_EQ(counts.at("Attributes").at("ApproximateNumberOfMessages"), "1") << counts.dump();
  EXPECT_EQ(counts.at("Attributes").at("ApproximateNumberOfMessagesNotVisible"), "0")
      << counts.dump();
  Json received = sqs_->call("ReceiveMessage",
                             {{"QueueUrl", queue},
                              {"MaxNumberOfMessages", 1},
                              {"AttributeNames", {"All"}},
                              {"MessageSystemAttributeNames", {"All"}}},
                             {});
  ASSERT_TRUE(received.contains("Messages") && received.at("Messages").size() == 1)
      << received.dump();
  EXPECT_EQ(received.at("Messages")[0].at("Body"), "for the poller");
  EXPECT_EQ(received.at("Messages")[0].at("Attributes").at("ApproximateReceiveCount"), "1")
      << "moto received the message before its poller did: " << received.dump();

  // Deleting the mapping works as before.
  EXPECT_EQ(lambda_api("DELETE", "/2015-03-31/event-source-mappings/" + uuid).status / 100, 2);
  listed = lambda_api("GET", "/2015-03-31/event-source-mappings/?FunctionName=mapped-function");
  EXPECT_EQ(Json::parse(listed.body).at("EventSourceMappings").size(), 0u) << listed.body;
}

// Patch 4: a state machine deployed by a CloudFormation stack is one the executing Step Functions
// API knows. Unpatched, it is created in moto's other (non-executing) backend: ListStateMachines
// does not show it and StartExecution answers StateMachineDoesNotExist.
TEST_F(MotoLauncherTest, StateMachinesOfStacksCanBeExecuted) {
  const std::string definition =
      R"({"StartAt": "Echo", "States": {"Echo": {"Type": "Pass", "End": true}}})";
  const std::string template_body =
      Json({{"Resources",
             {{"Machine",
               {{"Type", "AWS::StepFunctions::StateMachine"},
                {"Properties", {{"RoleArn", kRoleArn}, {"DefinitionString", definition}}}}}}}})
          .dump();
  moto_->query("cloudformation", {{"Action", "CreateStack"},
                                  {"StackName", "machines"},
                                  {"TemplateBody", template_body},
                                  {"Version", "2010-05-15"}});
  std::string machine;
  const auto deadline = std::chrono::steady_clock::now() + 10s;
  while (machine.empty() && std::chrono::steady_clock::now() < deadline) {
    Json listed = sfn_->call("ListStateMachines", Json::object(), {});
    for (const Json& entry : listed.at("stateMachines")) {
      if (entry.at("name").get<std::string>().starts_with("machines-Machine")) {
        machine = entry.at("stateMachineArn").get<std::string>();
      }
    }
    if (machine.empty()) std::this_thread::sleep_for(50ms);
  }
  ASSERT_FALSE(machine.empty()) << "the stack's state machine is not listed";
  std::string execution;
  ASSERT_NO_THROW(execution = start_execution(machine, "from-a-stack", {{"stack", true}}));
  Json described = finished_execution(execution);
  EXPECT_EQ(described.at("status"), "SUCCEEDED") << described.dump();
  EXPECT_EQ(Json::parse(described.at("output").get<std::string>()), Json({{"stack", true}}));
}

// Patch 5: concurrent conditional writes of one item have exactly one winner, as in DynamoDB (the
// claims and singleton locks rely on it). Unpatched moto gave two writers the item in about one
// trial in 200, so this test failed in about half of its runs without the patch.
TEST_F(MotoLauncherTest, ConcurrentConditionalWritesOfOneItemHaveOneWinner) {
  aws::JsonClient dynamodb(
      aws::protocol::kDynamoDb,
      aws::resolve_endpoint(aws::service::kDynamoDb, moto_->region(), moto_->env()),
      moto_->credentials(), transport_);
  const std::string table = "race";
  dynamodb.call("CreateTable",
                {{"TableName", table},
                 {"AttributeDefinitions", {{{"AttributeName", "id"}, {"AttributeType", "S"}}}},
                 {"KeySchema", {{{"AttributeName", "id"}, {"KeyType", "HASH"}}}},
                 {"BillingMode", "PAY_PER_REQUEST"}},
                {});
  constexpr int kTrials = 150;
  constexpr int kWriters = 8;
  for (int trial = 0; trial < kTrials; ++trial) {
    const std::string id = "item-" + std::to_string(trial);
    dynamodb.call("PutItem", {{"TableName", table}, {"Item", {{"id", {{"S", id}}}}}}, {});
    std::atomic<int> winners{0};
    std::atomic<int> refused{0};
    std::vector<std::thread> writers;
    for (int w = 0; w < kWriters; ++w) {
      writers.emplace_back([&, w] {
        try {
          dynamodb.call("UpdateItem",
                        {{"TableName", table},
                         {"Key", {{"id", {{"S", id}}}}},
                         {"UpdateExpression", "SET #o = :me, lease = :lease"},
                         {"ConditionExpression",
                          "attribute_exists(id) AND (attribute_not_exists(#o) OR lease < :now)"},
                         {"ExpressionAttributeNames", {{"#o", "owner"}}},
                         {"ExpressionAttributeValues",
                          {{":me", {{"S", std::to_string(w)}}},
                           {":lease", {{"N", "100"}}},
                           {":now", {{"N", "50"}}}}}},
                        {});
          ++winners;
        } catch (const Error& e) {
          if (e.name() == "ConditionalCheckFailedException") ++refused;
        }
      });
    }
    for (auto& writer : writers) writer.join();
    ASSERT_EQ(winners.load(), 1) << "trial " << trial;
    ASSERT_EQ(refused.load(), kWriters - 1) << "trial " << trial;
  }
}

// The launcher must stop rather than run a moto its patches no longer fit. A stand-in `moto`
// package whose StateMachine lacks what patch 1 relies on plays the changed moto.
TEST(MotoLauncher, RefusesToStartWhenMotoNoLongerMatchesThePatches) {
  RSTASKER_SKIP_IF_UNAVAILABLE(MotoServer::python()
                                   ? std::nullopt
                                   : std::optional<std::string>("no python3 to run the launcher"));
  auto root = test_log_dir() / ("fake-moto." + std::to_string(::getpid()));
  std::filesystem::create_directories(root / "moto" / "stepfunctions");
  std::ofstream(root / "moto" / "__init__.py") << "__version__ = '0.0.0-changed'\n";
  std::ofstream(root / "moto" / "stepfunctions" / "__init__.py") << "";
  std::ofstream(root / "moto" / "stepfunctions" / "models.py")
      << "class StateMachine:\n    def __init__(self, arn):\n        self.arn = arn\n";

  auto log = root / "launcher.log";
  int status = run_to_completion(
      {.argv = {MotoServer::python()->string(),
                (source_dir() / "scripts" / "moto_launcher.py").string(), "-p", "1"},
       .env = {{"PYTHONPATH", root.string()}},
       .log_file = log});
  std::string output = read_file(log);
  std::filesystem::remove_all(root);
  EXPECT_EQ(status, 3) << output;
  EXPECT_NE(output.find("patch 1"), std::string::npos) << output;
  EXPECT_NE(output.find("refusing to start"), std::string::npos) << output;
}

}  // namespace
}  // namespace rstasker::testing
