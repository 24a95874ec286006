// tasker-local's fault layer, between a real moto and a real PostgreSQL, with tasker-local as a
// child process: rules set through the control endpoint (and a rules file) make the edge lose the
// answers of applied requests, refuse requests without applying them, and the Data API drop,
// duplicate and delay completion events; the counters say what happened.
#include <gtest/gtest.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "rstasker/aws/http.hpp"
#include "rstasker/aws/json_client.hpp"
#include "rstasker/common/error.hpp"
#include "support/moto_server.hpp"
#include "support/paths.hpp"
#include "support/postgres_server.hpp"
#include "support/process.hpp"
#include "support/tasker_local.hpp"

namespace rstasker::testing {
namespace {

using namespace std::chrono_literals;

const aws::Credentials kKey{"AKIDFAULTSTEST", "faults-test-secret", ""};
// A second key the stack accepts: rules that name kKey leave its calls alone.
const aws::Credentials kOtherKey{"AKIDFAULTSOTHER", "faults-other-secret", ""};
constexpr const char* kRegion = "us-east-1";
constexpr const char* kTable = "faults-table";

class FaultsTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (PostgresServer::unavailable_reason() || MotoServer::unavailable_reason()) return;
    try {
      postgres_ = std::make_unique<PostgresServer>();
      const int edge_port = free_tcp_port();
      moto_ = std::make_unique<MotoServer>(MotoOptions{.moto_port = edge_port});
      work_dir_ = test_log_dir() / ("faults-test." + std::to_string(::getpid()));
      std::filesystem::remove_all(work_dir_);
      std::filesystem::create_directories(work_dir_);
      // Rules in force from the start: a refusal of an operation no test calls otherwise.
      const auto rules_file = work_dir_ / "rules.json";
      std::ofstream(rules_file) << R"({"seed": 7, "rules": [{"name": "from-file",
          "service": "dynamodb", "operation": "ListTables", "fault": "refuse",
          "error": "ServiceUnavailable"}]})";
      tasker_local_ =
          start_tasker_local({.port = edge_port,
                              .moto_url = moto_->endpoint(),
                              .region = kRegion,
                              .key = kKey,
                              .work_dir = work_dir_,
                              .extra = {"--pg", postgres_->client_conninfo(), "--accept-key",
                                        kOtherKey.access_key_id + ":" + kOtherKey.secret_access_key,
                                        "--faults", rules_file.string()},
                              .log_name = "tasker-local-faults"});
      edge_ = "http://127.0.0.1:" + std::to_string(edge_port);
      transport_ = aws::make_curl_transport();
      dynamodb_ = client(aws::protocol::kDynamoDb, "dynamodb", kKey);
      other_dynamodb_ = client(aws::protocol::kDynamoDb, "dynamodb", kOtherKey);
      data_api_ = client(aws::protocol::kRedshiftData, "redshift-data", kKey);
      sqs_ = client(aws::protocol::kSqs, "sqs", kKey);
      events_ = client(aws::protocol::kEventBridge, "events", kKey);
      // Before any test replaces the rules: what the file's rule did to a ListTables.
      try {
        dynamodb_->call("ListTables", Json::object(), {});
      } catch (const Error& e) {
        file_rule_answer_ = e.name() + " " + std::to_string(e.http_status());
      }
      dynamodb_->call(
          "CreateTable",
          {{"TableName", kTable},
           {"AttributeDefinitions", {{{"AttributeName", "id"}, {"AttributeType", "S"}}}},
           {"KeySchema", {{{"AttributeName", "id"}, {"KeyType", "HASH"}}}},
           {"BillingMode", "PAY_PER_REQUEST"}},
          {});
    } catch (const std::exception& e) {
      start_error_ = e.what();
    }
  }

  static void TearDownTestSuite() {
    expect_clean_stop(tasker_local_);
    moto_.reset();
    postgres_.reset();
  }

  void SetUp() override {
    RSTASKER_SKIP_IF_UNAVAILABLE(PostgresServer::unavailable_reason());
    RSTASKER_SKIP_IF_UNAVAILABLE(MotoServer::unavailable_reason());
    ASSERT_TRUE(start_error_.empty()) << start_error_;
    ASSERT_EQ(control("DELETE", "").status, 200);
  }

  static std::unique_ptr<aws::JsonClient> client(aws::JsonProtocol protocol,
                                                 const std::string& signing_name,
                                                 const aws::Credentials& credentials) {
    return std::make_unique<aws::JsonClient>(protocol, aws::Endpoint{edge_, kRegion, signing_name},
                                             credentials, transport_,
                                             aws::RetryPolicy{.max_attempts = 1});
  }

  // A request to the control endpoint, as a test sends it.
  static aws::HttpResponse control(const std::string& method, const std::string& body,
                                   aws::Headers headers = {{"X-Tasker-Local-Control", "faults"}}) {
    aws::HttpRequest request;
    request.method = method;
    request.url = edge_ + "/_tasker_local/faults";
    request.headers = std::move(headers);
    request.body = body;
    return transport_->send(request, Deadline::after(30s));
  }

  static void set_rules(const Json& rules) {
    aws::HttpResponse answer = control("PUT", rules.dump());
    ASSERT_EQ(answer.status, 200) << answer.body;
  }

  static Json counters() {
    aws::HttpResponse answer = control("GET", "");
    EXPECT_EQ(answer.status, 200) << answer.body;
    return Json::parse(answer.body).at("counters");
  }

  static Json put(const aws::JsonClient& dynamodb, const std::string& id) {
    return dynamodb.call("PutItem", {{"TableName", kTable}, {"Item", {{"id", {{"S", id}}}}}},
                         {Deadline::after(20s), {}});
  }

  static bool stored(const std::string& id) {
    Json item = dynamodb_->call(
        "GetItem",
        {{"TableName", kTable}, {"Key", {{"id", {{"S", id}}}}}, {"ConsistentRead", true}}, {});
    return item.contains("Item");
  }

  // Calls `call` and returns the Error it throws; fails the test when it does not throw.
  template <typename F>
  static Error error_of(F&& call) {
    try {
      call();
    } catch (const Error& e) {
      return e;
    }
    ADD_FAILURE() << "the call succeeded";
    return Error("none", "");
  }

  static inline std::unique_ptr<PostgresServer> postgres_;
  static inline std::unique_ptr<MotoServer> moto_;
  static inline std::unique_ptr<Process> tasker_local_;
  static inline std::filesystem::path work_dir_;
  static inline std::string edge_;
  static inline std::string start_error_;
  static inline std::string file_rule_answer_;
  static inline std::shared_ptr<aws::HttpTransport> transport_;
  static inline std::unique_ptr<aws::JsonClient> dynamodb_;
  static inline std::unique_ptr<aws::JsonClient> other_dynamodb_;
  static inline std::unique_ptr<aws::JsonClient> data_api_;
  static inline std::unique_ptr<aws::JsonClient> sqs_;
  static inline std::unique_ptr<aws::JsonClient> events_;
};

