// tasker-local as a user's tools meet it: a real PostgreSQL, a real moto (through the project's
// launcher, with Step Functions' executor pointed at the edge) and tasker-local as a child
// process. Through the one edge port: the Data API (signed, or refused), pass-through to moto,
// Lambda Invoke of redshift-tasker deployed as a zip, SQS event-source mappings with
// batchItemFailures and redrive, and Step Functions' executor invoking the function.
#include <gtest/gtest.h>
#include <httplib.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include "rstasker/aws/http.hpp"
#include "rstasker/aws/json_client.hpp"
#include "rstasker/aws/sigv4.hpp"
#include "rstasker/common/error.hpp"
#include "rstasker/common/text.hpp"
#include "support/moto_server.hpp"
#include "support/paths.hpp"
#include "support/postgres_server.hpp"
#include "support/process.hpp"
#include "support/tasker_local.hpp"

namespace rstasker::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

const aws::Credentials kKey{"AKIDTASKERLOCALTEST", "tasker-local-test-secret", ""};
constexpr const char* kRegion = "us-east-1";
constexpr const char* kAccount = "123456789012";
constexpr const char* kFunction = "tasker";
constexpr const char* kRoleName = "tasker-role";

std::string function_arn(const std::string& name) {
  return std::string("arn:aws:lambda:") + kRegion + ":" + kAccount + ":function:" + name;
}

std::string queue_arn(const std::string& name) {
  return std::string("arn:aws:sqs:") + kRegion + ":" + kAccount + ":" + name;
}

// Polls `check` until it returns true or `timeout` passes; moto offers nothing to wait on.
bool eventually(const std::function<bool()>& check, std::chrono::milliseconds timeout) {
  const auto give_up = Clock::now() + timeout;
  auto pause = 20ms;
  while (true) {
    if (check()) return true;
    if (Clock::now() > give_up) return false;
    std::this_thread::sleep_for(pause);
    pause = std::min<std::chrono::milliseconds>(pause * 2, 250ms);
  }
}

class TaskerLocalStackTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (PostgresServer::unavailable_reason() || MotoServer::unavailable_reason()) return;
    try {
      postgres_ = std::make_unique<PostgresServer>();
      edge_port_ = free_tcp_port();
      moto_ = std::make_unique<MotoServer>(MotoOptions{.moto_port = edge_port_});
      moto_->enable_state_machine_execution();
      work_dir_ = test_log_dir() / ("tasker-local-stack." + std::to_string(::getpid()));
      std::filesystem::remove_all(work_dir_);
      std::filesystem::create_directories(work_dir_);

      tasker_local_ =
          start_tasker_local({.port = edge_port_,
                              .moto_url = moto_->endpoint(),
                              .region = kRegion,
                              .key = kKey,
                              .work_dir = work_dir_,
                              .extra = {"--pg", postgres_->client_conninfo(), "--accept-key",
                                        "ak:sk", "--log-level", "debug"}});
      edge_ = "http://127.0.0.1:" + std::to_string(edge_port_);
      transport_ = aws::make_curl_transport();
      data_api_ = client(aws::protocol::kRedshiftData, "redshift-data", kKey);
      dynamodb_ = client(aws::protocol::kDynamoDb, "dynamodb", kKey);
      sqs_ = client(aws::protocol::kSqs, "sqs", kKey);
      sfn_ = client(aws::protocol::kStepFunctions, "states", kKey);
      events_ = client(aws::protocol::kEventBridge, "events", kKey);
    } catch (const std::exception& e) {
      start_error_ = e.what();
    }
  }

  static void TearDownTestSuite() {
    expect_clean_stop(tasker_local_);
    moto_.reset();
    postgres_.reset();
    // Keep the function logs for a reader of a failure; the code copies are only bulk.
    std::error_code ignored;
    for (const char* bulk : {"code", "package", "function.zip"}) {
      std::filesystem::remove_all(work_dir_ / bulk, ignored);
    }
  }

  void SetUp() override {
    RSTASKER_SKIP_IF_UNAVAILABLE(PostgresServer::unavailable_reason());
    RSTASKER_SKIP_IF_UNAVAILABLE(MotoServer::unavailable_reason());
    ASSERT_TRUE(start_error_.empty()) << start_error_;
  }

  static std::unique_ptr<aws::JsonClient> client(aws::JsonProtocol protocol,
                                                 const std::string& signing_name,
                                                 const aws::Credentials& credentials) {
    return std::make_unique<aws::JsonClient>(protocol, aws::Endpoint{edge_, kRegion, signing_name},
                                             credentials, transport_,
                                             aws::RetryPolicy{.max_attempts = 1});
  }

  // A signed REST call through the edge (Lambda's API).
  static aws::HttpResponse rest(const std::string& method, const std::string& path,
                                const std::string& body, aws::Headers headers = {},
                                const aws::Credentials& credentials = kKey,
                                const std::string& service = "lambda") {
    aws::HttpRequest request;
    request.method = method;
    request.url = edge_ + path;
    request.headers = std::move(headers);
    request.body = body;
    if (!body.empty()) request.set_header("Content-Type", "application/json");
    aws::Signer(kRegion, service).sign(request, credentials, std::chrono::system_clock::now());
    return transport_->send(request, Deadline::after(120s));
  }

  static aws::HttpResponse invoke(const std::string& function, const std::string& payload,
                                  const std::string& type = "RequestResponse",
                                  const aws::Credentials& credentials = kKey) {
    return rest("POST", "/2015-03-31/functions/" + function + "/invocations", payload,
                {{"X-Amz-Invocation-Type", type}}, credentials);
  }

  // Deploys build/redshift-tasker as a provided.al2023 function through the edge (once).
  static void deploy_function() {
    if (function_deployed_) return;
    const auto package = work_dir_ / "package";
    std::filesystem::create_directories(package);
    std::filesystem::create_symlink(binary_dir() / "redshift-tasker", package / "bootstrap");
    const auto zip = work_dir_ / "function.zip";
    int zipped = run_to_completion(
        {.argv = {"zip", "-q", "-1", zip.string(), "bootstrap"}, .working_dir = package}, 120s);
    ASSERT_EQ(zipped, 0) << "zip failed";

    moto_->query("iam", {{"Action", "CreateRole"},
                         {"RoleName", kRoleName},
                         {"AssumeRolePolicyDocument",
                          R"({"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":)"
                          R"({"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]})"},
                         {"Version", "2010-05-08"}});
    Json create = {{"FunctionName", kFunction},
                   {"Runtime", "provided.al2023"},
                   {"Handler", "bootstrap"},
                   {"Role", std::string("arn:aws:iam::") + kAccount + ":role/" + kRoleName},
                   {"Timeout", 30},
                   {"Code", {{"ZipFile", rstasker::base64_encode(read_file(zip))}}},
                   {"Environment",
                    {{"Variables",
                      {{"DDB_TABLE_NAME", "no-such-table"},
                       {"CLUSTER_IDENTIFIER", "local"},
                       {"DATABASE", "postgres"},
                       {"DB_USER", "postgres"}}}}}};
    aws::HttpResponse created = rest("POST", "/2015-03-31/functions", create.dump());
    ASSERT_EQ(created.status, 201) << created.body;
    function_deployed_ = true;
  }

  static std::string create_queue(const std::string& name, const Json& attributes) {
    return sqs_->call("CreateQueue", {{"QueueName", name}, {"Attributes", attributes}}, {})
        .at("QueueUrl")
        .get<std::string>();
  }

  static int queue_count(const std::string& url, const char* attribute) {
    Json answer =
        sqs_->call("GetQueueAttributes", {{"QueueUrl", url}, {"AttributeNames", {attribute}}}, {});
    return std::stoi(answer.at("Attributes").at(attribute).get<std::string>());
  }

  // Everything the function instances wrote so far.
  static std::string function_logs() {
    std::string text;
    const auto dir = work_dir_ / "functions" / kFunction;
    if (!std::filesystem::exists(dir)) return text;
    for (const auto& entry : std::filesystem::directory_iterator(dir)) {
      text += read_file(entry.path());
    }
    return text;
  }

  static std::size_t occurrences(const std::string& text, const std::string& needle) {
    std::size_t count = 0;
    for (auto pos = text.find(needle); pos != std::string::npos; pos = text.find(needle, pos + 1)) {
      ++count;
    }
    return count;
  }

  static inline std::unique_ptr<PostgresServer> postgres_;
  static inline std::unique_ptr<MotoServer> moto_;
  static inline std::unique_ptr<Process> tasker_local_;
  static inline int edge_port_ = 0;
  static inline std::string edge_;
  static inline std::filesystem::path work_dir_;
  static inline std::shared_ptr<aws::HttpTransport> transport_;
  static inline std::unique_ptr<aws::JsonClient> data_api_;
  static inline std::unique_ptr<aws::JsonClient> dynamodb_;
  static inline std::unique_ptr<aws::JsonClient> sqs_;
  static inline std::unique_ptr<aws::JsonClient> sfn_;
  static inline std::unique_ptr<aws::JsonClient> events_;
  static inline bool function_deployed_ = false;
  static inline std::string start_error_;
};

