// scripts/moto_launcher.py: with its patches, moto's executing Step Functions runs one execution
// after another and hands SendTaskFailure's cause to a Catch; without them it must not start.
#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>

#include "rstasker/aws/endpoints.hpp"
#include "rstasker/aws/http.hpp"
#include "rstasker/aws/json_client.hpp"
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
    } catch (const std::exception& e) {
      start_error_ = e.what();
    }
  }
  static void TearDownTestSuite() {
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

  static inline std::unique_ptr<MotoServer> moto_;
  static inline std::unique_ptr<aws::JsonClient> sfn_;
  static inline std::unique_ptr<aws::JsonClient> sqs_;
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