TEST_F(FaultsTest, LostReplyAppliesTheWriteAndAnswers500) {
  set_rules({{"rules",
              {{{"name", "lose-put"},
                {"service", "dynamodb"},
                {"operation", "PutItem"},
                {"fault", "lost-reply"}}}}});
  Error e = error_of([] { put(*dynamodb_, "lost-500"); });
  EXPECT_EQ(e.name(), "InternalServerError") << e.message();
  EXPECT_EQ(e.http_status(), 500);
  EXPECT_TRUE(stored("lost-500")) << "a lost reply's write must be applied";
  const Json c = counters();
  EXPECT_EQ(c.at("injected").value("lost-reply", 0), 1) << c.dump();
  EXPECT_EQ(c.at("rules").at("lose-put").value("injected", 0), 1) << c.dump();
  EXPECT_EQ(c.at("injected_by_operation").at("dynamodb:PutItem").value("lost-reply", 0), 1);
  EXPECT_EQ(c.at("requests").value("dynamodb:PutItem", 0), 1) << c.dump();
}

TEST_F(FaultsTest, LostReplyCanDropTheConnectionOrStall) {
  set_rules({{"rules",
              {{{"service", "dynamodb"},
                {"operation", "PutItem"},
                {"body_contains", "lost-drop"},
                {"fault", "lost-reply"},
                {"mode", "drop"}},
               {{"service", "dynamodb"},
                {"operation", "PutItem"},
                {"body_contains", "lost-stall"},
                {"fault", "lost-reply"},
                {"mode", "stall"},
                {"delay_ms", 200}}}}});
  for (const char* id : {"lost-drop", "lost-stall"}) {
    Error e = error_of([id] { put(*dynamodb_, id); });
    EXPECT_EQ(e.name(), "NetworkError") << id << ": " << e.message();
    EXPECT_TRUE(stored(id)) << id;
  }
  EXPECT_EQ(counters().at("injected").value("lost-reply", 0), 2);
}