TEST_F(TaskerLocalStackTest, DataApiRunsSqlOnPostgresThroughTheEdge) {
  Json started = data_api_->call("ExecuteStatement",
                                 {{"ClusterIdentifier", "local"},
                                  {"Database", "postgres"},
                                  {"DbUser", "postgres"},
                                  {"Sql", "select 40 + 2 as answer"}},
                                 {});
  const std::string id = started.at("Id").get<std::string>();
  Json described;
  ASSERT_TRUE(eventually(
      [&] {
        described = data_api_->call("DescribeStatement", {{"Id", id}}, {});
        return described.at("Status") == "FINISHED" || described.at("Status") == "FAILED";
      },
      30s));
  ASSERT_EQ(described.at("Status"), "FINISHED") << described.dump();
  Json result = data_api_->call("GetStatementResult", {{"Id", id}}, {});
  EXPECT_EQ(result.at("Records")[0][0].at("longValue"), 42) << result.dump();
}

TEST_F(TaskerLocalStackTest, DataApiRefusesABadSignature) {
  auto forged = client(aws::protocol::kRedshiftData, "redshift-data",
                       {kKey.access_key_id, "not-the-secret", ""});
  try {
    forged->call("ListStatements", Json::object(), {});
    FAIL() << "a request signed with the wrong secret was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.name(), "InvalidSignatureException") << e.message();
    EXPECT_EQ(e.http_status(), 403);
  }
  auto stranger = client(aws::protocol::kRedshiftData, "redshift-data",
                         {"AKIDNOBODYKNOWS", kKey.secret_access_key, ""});
  try {
    stranger->call("ListStatements", Json::object(), {});
    FAIL() << "a request signed with an unknown key was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.name(), "UnrecognizedClientException") << e.message();
    EXPECT_EQ(e.http_status(), 403);
  }
}

TEST_F(TaskerLocalStackTest, DataApiCompletionEventsReachEventBridge) {
  const std::string queue = create_queue("data-api-events", Json::object());
  events_->call(
      "PutRule",
      {{"Name", "statement-status"}, {"EventPattern", R"({"source":["aws.redshift-data"]})"}}, {});
  events_->call("PutTargets",
                {{"Rule", "statement-status"},
                 {"Targets", {{{"Id", "queue"}, {"Arn", queue_arn("data-api-events")}}}}},
                {});
  data_api_->call("ExecuteStatement",
                  {{"ClusterIdentifier", "local"},
                   {"Database", "postgres"},
                   {"DbUser", "postgres"},
                   {"Sql", "select 1"},
                   {"StatementName", "evented"},
                   {"WithEvent", true}},
                  {});
  Json received = sqs_->call(
      "ReceiveMessage", {{"QueueUrl", queue}, {"WaitTimeSeconds", 20}, {"MaxNumberOfMessages", 1}},
      {Deadline::after(40s), {}});
  ASSERT_TRUE(received.contains("Messages")) << received.dump();
  Json event = Json::parse(received.at("Messages")[0].at("Body").get<std::string>());
  EXPECT_EQ(event.at("source"), "aws.redshift-data");
  EXPECT_EQ(event.at("detail-type"), "Redshift Data Statement Status Change");
  EXPECT_EQ(event.at("detail").at("statementName"), "evented");
  EXPECT_EQ(event.at("detail").at("state"), "FINISHED");
}

