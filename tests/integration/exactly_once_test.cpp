// Exactly one callback per statement, counted at the receiving servers: completions replayed
// three times in a row and three times at once, and crashes after each step, with the state
// table on moto's DynamoDB (real conditional writes), Step Functions callbacks going to a local
// HTTP server that answers like Step Functions, and CloudFormation responses to a local receiver.
#include <gtest/gtest.h>
#include <httplib.h>

#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <thread>

#include "rstasker/aws/endpoints.hpp"
#include "rstasker/common/error.hpp"
#include "rstasker/common/text.hpp"
#include "rstasker/services/dynamodb.hpp"
#include "rstasker/tasker/tasker.hpp"
#include "support/cfn_receiver.hpp"
#include "support/fakes.hpp"
#include "support/lost_reply_transport.hpp"
#include "support/moto_server.hpp"

namespace rstasker::tasker {
namespace {

using rstasker::testing::CfnReceiver;
using rstasker::testing::FakeRedshiftData;
using rstasker::testing::LostReplyTransport;
using rstasker::testing::MotoOptions;
using rstasker::testing::MotoServer;

// Step Functions' callback API as far as callers can tell: the first SendTaskSuccess/Failure of
// a token closes its task; later calls on it (and heartbeats) answer TaskTimedOut. Counts every
// SendTaskSuccess/Failure it receives, whatever it answers (a second callback refused with
// TaskTimedOut was still sent, and exactly-once means it must not be), and can answer 500 for
// chosen tokens.
class StepFunctionsServer {
 public:
  StepFunctionsServer() {
    server_.Post("/", [this](const httplib::Request& req, httplib::Response& res) {
      std::string target = req.get_header_value("X-Amz-Target");
      Json body = Json::parse(req.body);
      std::string token = body.value("taskToken", "");
      std::lock_guard lock(mutex_);
      const bool heartbeat = target == "AWSStepFunctions.SendTaskHeartbeat";
      if (!heartbeat) ++callbacks_[token];
      if (failing_.contains(token)) {
        res.status = 500;
        res.set_content(R"({"__type":"InternalFailure","message":"unavailable"})",
                        "application/x-amz-json-1.0");
        return;
      }
      if (closed_.contains(token)) {
        res.status = 400;
        res.set_content(R"({"__type":"TaskTimedOut","message":"Task Timed Out"})",
                        "application/x-amz-json-1.0");
        return;
      }
      if (heartbeat) {
        ++heartbeats_;
      } else {
        closed_.insert(token);
        ++accepted_[token];
      }
      res.set_content("{}", "application/x-amz-json-1.0");
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    while (!server_.is_running()) std::this_thread::yield();
  }
  ~StepFunctionsServer() {
    server_.stop();
    thread_.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  // SendTaskSuccess/Failure requests received per token, accepted or refused.
  std::map<std::string, int> callbacks() const {
    std::lock_guard lock(mutex_);
    return callbacks_;
  }
  // SendTaskSuccess/Failure requests accepted per token (each closed its task).
  std::map<std::string, int> accepted() const {
    std::lock_guard lock(mutex_);
    return accepted_;
  }
  int heartbeats() const {
    std::lock_guard lock(mutex_);
    return heartbeats_;
  }
  void fail(const std::string& token) {
    std::lock_guard lock(mutex_);
    failing_.insert(token);
  }

 private:
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
  mutable std::mutex mutex_;
  std::map<std::string, int> callbacks_;
  std::map<std::string, int> accepted_;
  std::set<std::string> closed_;
  std::set<std::string> failing_;
  int heartbeats_ = 0;
};

struct SimulatedCrash {};

class ExactlyOnceTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (MotoServer::unavailable_reason()) return;
    try {
      moto_ = std::make_unique<MotoServer>(MotoOptions{});
    } catch (const std::exception& e) {
      start_error_ = e.what();
    }
  }
  static void TearDownTestSuite() { moto_.reset(); }

  void SetUp() override {
    RSTASKER_SKIP_IF_UNAVAILABLE(MotoServer::unavailable_reason());
    ASSERT_NE(moto_, nullptr) << "moto did not start: " << start_error_;
    transport_ = std::make_shared<LostReplyTransport>(aws::make_curl_transport());
    auto dynamo =
        std::make_shared<const services::DynamoDb>(std::make_shared<const aws::JsonClient>(
            aws::protocol::kDynamoDb,
            aws::resolve_endpoint(aws::service::kDynamoDb, moto_->region(), moto_->env()),
            moto_->credentials(), transport_));
    table_ = "exactly-once-" + random_uuid().substr(0, 8);
    dynamo->create_table(state_table_definition(table_), context());
    state_ = make_dynamodb_state_table(dynamo, table_);
    step_functions_ = services::make_step_functions(std::make_shared<const aws::JsonClient>(
        aws::protocol::kStepFunctions, aws::Endpoint{sfn_server_.url(), moto_->region(), "states"},
        moto_->credentials(), transport_,
        aws::RetryPolicy{2, std::chrono::milliseconds(1), std::chrono::milliseconds(5)}));
    responder_ = services::make_cfn_responder(
        transport_,
        aws::RetryPolicy{2, std::chrono::milliseconds(1), std::chrono::milliseconds(5)});
  }

  // A fresh sandbox: new tasker over the same services.
  std::unique_ptr<Tasker> sandbox(CompletionOptions options = {}) {
    Config config;
    config.target = {"cluster-1", "", "dev", "admin", ""};
    config.table_name = table_;
    config.region = moto_->region();
    return std::make_unique<Tasker>(
        config, Dependencies{redshift_, state_, step_functions_, responder_}, std::move(options));
  }

  static aws::CallContext context(std::chrono::milliseconds left = std::chrono::seconds(60)) {
    return {Deadline::after(left), {}};
  }

  struct Started {
    std::string name;
    std::string id;
    std::string token;  // "" for a CloudFormation waiter
  };

  Started start_sfn(int i) {
    std::string token = "TOKEN-" + std::to_string(i) + "-" + random_uuid();
    Json out = sandbox()->handle(
        {{"sqlStatement", "select " + std::to_string(i)},
         {"executionArn", "arn:aws:states:us-east-1:123456789012:execution:M:run-" + random_uuid()},
         {"taskToken", token}},
        context());
    return {out["StatementName"], out["Id"], token};
  }

  Started start_cfn(int i) {
    Json request = {
        {"RequestType", "Create"},
        {"ResponseURL", receiver_.url("/r/" + std::to_string(i) + "?X-Amz-Signature=s")},
        {"StackId", "arn:aws:cloudformation:us-east-1:123456789012:stack/s/1"},
        {"RequestId", random_uuid()},
        {"LogicalResourceId", "Schema" + std::to_string(i)},
        {"ResourceType", "Custom::RedshiftSql"},
        {"ResourceProperties", {{"CreateSql", "create schema s" + std::to_string(i)}}}};
    Json out = sandbox()->handle(request, context());
    EXPECT_EQ(out["Status"], "STARTED");
    return {out["StatementName"], out["StatementId"], ""};
  }

  static Json completion(const Started& s, const std::string& message_id,
                         const std::string& state = "FINISHED") {
    Json body = {{"version", "0"},
                 {"id", random_uuid()},
                 {"detail-type", "Redshift Data Statement Status Change"},
                 {"source", "aws.redshift-data"},
                 {"detail",
                  {{"statementName", s.name},
                   {"statementId", s.id},
                   {"state", state},
                   {"redshiftQueryId", -1},
                   {"rows", 1}}}};
    return {{"messageId", message_id}, {"eventSource", "aws:sqs"}, {"body", dump_json(body)}};
  }

  static std::vector<std::string> failed(const Json& response) {
    std::vector<std::string> ids;
    for (const auto& f : response.at("batchItemFailures")) ids.push_back(f.at("itemIdentifier"));
    return ids;
  }

  // Delivers `batch` until every record is acknowledged, as SQS redelivery would.
  void deliver_until_acknowledged(Json batch) {
    for (int round = 0; round < 5 && !batch["Records"].empty(); ++round) {
      auto retry = failed(sandbox()->handle(batch, context()));
      Json records = Json::array();
      for (const auto& r : batch["Records"]) {
        if (std::find(retry.begin(), retry.end(), r["messageId"]) != retry.end()) {
          records.push_back(r);
        }
      }
      batch["Records"] = records;
    }
    EXPECT_TRUE(batch["Records"].empty()) << "never acknowledged: " << batch.dump();
  }

  std::size_t responses_for(const std::string& path) {
    std::size_t n = 0;
    for (const auto& r : receiver_.received()) n += r.target.starts_with(path) ? 1 : 0;
    return n;
  }

  static inline std::unique_ptr<MotoServer> moto_;
  static inline std::string start_error_;
  // The servers outlive the clients (declared first, destroyed last): the clients' kept-alive
  // connections close first, so stopping a server does not wait for them to time out.
  StepFunctionsServer sfn_server_;
  CfnReceiver receiver_;
  // Every call passes it; a test makes it lose chosen replies after the server applied them.
  std::shared_ptr<LostReplyTransport> transport_;
  std::string table_;
  std::shared_ptr<StateTable> state_;
  std::shared_ptr<FakeRedshiftData> redshift_ = std::make_shared<FakeRedshiftData>();
  std::shared_ptr<services::StepFunctions> step_functions_;
  std::shared_ptr<services::CfnResponder> responder_;
};

TEST_F(ExactlyOnceTest, EveryCompletionReplayedThreeTimesInARowCallsBackOnce) {
  std::vector<Started> sfn, cfn;
  for (int i = 0; i < 3; ++i) sfn.push_back(start_sfn(i));
  for (int i = 0; i < 3; ++i) cfn.push_back(start_cfn(i));
  for (int copy = 0; copy < 3; ++copy) {
    Json records = Json::array();
    for (const auto& s : sfn) records.push_back(completion(s, s.id + std::to_string(copy)));
    for (const auto& s : cfn) records.push_back(completion(s, s.id + std::to_string(copy)));
    deliver_until_acknowledged({{"Records", records}});
  }
  auto counted = sfn_server_.callbacks();
  for (const auto& s : sfn) EXPECT_EQ(counted[s.token], 1) << s.name;
  for (int i = 0; i < 3; ++i) EXPECT_EQ(responses_for("/r/" + std::to_string(i) + "?"), 1u) << i;
  for (const auto& r : receiver_.received()) EXPECT_TRUE(r.problems.empty()) << r.body;
}

TEST_F(ExactlyOnceTest, EveryCompletionDeliveredThreeTimesAtOnceCallsBackOnce) {
  std::vector<Started> started;
  for (int i = 0; i < 4; ++i) started.push_back(start_sfn(10 + i));
  for (int i = 0; i < 4; ++i) started.push_back(start_cfn(10 + i));
  std::vector<std::thread> threads;
  for (int copy = 0; copy < 3; ++copy) {
    threads.emplace_back([&, copy] {
      Json records = Json::array();
      for (const auto& s : started) records.push_back(completion(s, s.id + std::to_string(copy)));
      deliver_until_acknowledged({{"Records", records}});
    });
  }
  for (auto& t : threads) t.join();
  auto counted = sfn_server_.callbacks();
  for (int i = 0; i < 4; ++i) EXPECT_EQ(counted[started[i].token], 1) << started[i].name;
  for (int i = 0; i < 4; ++i) {
    EXPECT_EQ(responses_for("/r/" + std::to_string(10 + i) + "?"), 1u) << 10 + i;
  }
}

TEST_F(ExactlyOnceTest, ABatchReportsExactlyTheRecordWhoseCallbackFails) {
  Started a = start_sfn(20), b = start_sfn(21), c = start_sfn(22);
  sfn_server_.fail(b.token);
  Json batch = {{"Records", {completion(a, "ma"), completion(b, "mb"), completion(c, "mc")}}};
  EXPECT_EQ(failed(sandbox()->handle(batch, context())), std::vector<std::string>{"mb"});
  auto counted = sfn_server_.callbacks();
  EXPECT_EQ(counted[a.token], 1);
  EXPECT_EQ(counted[c.token], 1);
  EXPECT_GE(counted[b.token], 1) << "b's callback was tried (and refused with a 500)";
}

TEST_F(ExactlyOnceTest, ACallbackWhoseReplyWasLostIsDeliveredNotAWaiterGone) {
  const std::string token = "TOKEN-lost-" + random_uuid();
  transport_->lose_reply("SendTaskSuccess");
  // The retry meets the task our first attempt closed: delivered, not an error.
  EXPECT_NO_THROW(step_functions_->send_task_success(token, "{}", context()));
  EXPECT_EQ(sfn_server_.callbacks()[token], 2);
  EXPECT_EQ(sfn_server_.accepted()[token], 1);
  // Without a lost attempt, a closed task is still reported as gone.
  try {
    step_functions_->send_task_success(token, "{}", context());
    ADD_FAILURE() << "a closed task accepted a second callback";
  } catch (const Error& e) {
    EXPECT_TRUE(services::is_waiter_gone(e)) << e.what();
  }
}

// Every write of the flows (state table, Step Functions callbacks) is applied and its first reply
// lost; the retries meet their own writes. Each statement still calls back exactly once and ends
// DONE, and a redelivery is a duplicate.
TEST_F(ExactlyOnceTest, EveryWriteLosingItsFirstReplyStillCallsBackOnce) {
  transport_->lose_first_reply_of_each(
      {"PutItem", "UpdateItem", "DeleteItem", "SendTaskSuccess", "SendTaskFailure"});
  std::vector<Started> sfn, cfn;
  for (int i = 40; i < 43; ++i) sfn.push_back(start_sfn(i));
  for (int i = 40; i < 42; ++i) cfn.push_back(start_cfn(i));
  Json records = Json::array();
  for (const auto* group : {&sfn, &cfn}) {
    for (const auto& s : *group) records.push_back(completion(s, "m-" + s.id));
  }
  EXPECT_TRUE(failed(sandbox()->handle({{"Records", records}}, context())).empty());
  deliver_until_acknowledged({{"Records", records}});  // a redelivery of the whole batch
  EXPECT_GE(transport_->lost(), 20) << "each start and completion loses several replies";
  for (const auto& s : sfn) {
    EXPECT_EQ(sfn_server_.accepted()[s.token], 1) << s.name;
    EXPECT_EQ(state_->get(*StatementKey::from_statement_name(s.name), context())->state,
              RecordState::kDone);
  }
  for (int i = 40; i < 42; ++i) {
    EXPECT_EQ(responses_for("/r/" + std::to_string(i) + "?"), 1u) << i;
  }
  EXPECT_EQ(redshift_->executed().size(), sfn.size() + cfn.size()) << "each SQL ran once";
}

// A Step Functions Retry after Lambda.ServiceException may race the attempt it replaces: starts
// with one idempotency key, at once and after each other, with the first reply of every write
// lost, run the SQL once, and only the token that waits last is answered, once; a repeat after
// the end is answered at once.
TEST_F(ExactlyOnceTest, StartsRepeatedWithOneIdempotencyKeyRunTheSqlOnce) {
  transport_->lose_first_reply_of_each({"PutItem", "UpdateItem", "SendTaskSuccess"});
  const std::string arn =
      "arn:aws:states:us-east-1:123456789012:execution:M:keyed-" + random_uuid().substr(0, 8);
  auto event = [&](const std::string& token) {
    return Json{{"sqlStatement", "select 50"},
                {"executionArn", arn},
                {"taskToken", token},
                {"idempotencyKey", arn + "#Run#2026-12-02T10:00:00.000Z"}};
  };
  std::vector<Json> outs(5);
  std::vector<std::thread> threads;
  for (int i = 0; i < 5; ++i) {
    threads.emplace_back([&, i] {
      try {
        outs[i] = sandbox()->handle(event("TOKEN-K-" + std::to_string(i)), context());
      } catch (const std::exception& e) {
        ADD_FAILURE() << "attempt " << i << ": " << e.what();
      }
    });
  }
  for (auto& t : threads) t.join();
  ASSERT_EQ(redshift_->executed().size(), 1u) << "the SQL ran more than once";
  for (const auto& out : outs) EXPECT_EQ(out.value("Id", ""), outs[0].value("Id", ""));

  Json last = sandbox()->handle(event("TOKEN-K-last"), context());
  EXPECT_EQ(last["Id"], outs[0]["Id"]);
  redshift_->set_status(last["Id"], "FINISHED");
  deliver_until_acknowledged(
      {{"Records", {completion({last["StatementName"], last["Id"], ""}, "m-keyed")}}});
  auto accepted = sfn_server_.accepted();
  EXPECT_EQ(accepted["TOKEN-K-last"], 1);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(accepted["TOKEN-K-" + std::to_string(i)], 0) << i;

  Json after = sandbox()->handle(event("TOKEN-K-after"), context());
  EXPECT_EQ(after["Id"], outs[0]["Id"]);
  EXPECT_EQ(sfn_server_.accepted()["TOKEN-K-after"], 1) << "answered at once";
  EXPECT_EQ(redshift_->executed().size(), 1u);
}

class CrashAfter : public ExactlyOnceTest, public ::testing::WithParamInterface<std::string> {};

TEST_P(CrashAfter, TheRedeliveryStillCallsBackExactlyOnce) {
  Started sfn = start_sfn(30);
  Started cfn = start_cfn(30);
  CompletionOptions crashing;
  // The lease (deadline + grace) is already over when the redelivery comes, as it is in
  // production after the queue's visibility timeout.
  crashing.claim_grace = std::chrono::milliseconds(-61000);
  crashing.min_time_to_start = std::chrono::milliseconds(0);
  crashing.max_parallel = 1;
  crashing.fault_hook = [step = GetParam()](std::string_view at) {
    if (at == step) throw SimulatedCrash{};
  };
  // The CloudFormation statement fails, so its answer carries DescribeStatement's error text.
  redshift_->set_status(cfn.id, "FAILED", "ERROR: schema \"s30\" already exists");
  for (const Started* s : {&sfn, &cfn}) {
    Json batch = {{"Records", {completion(*s, "m-" + s->id, s == &cfn ? "FAILED" : "FINISHED")}}};
    EXPECT_THROW(sandbox(crashing)->handle(batch, context()), SimulatedCrash);
    deliver_until_acknowledged(batch);
    deliver_until_acknowledged(batch);  // and a late duplicate
  }
  EXPECT_EQ(sfn_server_.callbacks()[sfn.token], 1) << "crash after " << GetParam();
  // A pre-signed response URL cannot be asked whether it got the answer: after a crash between
  // the PUT and the record being marked done, the redelivery PUTs again. It must be the
  // identical body, so S3 just stores the same object again.
  std::vector<std::string> bodies;
  for (const auto& r : receiver_.received()) {
    if (r.target.starts_with("/r/30?")) bodies.push_back(r.body);
  }
  ASSERT_EQ(bodies.size(), GetParam() == "called_back" ? 2u : 1u) << "crash after " << GetParam();
  for (const auto& body : bodies) EXPECT_EQ(body, bodies[0]);
  EXPECT_NE(bodies[0].find("already exists"), std::string::npos) << bodies[0];
}

INSTANTIATE_TEST_SUITE_P(EachStep, CrashAfter,
                         ::testing::Values("claimed", "called_back", "finished"));

}  // namespace
}  // namespace rstasker::tasker