TEST_F(FaultsTest, RefuseAnswersBeforeApplying) {
  const std::vector<std::pair<std::string, int>> cases = {
      {"ThrottlingException", 400},
      {"ProvisionedThroughputExceededException", 400},
      {"TooManyRequestsException", 429},
      {"ServiceUnavailable", 503},
      {"InternalServerError", 500}};
  int refused = 0;
  for (const auto& [error, status] : cases) {
    set_rules({{"rules",
                {{{"service", "dynamodb"},
                  {"operation", "PutItem"},
                  {"fault", "refuse"},
                  {"error", error}}}}});
    const std::string id = "refused-" + error;
    Error e = error_of([&] { put(*dynamodb_, id); });
    EXPECT_EQ(e.name(), error) << e.message();
    EXPECT_EQ(e.http_status(), status) << error;
    EXPECT_FALSE(stored(id)) << "a refused write must not be applied: " << error;
    ++refused;
  }
  EXPECT_EQ(counters().at("injected").value("refuse", 0), refused);
}

TEST_F(FaultsTest, FirstPerBodyLosesOnlyTheFirstAnswerOfEachBody) {
  set_rules({{"rules",
              {{{"name", "first"},
                {"service", "dynamodb"},
                {"operation", "PutItem"},
                {"fault", "lost-reply"},
                {"first_per_body", true}}}}});
  // A retry sends the same body: only the first attempt loses its answer.
  EXPECT_EQ(error_of([] { put(*dynamodb_, "first-a"); }).http_status(), 500);
  EXPECT_NO_THROW(put(*dynamodb_, "first-a"));
  EXPECT_EQ(error_of([] { put(*dynamodb_, "first-b"); }).http_status(), 500);
  EXPECT_NO_THROW(put(*dynamodb_, "first-b"));
  const Json c = counters();
  EXPECT_EQ(c.at("rules").at("first").value("matched", 0), 4) << c.dump();
  EXPECT_EQ(c.at("rules").at("first").value("injected", 0), 2) << c.dump();
}

TEST_F(FaultsTest, NthAndAccessKeyAndProbabilityChooseTheRequests) {
  set_rules({{"seed", 11},
             {"rules",
              {{{"name", "second"},
                {"service", "dynamodb"},
                {"operation", "PutItem"},
                {"body_contains", "nth-"},
                {"access_key", kKey.access_key_id},
                {"fault", "refuse"},
                {"nth", 2}}}}});
  // The other key's calls do not match; of ours, only the second is refused.
  EXPECT_NO_THROW(put(*other_dynamodb_, "nth-other"));
  EXPECT_NO_THROW(put(*dynamodb_, "nth-1"));
  EXPECT_EQ(error_of([] { put(*dynamodb_, "nth-2"); }).name(), "ThrottlingException");
  EXPECT_NO_THROW(put(*dynamodb_, "nth-3"));
  EXPECT_EQ(counters().at("rules").at("second").value("matched", 0), 3);

  // Probability: the same seed and bodies give the same choice in every run.
  auto choices = [](std::uint64_t seed) {
    set_rules({{"seed", seed},
               {"rules",
                {{{"service", "dynamodb"},
                  {"operation", "PutItem"},
                  {"body_contains", "p-"},
                  {"fault", "refuse"},
                  {"probability", 0.5}}}}});
    std::string refused;
    for (int i = 0; i < 16; ++i) {
      try {
        put(*dynamodb_, "p-" + std::to_string(i));
        refused += '.';
      } catch (const Error&) {
        refused += 'x';
      }
    }
    return refused;
  };
  const std::string first = choices(5);
  EXPECT_EQ(choices(5), first) << "the same seed must hit the same requests";
  EXPECT_NE(first.find('x'), std::string::npos) << first;
  EXPECT_NE(first.find('.'), std::string::npos) << first;
}

TEST_F(FaultsTest, RulesFromTheFileAreInForceUntilReplaced) {
  EXPECT_EQ(file_rule_answer_, "ServiceUnavailable 503");
  set_rules({{"rules", Json::array()}});
  EXPECT_NO_THROW(dynamodb_->call("ListTables", Json::object(), {}));
}