TEST_F(TaskerLocalStackTest, OtherServicesArePassedToMoto) {
  dynamodb_->call("CreateTable",
                  {{"TableName", "through-the-edge"},
                   {"AttributeDefinitions", {{{"AttributeName", "id"}, {"AttributeType", "S"}}}},
                   {"KeySchema", {{{"AttributeName", "id"}, {"KeyType", "HASH"}}}},
                   {"BillingMode", "PAY_PER_REQUEST"}},
                  {});
  Json tables = dynamodb_->call("ListTables", Json::object(), {});
  EXPECT_NE(tables.at("TableNames").dump().find("through-the-edge"), std::string::npos);
  // The table is moto's: asked directly, moto lists it too.
  aws::JsonClient direct(aws::protocol::kDynamoDb, {moto_->endpoint(), kRegion, "dynamodb"},
                         moto_->credentials(), transport_);
  Json at_moto = direct.call("ListTables", Json::object(), {});
  EXPECT_NE(at_moto.at("TableNames").dump().find("through-the-edge"), std::string::npos);
  // REST and HEAD requests pass too (S3: bucket, object, and its length on HEAD).
  EXPECT_EQ(rest("PUT", "/edge-bucket", "", {}, kKey, "s3").status, 200);
  EXPECT_EQ(rest("PUT", "/edge-bucket/object.txt", "twelve bytes", {}, kKey, "s3").status, 200);
  EXPECT_EQ(rest("GET", "/edge-bucket/object.txt", "", {}, kKey, "s3").body, "twelve bytes");
  aws::HttpRequest head;
  head.method = "HEAD";
  head.url = edge_ + "/edge-bucket/object.txt";
  aws::Signer(kRegion, "s3").sign(head, kKey, std::chrono::system_clock::now());
  httplib::Client http("127.0.0.1", edge_port_);
  httplib::Headers headers;
  for (const auto& [name, value] : head.headers) headers.emplace(name, value);
  auto answer = http.Head("/edge-bucket/object.txt", headers);
  ASSERT_TRUE(answer) << "HEAD got no answer";
  EXPECT_EQ(answer->status, 200);
  EXPECT_EQ(answer->get_header_value("Content-Length"), "12");
}

// moto checks no signature; the edge checks them on the way to moto too, and reads no body larger
// than any AWS API takes.
TEST_F(TaskerLocalStackTest, PassThroughRequestsMustBeSignedAndBounded) {
  aws::HttpRequest unsigned_request;
  unsigned_request.url = edge_ + "/";
  unsigned_request.headers = {{"X-Amz-Target", "DynamoDB_20120810.ListTables"},
                              {"Content-Type", "application/x-amz-json-1.0"}};
  unsigned_request.body = "{}";
  aws::HttpResponse refused = transport_->send(unsigned_request, Deadline::after(30s));
  EXPECT_EQ(refused.status, 403);
  EXPECT_EQ(aws::error_from_response(refused).name(), "MissingAuthenticationTokenException");

  const aws::Credentials wrong{kKey.access_key_id, "not-the-secret", ""};
  try {
    client(aws::protocol::kDynamoDb, "dynamodb", wrong)->call("ListTables", Json::object(), {});
    FAIL() << "a pass-through request signed with the wrong secret was accepted";
  } catch (const Error& e) {
    EXPECT_EQ(e.name(), "InvalidSignatureException") << e.message();
  }
  EXPECT_EQ(rest("PUT", "/edge-unsigned", "", {}, wrong, "s3").status, 403);

  EXPECT_EQ(rest("PUT", "/edge-huge/object", std::string((std::size_t{70} << 20) + 1, 'x'), {},
                 kKey, "s3")
                .status,
            413);
}

TEST_F(TaskerLocalStackTest, InvokeRunsTheFunctionFromItsZip) {
  ASSERT_NO_FATAL_FAILURE(deploy_function());
  aws::HttpResponse response = invoke(kFunction, R"({"bogus": true})");
  ASSERT_EQ(response.status, 200) << response.body;
  EXPECT_EQ(response.header("X-Amz-Function-Error"), "Unhandled");
  EXPECT_EQ(response.header("X-Amz-Executed-Version"), "$LATEST");
  Json error = Json::parse(response.body);
  EXPECT_EQ(error.at("errorType"), "InvalidRequest") << response.body;

  // By ARN (encoded as SDKs do), and reusing the warm instance.
  response = invoke("arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Atasker",
                    R"({"action": "describeStatement"})");
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(Json::parse(response.body).at("errorType"), "InvalidRequest") << response.body;

  std::string logs = function_logs();
  EXPECT_GE(occurrences(logs, "START RequestId: "), 2u) << logs;
  EXPECT_NE(logs.find("REPORT RequestId: "), std::string::npos) << logs;
}

TEST_F(TaskerLocalStackTest, InvokeAnswersEventDryRunAndMissingFunctions) {
  ASSERT_NO_FATAL_FAILURE(deploy_function());
  EXPECT_EQ(invoke(kFunction, R"({"bogus": 1})", "Event").status, 202);
  EXPECT_EQ(invoke(kFunction, R"({"bogus": 1})", "DryRun").status, 204);
  aws::HttpResponse missing = invoke("no-such-function", "{}");
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(missing.header("x-amzn-ErrorType"), "ResourceNotFoundException") << missing.body;
  aws::HttpResponse not_json = invoke(kFunction, "not json");
  EXPECT_EQ(not_json.status, 400);
  EXPECT_EQ(not_json.header("x-amzn-ErrorType"), "InvalidRequestContentException");
  aws::HttpResponse forged =
      invoke(kFunction, "{}", "RequestResponse", {kKey.access_key_id, "wrong", ""});
  EXPECT_EQ(forged.status, 403);
  EXPECT_EQ(forged.header("x-amzn-ErrorType"), "InvalidSignatureException");
}