TEST_F(FaultsTest, ControlEndpointTakesOnlyItsOwnRequestsAndNamesBadRules) {
  // Without the control header, or looking like an AWS request: refused, rules unchanged.
  EXPECT_EQ(control("GET", "", {}).status, 400);
  EXPECT_EQ(
      control("PUT", R"({"rules": []})",
              {{"X-Tasker-Local-Control", "faults"},
               {"Authorization", "AWS4-HMAC-SHA256 Credential=x/y/us-east-1/s3/aws4_request"}})
          .status,
      400);
  for (const char* bad : {R"({"rules": [{"fault": "explode"}]})", R"({"rules": {}})",
                          R"({"rules": [{"fault": "drop", "service": "dynamodb"}]})",
                          R"({"rules": [{"fault": "lost-reply", "mode": "maybe"}]})",
                          R"({"rules": [{"fault": "refuse", "error": "Mine"}]})",
                          R"({"rules": [{"fault": "latency", "delay_ms": 999999}]})",
                          R"({"rules": [{"fault": "refuse", "probability": 2}]})",
                          R"({"seed": -1})", R"({"rulez": []})", "not json"}) {
    aws::HttpResponse answer = control("PUT", bad);
    EXPECT_EQ(answer.status, 400) << bad;
    EXPECT_NE(answer.body.find("InvalidFaultRules"), std::string::npos) << bad << answer.body;
  }
}

// Completion events: one dropped, one duplicated, one delayed past the events after it.
TEST_F(FaultsTest, CompletionEventsAreDroppedDuplicatedAndDelayed) {
  const std::string queue =
      sqs_->call("CreateQueue", {{"QueueName", "faults-events"}}, {}).at("QueueUrl");
  events_->call(
      "PutRule",
      {{"Name", "faults-status"}, {"EventPattern", R"({"source":["aws.redshift-data"]})"}}, {});
  events_->call(
      "PutTargets",
      {{"Rule", "faults-status"},
       {"Targets",
        {{{"Id", "queue"}, {"Arn", "arn:aws:sqs:us-east-1:123456789012:faults-events"}}}}},
      {});
  set_rules({{"rules",
              {{{"service", "completion"}, {"body_contains", "fault-dropped"}, {"fault", "drop"}},
               {{"service", "completion"},
                {"operation", "FINISHED"},
                {"body_contains", "fault-duplicated"},
                {"fault", "duplicate"}},
               {{"service", "completion"},
                {"body_contains", "fault-delayed"},
                {"fault", "delay"},
                {"delay_ms", 8000}}}}});
  // One after the other, each finished before the next starts: events are published in order.
  for (const char* name : {"fault-delayed", "fault-dropped", "fault-duplicated", "fault-marker"}) {
    const std::string id = data_api_
                               ->call("ExecuteStatement",
                                      {{"ClusterIdentifier", "local"},
                                       {"Database", "postgres"},
                                       {"DbUser", "postgres"},
                                       {"Sql", "select 1"},
                                       {"StatementName", name},
                                       {"WithEvent", true}},
                                      {})
                               .at("Id");
    for (int i = 0; i < 200; ++i) {
      if (data_api_->call("DescribeStatement", {{"Id", id}}, {}).at("Status") == "FINISHED") break;
      std::this_thread::sleep_for(50ms);
    }
  }
  std::vector<std::string> names;
  for (int polls = 0; polls < 10 && std::count(names.begin(), names.end(), "fault-delayed") == 0;
       ++polls) {
    Json received =
        sqs_->call("ReceiveMessage",
                   {{"QueueUrl", queue}, {"WaitTimeSeconds", 5}, {"MaxNumberOfMessages", 10}},
                   {Deadline::after(30s), {}});
    for (const Json& message : received.value("Messages", Json::array())) {
      names.push_back(Json::parse(message.at("Body").get<std::string>())
                          .at("detail")
                          .at("statementName")
                          .get<std::string>());
      sqs_->call("DeleteMessage",
                 {{"QueueUrl", queue}, {"ReceiptHandle", message.at("ReceiptHandle")}}, {});
    }
  }
  std::string seen;
  for (const auto& n : names) seen += n + " ";
  EXPECT_EQ(std::count(names.begin(), names.end(), "fault-dropped"), 0) << seen;
  EXPECT_EQ(std::count(names.begin(), names.end(), "fault-duplicated"), 2) << seen;
  ASSERT_EQ(std::count(names.begin(), names.end(), "fault-delayed"), 1) << seen;
  ASSERT_EQ(std::count(names.begin(), names.end(), "fault-marker"), 1) << seen;
  EXPECT_GT(std::find(names.begin(), names.end(), "fault-delayed") - names.begin(),
            std::find(names.begin(), names.end(), "fault-marker") - names.begin())
      << "the delayed event must come after the events published after it: " << seen;
  const Json c = counters();
  EXPECT_EQ(c.at("injected").value("drop", 0), 1) << c.dump();
  EXPECT_EQ(c.at("injected").value("duplicate", 0), 1) << c.dump();
  EXPECT_EQ(c.at("injected").value("delay", 0), 1) << c.dump();
  EXPECT_EQ(c.at("requests").value("completion:FINISHED", 0), 4) << c.dump();
}

}  // namespace
}  // namespace rstasker::testing