TEST_F(TaskerLocalStackTest, SqsMappingDeliversDeletesAndRetriesReportedFailures) {
  ASSERT_NO_FATAL_FAILURE(deploy_function());
  create_queue("tasker-dlq", Json::object());
  const std::string queue = create_queue(
      "tasker-events", {{"VisibilityTimeout", "1"},
                        {"RedrivePolicy", Json({{"deadLetterTargetArn", queue_arn("tasker-dlq")},
                                                {"maxReceiveCount", "3"}})
                                              .dump()}});
  const std::string dlq = sqs_->call("GetQueueUrl", {{"QueueName", "tasker-dlq"}}, {})
                              .at("QueueUrl")
                              .get<std::string>();
  aws::HttpResponse mapping = rest("POST", "/2015-03-31/event-source-mappings/",
                                   Json({{"FunctionName", kFunction},
                                         {"EventSourceArn", queue_arn("tasker-events")},
                                         {"BatchSize", 10},
                                         {"FunctionResponseTypes", {"ReportBatchItemFailures"}}})
                                       .dump());
  ASSERT_EQ(mapping.status / 100, 2) << mapping.body;

  // Not a completion event: the function acknowledges it, so it is deleted.
  const std::string ignored =
      sqs_->call("SendMessage", {{"QueueUrl", queue}, {"MessageBody", R"({"hello":1})"}}, {})
          .at("MessageId")
          .get<std::string>();
  // A completion event whose state the function cannot record (its table does not exist): it
  // is reported in batchItemFailures, so it stays, comes back, and ends in the dead-letter queue.
  Json completion = {{"version", "0"},
                     {"id", "4c6a6a3e-0000-4000-8000-000000000001"},
                     {"detail-type", "Redshift Data Statement Status Change"},
                     {"source", "aws.redshift-data"},
                     {"account", kAccount},
                     {"time", "2024-03-05T10:20:30Z"},
                     {"region", kRegion},
                     {"resources", Json::array()},
                     {"detail",
                      {{"principal", "arn:aws:iam::123456789012:user/local-stack"},
                       {"statementName", "exec-1:1709634030.123456"},
                       {"statementId", "dd2e1ec9-2ee3-49a0-819f-905fa7d75a4a"},
                       {"redshiftQueryId", -1},
                       {"state", "FINISHED"},
                       {"rows", 1},
                       {"expireAt", 1709720430}}}};
  sqs_->call("SendMessage", {{"QueueUrl", queue}, {"MessageBody", completion.dump()}}, {});

  EXPECT_TRUE(eventually(
      [&] {
        return function_logs().find("SQS message " + ignored + " is not a Redshift Data API") !=
               std::string::npos;
      },
      30s))
      << function_logs();
  EXPECT_TRUE(eventually([&] { return queue_count(dlq, "ApproximateNumberOfMessages") == 1; }, 60s))
      << "the failed record never reached the dead-letter queue\n"
      << tasker_local_->log_tail();
  EXPECT_EQ(queue_count(queue, "ApproximateNumberOfMessages"), 0);
  EXPECT_EQ(queue_count(queue, "ApproximateNumberOfMessagesNotVisible"), 0);
  // Delivered more than once before it was dead-lettered; the acknowledged one only once.
  const std::string logs = function_logs();
  EXPECT_GE(occurrences(logs, "exec-1:1709634030.123456"), 2u) << logs;
  EXPECT_EQ(occurrences(logs, "SQS message " + ignored), 1u) << logs;
  Json dead = sqs_->call("ReceiveMessage", {{"QueueUrl", dlq}, {"MaxNumberOfMessages", 1}}, {});
  ASSERT_TRUE(dead.contains("Messages")) << dead.dump();
  EXPECT_EQ(Json::parse(dead.at("Messages")[0].at("Body").get<std::string>()), completion);
}

TEST_F(TaskerLocalStackTest, StepFunctionsExecutorInvokesTheFunction) {
  ASSERT_NO_FATAL_FAILURE(deploy_function());
  Json definition = {
      {"StartAt", "Run"},
      {"States",
       {{"Run",
         {{"Type", "Task"},
          {"Resource", "arn:aws:states:::lambda:invoke"},
          {"Parameters", {{"FunctionName", function_arn(kFunction)}, {"Payload", {{"bogus", 1}}}}},
          {"Catch", {{{"ErrorEquals", {"InvalidRequest"}}, {"Next", "Caught"}}}},
          {"End", true}}},
        {"Caught", {{"Type", "Pass"}, {"End", true}}}}}};
  std::string machine =
      sfn_->call("CreateStateMachine",
                 {{"name", "invokes-tasker"},
                  {"definition", definition.dump()},
                  {"roleArn", std::string("arn:aws:iam::") + kAccount + ":role/" + kRoleName}},
                 {})
          .at("stateMachineArn")
          .get<std::string>();
  std::string execution =
      sfn_->call("StartExecution",
                 {{"stateMachineArn", machine}, {"name", "run-1"}, {"input", "{}"}}, {})
          .at("executionArn")
          .get<std::string>();
  Json described;
  ASSERT_TRUE(eventually(
      [&] {
        described = sfn_->call("DescribeExecution", {{"executionArn", execution}}, {});
        return described.at("status") != "RUNNING";
      },
      60s));
  // The function's InvalidRequest reached the Catch: the executor's invoke went through the edge
  // (signed with moto's own key) to the function.
  EXPECT_EQ(described.at("status"), "SUCCEEDED") << described.dump();
  Json output = Json::parse(described.at("output").get<std::string>());
  EXPECT_EQ(output.at("Error"), "InvalidRequest") << output.dump();
}

}  // namespace
}  // namespace rstasker::testing
