// The action API over in-memory fakes: what is recorded, what is started, what is returned.
#include "rstasker/tasker/tasker.hpp"

#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <thread>

#include "rstasker/aws/http.hpp"
#include "rstasker/common/error.hpp"
#include "rstasker/services/redshift_data.hpp"
#include "support/fakes.hpp"

namespace rstasker::tasker {
namespace {

using rstasker::testing::FakeRedshiftData;
using rstasker::testing::FakeStepFunctions;
using rstasker::testing::MemoryStateTable;

const char* kExecutionArn = "arn:aws:states:eu-west-1:012345678910:execution:Machine:run-1";

struct SimulatedDeath {};

struct TaskerTest : ::testing::Test {
  std::shared_ptr<FakeRedshiftData> redshift = std::make_shared<FakeRedshiftData>();
  std::shared_ptr<MemoryStateTable> state = std::make_shared<MemoryStateTable>();
  std::shared_ptr<FakeStepFunctions> sfn = std::make_shared<FakeStepFunctions>();
  std::shared_ptr<rstasker::testing::FakeCfnResponder> cfn =
      std::make_shared<rstasker::testing::FakeCfnResponder>();
  Tasker tasker{make_config(), Dependencies{redshift, state, sfn, cfn}};
  aws::CallContext context{Deadline::after(std::chrono::seconds(30)), {}};

  static Config make_config() {
    Config c = rstasker::testing::test_config();
    c.ttl_days = 3;
    return c;
  }

  Error error_of(const Json& event) {
    try {
      tasker.handle(event, context);
    } catch (const Error& e) {
      return e;
    }
    ADD_FAILURE() << "no error for " << event.dump();
    return Error("none", "");
  }
};

TEST_F(TaskerTest, CallbackExecuteRecordsTheWaiterAndStartsWithAnEvent) {
  Json out = tasker.handle({{"sqlStatement", "call sp(1)"},
                            {"executionArn", kExecutionArn},
                            {"taskToken", "TOKEN-1234"}},
                           context);
  ASSERT_EQ(redshift->executed().size(), 1u);
  const services::ExecuteRequest sent = redshift->executed()[0];
  EXPECT_TRUE(sent.with_event);
  EXPECT_EQ(sent.sqls, std::vector<std::string>{"call sp(1)"});
  EXPECT_EQ(sent.target.cluster_identifier, "cluster-1");
  EXPECT_EQ(sent.target.db_user, "admin");
  EXPECT_FALSE(sent.client_token.empty());
  EXPECT_LE(sent.client_token.size(), 64u);

  auto records = state->records();
  ASSERT_EQ(records.size(), 1u);
  const StatementRecord& r = records[0];
  EXPECT_EQ(r.key.id, kExecutionArn);
  EXPECT_EQ(sent.statement_name, r.key.statement_name());
  EXPECT_EQ(out["StatementName"], r.key.statement_name());
  EXPECT_EQ(r.statement_id, out["Id"]);
  EXPECT_EQ(r.state, RecordState::kWaiting);
  EXPECT_EQ(r.waiter.kind, WaiterKind::kStepFunctions);
  EXPECT_EQ(r.waiter.task_token, "TOKEN-1234");
  // TTL: now + 3 days.
  EXPECT_NEAR(static_cast<double>(r.expires_at_s), now_epoch_seconds() + 3 * 86400.0, 5);
  EXPECT_EQ(StatementKey::from_statement_name(r.key.statement_name()), r.key);
  EXPECT_TRUE(sfn->callbacks().empty());  // the callback comes with the completion
}

TEST_F(TaskerTest, FireAndForgetWithoutExecutionWritesNoStateAndRequestsNoEvent) {
  Json out = tasker.handle({{"action", "executeStatement"}, {"sqlStatement", "vacuum"}}, context);
  EXPECT_TRUE(out.contains("Id"));
  EXPECT_EQ(state->write_count(), 0u);
  ASSERT_EQ(redshift->executed().size(), 1u);
  EXPECT_FALSE(redshift->executed()[0].with_event);
  EXPECT_TRUE(redshift->executed()[0].statement_name.starts_with("adhoc:"));
}

TEST_F(TaskerTest, ExecutionWithoutTokenIsRememberedForLatestButNotWaitedOn) {
  tasker.handle({{"sqlStatement", "select 1"}, {"executionArn", kExecutionArn}}, context);
  auto records = state->records();
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].waiter.kind, WaiterKind::kNone);
  EXPECT_FALSE(records[0].tracked());
  EXPECT_FALSE(redshift->executed()[0].with_event);
}

TEST_F(TaskerTest, OverridesBatchAndParametersReachTheDataApi) {
  tasker.handle({{"sqlStatements", {"insert into t values (1)", "insert into t values (2)"}},
                 {"workgroupName", "wg"},
                 {"database", "analytics"}},
                context);
  tasker.handle({{"sqlStatement", "select :x"},
                 {"parameters", {{{"name", "x"}, {"value", "5"}}}},
                 {"secretArn", "arn:aws:secretsmanager:eu-west-1:1:secret:s"}},
                context);
  auto sent = redshift->executed();
  ASSERT_EQ(sent.size(), 2u);
  EXPECT_EQ(sent[0].sqls.size(), 2u);
  EXPECT_EQ(sent[0].target.workgroup_name, "wg");
  EXPECT_EQ(sent[0].target.cluster_identifier, "");
  EXPECT_EQ(sent[0].target.database, "analytics");
  ASSERT_EQ(sent[1].parameters.size(), 1u);
  EXPECT_EQ(sent[1].parameters[0].value, "5");
  EXPECT_EQ(sent[1].target.db_user, "");
  EXPECT_EQ(sent[1].target.secret_arn, "arn:aws:secretsmanager:eu-west-1:1:secret:s");
}

TEST_F(TaskerTest, AFailedStartIsRecordedAndTheAwsErrorReturned) {
  redshift->fail_next_execute(Error("ActiveStatementsExceededException", "too many", 400, false));
  Error e = error_of(
      {{"sqlStatement", "select 1"}, {"executionArn", kExecutionArn}, {"taskToken", "TOK-123456"}});
  EXPECT_EQ(e.name(), "ActiveStatementsExceededException");
  auto records = state->records();
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].state, RecordState::kStartFailed);
  EXPECT_GT(records[0].expires_at_s, now_epoch_seconds());  // never without a TTL
  EXPECT_NE(records[0].outcome.find("ActiveStatementsExceededException"), std::string::npos);
}

TEST_F(TaskerTest, LatestResolvesTheNewestStartedStatementOfTheExecution) {
  Json first =
      tasker.handle({{"sqlStatement", "select 1"}, {"executionArn", kExecutionArn}}, context);
  Json second =
      tasker.handle({{"sqlStatement", "select 2"}, {"executionArn", kExecutionArn}}, context);
  redshift->fail_next_execute(Error("ValidationException", "bad", 400));
  EXPECT_THROW(
      tasker.handle({{"sqlStatement", "select 3"}, {"executionArn", kExecutionArn}}, context),
      Error);
  Json described = tasker.handle(
      {{"action", "describeStatement"}, {"statementId", "LATEST"}, {"executionArn", kExecutionArn}},
      context);
  EXPECT_EQ(described["Id"], second["Id"]);
  EXPECT_NE(described["Id"], first["Id"]);
  tasker.handle(
      {{"action", "cancelStatement"}, {"statementId", "LATEST"}, {"executionArn", kExecutionArn}},
      context);
  EXPECT_EQ(redshift->calls().back(), "CancelStatement " + second["Id"].get<std::string>());
}

// A statement that started but whose id could not be written is still the newest: LATEST finds
// it by its statement name rather than acting on the statement before it, and reconcile writes
// the id it finds back into the record.
TEST_F(TaskerTest, LatestFindsTheNewestStatementEvenWhenItsIdWasNotRecorded) {
  Json first =
      tasker.handle({{"sqlStatement", "select 1"}, {"executionArn", kExecutionArn}}, context);
  state->before_operation = [](std::string_view op) {
    if (op == "set_statement_id") throw Error("InternalServerError", "ddb down", 500, true);
  };
  Json second = tasker.handle(
      {{"sqlStatement", "select 2"}, {"executionArn", kExecutionArn}, {"taskToken", "TOKEN-2"}},
      context);
  state->before_operation = nullptr;
  ASSERT_NE(second["Id"], first["Id"]);

  Json described = tasker.handle(
      {{"action", "describeStatement"}, {"statementId", "LATEST"}, {"executionArn", kExecutionArn}},
      context);
  EXPECT_EQ(described["Id"], second["Id"]);
  tasker.handle(
      {{"action", "cancelStatement"}, {"statementId", "LATEST"}, {"executionArn", kExecutionArn}},
      context);
  EXPECT_EQ(redshift->calls().back(), "CancelStatement " + second["Id"].get<std::string>());

  tasker.handle({{"action", "reconcile"}, {"olderThanSeconds", 0}}, context);
  auto records = state->records();
  auto newest = std::find_if(records.begin(), records.end(), [&](const StatementRecord& r) {
    return r.key.statement_name() == second["StatementName"];
  });
  ASSERT_NE(newest, records.end());
  EXPECT_EQ(newest->statement_id, second["Id"]);
}

// A statement may run 24 hours and its completion be redelivered after that: a record with a
// waiter outlives that whatever TtlDays says (a record nobody waits for keeps TtlDays).
TEST(TaskerTtl, AWaitingRecordOutlivesItsStatementEvenWithTtlDaysOne) {
  auto redshift = std::make_shared<FakeRedshiftData>();
  auto state = std::make_shared<MemoryStateTable>();
  Config config = rstasker::testing::test_config();
  config.ttl_days = 1;
  Tasker tasker{config, Dependencies{redshift, state, std::make_shared<FakeStepFunctions>(),
                                     std::make_shared<rstasker::testing::FakeCfnResponder>()}};
  aws::CallContext context{Deadline::after(std::chrono::seconds(30)), {}};
  tasker.handle(
      {{"sqlStatement", "select 1"}, {"executionArn", kExecutionArn}, {"taskToken", "TOKEN-1"}},
      context);
  tasker.handle({{"sqlStatement", "select 2"}, {"executionArn", kExecutionArn}}, context);
  auto records = state->records();
  ASSERT_EQ(records.size(), 2u);
  for (const StatementRecord& r : records) {
    const double days = (static_cast<double>(r.expires_at_s) - now_epoch_seconds()) / 86400.0;
    if (r.tracked()) {
      EXPECT_GE(days, 2.0 - 0.001) << "a waiting record must outlive its statement";
    } else {
      EXPECT_NEAR(days, 1.0, 0.001);
    }
  }
}

// Custom::RedshiftUser puts password hashes into the SQL, which the Data API keeps as the
// statement's QueryString for 24 hours: describeStatement never returns them.
TEST_F(TaskerTest, DescribeStatementNeverReturnsPasswordLiterals) {
  Json started = tasker.handle({{"sqlStatement", "select 1"}}, context);
  const std::string id = started["Id"];
  const std::string hash = "md5153c434b4b77c89e6b94f12c5393af5b";
  redshift->set_describe_response(
      id, {{"Id", id},
           {"Status", "FINISHED"},
           {"QueryString", "CREATE USER \"etl\" PASSWORD '" + hash + "' CREATEDB"},
           {"SubStatements",
            {{{"Id", id + ":1"},
              {"QueryString", "alter user \"etl\" password\n\t 'sha256|" + std::string(64, 'a') +
                                  "|" + std::string(64, 'b') + "' valid until 'x'"}},
             {{"Id", id + ":2"}, {"QueryString", "ALTER USER \"etl\" PASSWORD DISABLE"}}}}});
  Json described = tasker.handle({{"action", "describeStatement"}, {"statementId", id}}, context);
  const std::string text = described.dump();
  EXPECT_EQ(text.find(hash), std::string::npos) << text;
  EXPECT_EQ(text.find(std::string(64, 'a')), std::string::npos) << text;
  EXPECT_EQ(described["QueryString"], "CREATE USER \"etl\" PASSWORD '***' CREATEDB");
  EXPECT_EQ(described["SubStatements"][0]["QueryString"],
            "alter user \"etl\" password\n\t '***' valid until 'x'");
  EXPECT_EQ(described["SubStatements"][1]["QueryString"], "ALTER USER \"etl\" PASSWORD DISABLE");
}

TEST_F(TaskerTest, LatestWithNothingStartedIsPreviousExecutionNotFound) {
  Error e = error_of({{"action", "describeStatement"},
                      {"statementId", "LATEST"},
                      {"executionArn", kExecutionArn}});
  EXPECT_EQ(e.name(), "PreviousExecutionNotFound");
  EXPECT_NE(e.message().find(kExecutionArn), std::string::npos);
}

TEST_F(TaskerTest, GetStatementResultPassesNextToken) {
  Json started = tasker.handle({{"sqlStatement", "select 1"}}, context);
  std::string id = started["Id"];
  Json page1 = tasker.handle({{"action", "getStatementResult"}, {"statementId", id}}, context);
  ASSERT_EQ(page1["NextToken"], "page-2");
  Json page2 = tasker.handle(
      {{"action", "getStatementResult"}, {"statementId", id}, {"nextToken", page1["NextToken"]}},
      context);
  EXPECT_EQ(page2["Records"][0][0]["longValue"], 2);
  EXPECT_FALSE(page2.contains("NextToken"));
  EXPECT_EQ(redshift->calls().back(), "GetStatementResult " + id + " page-2");
}

TEST_F(TaskerTest, ServiceErrorsKeepTheirAwsName) {
  Error e = error_of({{"action", "describeStatement"}, {"statementId", "nope"}});
  EXPECT_EQ(e.name(), "ResourceNotFoundException");
}

TEST_F(TaskerTest, InvalidEventsTouchNothing) {
  for (const Json& event :
       {Json({{"action", "executeStatement"}}), Json({{"sqlStatement", 42}}),
        Json({{"action", "describeStatement"}, {"statementId", "LATEST"}}),
        Json({{"sqlStatement", "select 1"}, {"taskToken", "t"}}), Json::array({1}), Json::object(),
        Json({{"sqlStatement", "x"},
              {"clusterIdentifier", "c"},
              {"dbUser", "u"},
              {"secretArn", "s"}})}) {
    EXPECT_EQ(error_of(event).name(), "InvalidRequest") << event.dump();
  }
  EXPECT_EQ(redshift->call_count(), 0u);
  EXPECT_EQ(state->write_count(), 0u);
}

TEST_F(TaskerTest, HandlePayloadRejectsBadTextBeforeAnything) {
  const std::string deep = R"({"sqlStatement":)" + std::string(5000, '[');
  for (std::string_view payload :
       {std::string_view("[1,2"), std::string_view("{\"a\":\"\xff\"}"), std::string_view(""),
        std::string_view("null"), std::string_view("{\"sqlStatement\":\"select '\xed\xa0\x80'\"}"),
        std::string_view(deep),
        std::string_view(R"({"action":"CancelStatement","statementId":"x"})"),
        std::string_view(R"({"action":"cancelStatement","statementId":"LATEST"})"),
        std::string_view(R"({"sqlStatements":"select 1","executionArn":"x"})"),
        std::string_view(R"({"sqlStatement":"select 1","taskToken":"TOKEN-ABC-123"})")}) {
    try {
      tasker.handle_payload(payload, context);
      ADD_FAILURE() << payload;
    } catch (const Error& e) {
      EXPECT_EQ(e.name(), "InvalidRequest");
    }
  }
  EXPECT_EQ(redshift->call_count(), 0u);
  EXPECT_EQ(state->write_count(), 0u);
}

TEST_F(TaskerTest, SingletonRefusesWhileTheSameSqlRunsAndAllowsItOnceFinished) {
  Json event = {{"action", "executeSingletonStatement"},
                {"sqlStatement", "call sp_nightly()"},
                {"executionArn", kExecutionArn},
                {"taskToken", "TOKEN-A-123"}};
  Json first = tasker.handle(event, context);
  EXPECT_EQ(error_of(event).name(), "ConcurrentExecution");
  // A different SQL is not blocked.
  Json other = event;
  other["sqlStatement"] = "call sp_other()";
  EXPECT_NO_THROW(tasker.handle(other, context));
  // Once the holder is terminal, the lock is taken over.
  redshift->set_status(first["Id"], "FINISHED");
  Json again = tasker.handle(event, context);
  EXPECT_NE(again["Id"], first["Id"]);
  auto locks = state->locks();
  auto holder = std::find_if(locks.begin(), locks.end(),
                             [&](const SingletonLock& l) { return l.statement_id == again["Id"]; });
  EXPECT_NE(holder, locks.end());
}

// The seed's rule: a singleton does not start while a statement with the same SQL text and
// parameters runs on the same target, whoever started it (here a plain executeStatement).
TEST_F(TaskerTest, SingletonRefusesWhileAnyStatementRunsTheSameSqlAndParameters) {
  const Json d1 = {{{"name", "d"}, {"value", "1"}}};
  Json plain =
      tasker.handle({{"sqlStatement", "call sp_nightly(:d)"}, {"parameters", d1}}, context);
  Json singleton = {{"action", "executeSingletonStatement"},
                    {"sqlStatement", "call sp_nightly(:d)"},
                    {"parameters", d1},
                    {"executionArn", kExecutionArn}};
  Error refused = error_of(singleton);
  EXPECT_EQ(refused.name(), "ConcurrentExecution");
  EXPECT_NE(refused.message().find(plain["Id"].get<std::string>()), std::string::npos)
      << refused.message();
  EXPECT_TRUE(state->locks().empty()) << "a refused singleton keeps no lock";
  // Other parameters, or another database, are not the same statement.
  Json other_day = singleton;
  other_day["parameters"][0]["value"] = "2";
  EXPECT_NO_THROW(tasker.handle(other_day, context));
  Json elsewhere = singleton;
  elsewhere["database"] = "other_db";
  EXPECT_NO_THROW(tasker.handle(elsewhere, context));
  // Once it has finished, the singleton runs.
  redshift->set_status(plain["Id"], "FINISHED");
  EXPECT_NO_THROW(tasker.handle(singleton, context));
}

// The lock is per SQL text and parameters: the same procedure for two different days may run at
// once, the same day twice may not.
TEST_F(TaskerTest, SingletonLockKeyIncludesParameters) {
  auto singleton = [&](const char* day, int i) {
    return Json{{"action", "executeSingletonStatement"},
                {"sqlStatement", "call sp_load(:day)"},
                {"parameters", {{{"name", "day"}, {"value", day}}}},
                {"executionArn", std::string(kExecutionArn) + std::to_string(i)}};
  };
  EXPECT_NO_THROW(tasker.handle(singleton("2026-12-01", 1), context));
  EXPECT_NO_THROW(tasker.handle(singleton("2026-12-02", 2), context));
  EXPECT_EQ(error_of(singleton("2026-12-01", 3)).name(), "ConcurrentExecution");
  EXPECT_EQ(state->locks().size(), 2u);
}

TEST_F(TaskerTest, SingletonRaceStartsExactlyOne) {
  constexpr int kCallers = 20;
  std::atomic<int> started{0};
  std::atomic<int> refused{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < kCallers; ++i) {
    threads.emplace_back([&, i] {
      try {
        tasker.handle({{"action", "executeSingletonStatement"},
                       {"sqlStatement", "call sp_once()"},
                       {"executionArn", std::string(kExecutionArn) + std::to_string(i)}},
                      context);
        ++started;
      } catch (const Error& e) {
        if (e.name() == "ConcurrentExecution") ++refused;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(started.load(), 1);
  EXPECT_EQ(refused.load(), kCallers - 1);
  EXPECT_EQ(redshift->executed().size(), 1u);
}

TEST_F(TaskerTest, SingletonStartFailureReleasesTheLock) {
  Json event = {{"action", "executeSingletonStatement"}, {"sqlStatement", "call sp()"}};
  redshift->fail_next_execute(Error("ValidationException", "bad sql", 400));
  EXPECT_EQ(error_of(event).name(), "ValidationException");
  EXPECT_TRUE(state->locks().empty());
  EXPECT_NO_THROW(tasker.handle(event, context));
}

TEST_F(TaskerTest, StateTableFailureBeforeStartStartsNothing) {
  state->before_operation = [](std::string_view op) {
    if (op == "insert") throw Error("InternalServerError", "ddb down", 500, true);
  };
  Error e = error_of(
      {{"sqlStatement", "select 1"}, {"executionArn", kExecutionArn}, {"taskToken", "TOKEN-99"}});
  EXPECT_EQ(e.name(), "InternalServerError");
  EXPECT_TRUE(redshift->executed().empty());
}

TEST_F(TaskerTest, OneStatementInSqlStatementsIsSentAsABatch) {
  tasker.handle({{"sqlStatements", {"insert into t values (1)"}}}, context);
  tasker.handle({{"sqlStatement", "insert into t values (2)"}}, context);
  auto sent = redshift->executed();
  ASSERT_EQ(sent.size(), 2u);
  EXPECT_TRUE(sent[0].batch);
  EXPECT_EQ(services::execute_operation(sent[0]), "BatchExecuteStatement");
  Json body = services::execute_request_body(sent[0]);
  EXPECT_EQ(body["Sqls"], Json::array({"insert into t values (1)"}));
  EXPECT_FALSE(body.contains("Sql"));
  EXPECT_FALSE(sent[1].batch);
  EXPECT_EQ(services::execute_operation(sent[1]), "ExecuteStatement");
}

// Answers every request with a statement id and keeps the requests.
class CapturingTransport : public aws::HttpTransport {
 public:
  aws::HttpResponse send(const aws::HttpRequest& request, const Deadline& /*deadline*/) override {
    requests.push_back(request);
    aws::HttpResponse response;
    response.status = 200;
    response.body = R"({"Id":"d9b6c0c9-0000-4000-8000-000000000001"})";
    return response;
  }
  std::vector<aws::HttpRequest> requests;
};

TEST(RedshiftDataClient, ABatchOfOneIsBatchExecuteStatementOnTheWire) {
  auto transport = std::make_shared<CapturingTransport>();
  auto client = std::make_shared<const aws::JsonClient>(
      aws::protocol::kRedshiftData,
      aws::Endpoint{"https://redshift-data.eu-west-1.amazonaws.com", "eu-west-1", "redshift-data"},
      aws::Credentials{"AKIDEXAMPLE", "secret", ""}, transport);
  auto data = services::make_redshift_data(client);
  aws::CallContext context{Deadline::after(std::chrono::seconds(30)), {}};
  services::ExecuteRequest request;
  request.target.cluster_identifier = "cluster-1";
  request.sqls = {"insert into t values (1)"};
  request.batch = true;
  data->execute(request, context);
  request.batch = false;
  data->execute(request, context);
  ASSERT_EQ(transport->requests.size(), 2u);
  const std::string* batch_target = transport->requests[0].header("X-Amz-Target");
  ASSERT_NE(batch_target, nullptr);
  EXPECT_EQ(*batch_target, "RedshiftData.BatchExecuteStatement");
  Json batch_body = Json::parse(transport->requests[0].body);
  EXPECT_EQ(batch_body["Sqls"], Json::array({"insert into t values (1)"}));
  const std::string* single_target = transport->requests[1].header("X-Amz-Target");
  ASSERT_NE(single_target, nullptr);
  EXPECT_EQ(*single_target, "RedshiftData.ExecuteStatement");
  EXPECT_EQ(Json::parse(transport->requests[1].body)["Sql"], "insert into t values (1)");
}

TEST(CallContext, AnInvocationKeepsAReserveBeforeItsHardDeadline) {
  auto context = aws::CallContext::for_invocation(Deadline::after(std::chrono::seconds(60)),
                                                  "Root=1-5759e988-bd862e3fe1be46a994272793");
  EXPECT_EQ(context.trace_id, "Root=1-5759e988-bd862e3fe1be46a994272793");
  EXPECT_LE(context.deadline.remaining(), std::chrono::seconds(59));
  EXPECT_GT(context.deadline.remaining(), std::chrono::seconds(50));
  EXPECT_GE(context.hard_deadline.remaining() - context.deadline.remaining(),
            std::chrono::milliseconds(900));
  // A short invocation keeps most of its time for the work.
  auto short_one = aws::CallContext::for_invocation(Deadline::after(std::chrono::seconds(2)));
  EXPECT_GT(short_one.deadline.remaining(), std::chrono::milliseconds(1400));
  EXPECT_FALSE(short_one.deadline.expired());
  EXPECT_TRUE(aws::CallContext::for_invocation(Deadline::none()).deadline.unbounded());
}

TEST(CallContext, CleanupMayOutlastTheWorkDeadlineButNotTheHardOne) {
  using std::chrono::milliseconds;
  using std::chrono::seconds;
  const aws::CallContext late{Deadline::after(milliseconds(0)), "trace",
                              Deadline::after(seconds(30))};
  const aws::CallContext cleanup = late.for_cleanup();
  EXPECT_FALSE(cleanup.deadline.expired());
  EXPECT_LE(cleanup.deadline.remaining(), aws::kCleanupBudget);
  EXPECT_EQ(cleanup.trace_id, "trace");
  // Never past Lambda's deadline, and leaving time to report the outcome.
  const aws::CallContext nearly_over{
      Deadline::after(milliseconds(0)), {}, Deadline::after(milliseconds(300))};
  EXPECT_LE(nearly_over.for_cleanup().deadline.remaining(), milliseconds(300));
  const aws::CallContext late_in_a_long_one{
      Deadline::after(milliseconds(0)), {}, Deadline::after(milliseconds(1500))};
  EXPECT_LE(late_in_a_long_one.for_cleanup().deadline.remaining(),
            milliseconds(1500) - aws::kReportMargin);
  EXPECT_GT(late_in_a_long_one.for_cleanup().deadline.remaining(), milliseconds(1000));
  const aws::CallContext over{
      Deadline::after(milliseconds(0)), {}, Deadline::after(milliseconds(0))};
  EXPECT_TRUE(over.for_cleanup().deadline.expired());
  // Early in an invocation, cleanup has as long as the work would have had.
  const aws::CallContext early{Deadline::after(seconds(60)), {}, Deadline::after(seconds(61))};
  EXPECT_GT(early.for_cleanup().deadline.remaining(), seconds(50));
  // Without a known hard deadline, the budget.
  const aws::CallContext unknown{Deadline::after(milliseconds(0)), {}};
  EXPECT_FALSE(unknown.for_cleanup().deadline.expired());
  EXPECT_LE(unknown.for_cleanup().deadline.remaining(), aws::kCleanupBudget);
  EXPECT_TRUE(aws::CallContext{}.for_cleanup().deadline.unbounded());
}

// Notes whether the deadline of each cleanup call had already passed.
class CleanupRecordingStateTable : public MemoryStateTable {
 public:
  void mark_start_failed(const StatementKey& key, const std::string& reason,
                         const aws::CallContext& context) override {
    note("mark_start_failed", context);
    MemoryStateTable::mark_start_failed(key, reason, context);
  }
  void release_lock(const std::string& key, const std::string& holder,
                    const aws::CallContext& context) override {
    note("release_lock", context);
    MemoryStateTable::release_lock(key, holder, context);
  }
  void set_statement_id(const StatementKey& key, const std::string& statement_id,
                        const aws::CallContext& context) override {
    note("set_statement_id", context);
    MemoryStateTable::set_statement_id(key, statement_id, context);
  }
  void set_lock_statement(const std::string& key, const std::string& holder,
                          const std::string& statement_id,
                          const aws::CallContext& context) override {
    note("set_lock_statement", context);
    MemoryStateTable::set_lock_statement(key, holder, statement_id, context);
  }
  // Operation → whether its deadline had passed when it was called.
  std::map<std::string, bool> expired;

 private:
  void note(const std::string& operation, const aws::CallContext& context) {
    expired[operation] = context.deadline.expired();
  }
};

// The Data API starts the statement, but its answer is lost to the deadline.
class LostAnswerRedshiftData : public FakeRedshiftData {
 public:
  Json execute(const services::ExecuteRequest& request, const aws::CallContext& context) override {
    FakeRedshiftData::execute(request, context);
    throw Error(error_names::kDeadlineExceeded,
                "the invocation's deadline passed while calling redshift-data");
  }
};

struct DeadlineTest : TaskerTest {
  std::shared_ptr<CleanupRecordingStateTable> recording =
      std::make_shared<CleanupRecordingStateTable>();
  // The start used up the work deadline; Lambda's own deadline is still ahead.
  aws::CallContext late{
      Deadline::after(std::chrono::milliseconds(0)), {}, Deadline::after(std::chrono::seconds(30))};
  Json singleton = {{"action", "executeSingletonStatement"},
                    {"sqlStatement", "call sp_nightly()"},
                    {"executionArn", kExecutionArn},
                    {"taskToken", "TOKEN-LATE-1234"}};
};

TEST_F(DeadlineTest, AStartThatRanOutOfTimeIsLeftWaitingWithItsLock) {
  Tasker late_tasker{make_config(), Dependencies{redshift, recording, sfn, cfn}};
  redshift->fail_next_execute(
      Error(error_names::kDeadlineExceeded,
            "the invocation's deadline passed while calling redshift-data"));
  try {
    late_tasker.handle(singleton, late);
    ADD_FAILURE() << "the start succeeded";
  } catch (const Error& e) {
    EXPECT_EQ(e.name(), "DeadlineExceeded");
  }
  // No answer is not a refusal: it looked the statement up, and finding nothing (it may not be
  // listed yet) undid nothing.
  EXPECT_EQ(redshift->calls().back().rfind("ListStatements ", 0), 0u) << redshift->calls().back();
  EXPECT_FALSE(recording->expired.contains("mark_start_failed"));
  EXPECT_FALSE(recording->expired.contains("release_lock"));
  EXPECT_EQ(recording->locks().size(), 1u) << "the statement may run: it keeps its lock";
  ASSERT_EQ(recording->records().size(), 1u);
  EXPECT_EQ(recording->records()[0].state, RecordState::kWaiting)
      << "left for the completion event or reconcile";
}

TEST_F(DeadlineTest, AStartWhoseAnswerWasLostButRanIsKept) {
  auto lost = std::make_shared<LostAnswerRedshiftData>();
  Tasker late_tasker{make_config(), Dependencies{lost, recording, sfn, cfn}};
  Json out = late_tasker.handle(singleton, late);
  ASSERT_EQ(lost->executed().size(), 1u);
  ASSERT_TRUE(out.contains("Id"));
  auto records = recording->records();
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].state, RecordState::kWaiting);
  EXPECT_EQ(records[0].statement_id, out["Id"]);
  EXPECT_FALSE(recording->expired["set_statement_id"]);
  auto locks = recording->locks();
  ASSERT_EQ(locks.size(), 1u);
  EXPECT_EQ(locks[0].statement_id, out["Id"]) << "the running statement keeps its lock";
  // So the same SQL is still refused while it runs.
  Tasker next{make_config(), Dependencies{lost, recording, sfn, cfn}};
  try {
    next.handle(singleton, context);
    ADD_FAILURE() << "a second copy started";
  } catch (const Error& e) {
    EXPECT_EQ(e.name(), "ConcurrentExecution");
  }
}

// The Data API starts the statement, then its first answer is lost (a reset connection).
class LostFirstAnswerRedshiftData : public FakeRedshiftData {
 public:
  Json execute(const services::ExecuteRequest& request, const aws::CallContext& context) override {
    Json response = FakeRedshiftData::execute(request, context);
    tokens.push_back(request.client_token);
    if (tokens.size() == 1) {
      throw Error(error_names::kNetworkError, "connection reset", 0, true);
    }
    return response;
  }
  std::vector<std::string> tokens;
};

TEST_F(TaskerTest, AStartWhoseAnswerWasLostIsAskedAgainWithTheSameToken) {
  auto lost = std::make_shared<LostFirstAnswerRedshiftData>();
  Tasker t{make_config(), Dependencies{lost, state, sfn, cfn}};
  Json out = t.handle({{"action", "executeSingletonStatement"},
                       {"sqlStatement", "call sp()"},
                       {"executionArn", kExecutionArn},
                       {"taskToken", "TOKEN-LOST-1234"}},
                      context);
  ASSERT_EQ(lost->tokens.size(), 2u);
  EXPECT_EQ(lost->tokens[0], lost->tokens[1]) << "a new token could start a second copy";
  EXPECT_EQ(lost->executed().size(), 1u) << "the SQL ran once";
  auto records = state->records();
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].state, RecordState::kWaiting);
  EXPECT_EQ(records[0].statement_id, out["Id"]);
  ASSERT_EQ(state->locks().size(), 1u);
  EXPECT_EQ(state->locks()[0].statement_id, out["Id"]);
}

TEST_F(TaskerTest, AStartAnsweredByAServerErrorIsNeverMarkedFailed) {
  // A 500 says nothing about whether the statement started (nor does its absence from
  // ListStatements, which may lag): the start is sent again rather than undone.
  redshift->fail_next_execute(Error("InternalServerException", "try again", 500, true));
  Json out = tasker.handle({{"action", "executeSingletonStatement"},
                            {"sqlStatement", "call sp()"},
                            {"executionArn", kExecutionArn},
                            {"taskToken", "TOKEN-500-1234"}},
                           context);
  EXPECT_EQ(redshift->executed().size(), 1u);
  auto records = state->records();
  ASSERT_EQ(records.size(), 1u);
  EXPECT_EQ(records[0].state, RecordState::kWaiting);
  EXPECT_EQ(records[0].statement_id, out["Id"]);
  EXPECT_EQ(state->locks().size(), 1u);
}

// A lock write that was applied but whose answer was lost, seen the way a retry sees it: the
// condition fails against the lock it wrote itself.
class LostLockAnswerStateTable : public MemoryStateTable {
 public:
  bool acquire_lock(const SingletonLock& lock, std::int64_t now_ms,
                    const aws::CallContext& context) override {
    MemoryStateTable::acquire_lock(lock, now_ms, context);
    return false;
  }
};

TEST_F(TaskerTest, ASingletonWhoseLockAnswerWasLostHoldsItsLock) {
  auto table = std::make_shared<LostLockAnswerStateTable>();
  Tasker t{make_config(), Dependencies{redshift, table, sfn, cfn}};
  Json out = t.handle({{"action", "executeSingletonStatement"},
                       {"sqlStatement", "call sp_nightly()"},
                       {"executionArn", kExecutionArn},
                       {"taskToken", "TOKEN-LOCK-1234"}},
                      context);
  EXPECT_EQ(redshift->executed().size(), 1u) << "refused by its own lock";
  ASSERT_EQ(table->locks().size(), 1u);
  EXPECT_EQ(table->locks()[0].holder, out["StatementName"]);
}

TEST_F(TaskerTest, ARefusedStartIsNotLookedUp) {
  redshift->fail_next_execute(Error("ValidationException", "bad sql", 400));
  EXPECT_EQ(
      error_of({{"action", "executeSingletonStatement"}, {"sqlStatement", "call sp()"}}).name(),
      "ValidationException");
  // (The singleton's check for a running copy lists statements too, by status, not by name.)
  for (const auto& call : redshift->calls()) {
    EXPECT_FALSE(call.starts_with("ListStatements ") && call != "ListStatements ")
        << "looked up by name: " << call;
  }
}

// The SQS batch that EventBridge delivers when statement `started` ends in `state`.
Json completion_batch(const Json& started, const std::string& state) {
  Json body = {{"source", "aws.redshift-data"},
               {"detail-type", "Redshift Data Statement Status Change"},
               {"detail",
                {{"statementName", started["StatementName"]},
                 {"statementId", started["Id"]},
                 {"state", state}}}};
  return {{"Records",
           {{{"messageId", "m-" + started["Id"].get<std::string>()},
             {"eventSource", "aws:sqs"},
             {"body", dump_json(body)}}}}};
}

struct IdempotencyKeyTest : TaskerTest {
  Json keyed(const std::string& token, const std::string& sql = "call sp_load()") {
    return {{"action", "executeStatement"},
            {"sqlStatement", sql},
            {"executionArn", kExecutionArn},
            {"taskToken", token},
            {"idempotencyKey", kExecutionArn + std::string("#Load#2026-12-02T10:00:00.000Z")}};
  }
  std::vector<std::string> answered_tokens() {
    std::vector<std::string> tokens;
    for (const auto& c : sfn->callbacks()) tokens.push_back(c.task_token);
    return tokens;
  }
};

TEST_F(IdempotencyKeyTest, ARepeatWhileTheStatementRunsBindsTheNewTokenAndRunsNothing) {
  Json first = tasker.handle(keyed("TOKEN-ATTEMPT-1"), context);
  Json again = tasker.handle(keyed("TOKEN-ATTEMPT-2"), context);
  EXPECT_EQ(redshift->executed().size(), 1u) << "the SQL ran twice";
  EXPECT_EQ(again["Id"], first["Id"]);
  EXPECT_EQ(again["StatementName"], first["StatementName"]);
  ASSERT_EQ(state->records().size(), 1u);
  EXPECT_EQ(state->records()[0].waiter.task_token, "TOKEN-ATTEMPT-2");

  redshift->set_status(first["Id"], "FINISHED");
  EXPECT_TRUE(
      tasker.handle(completion_batch(first, "FINISHED"), context)["batchItemFailures"].empty());
  EXPECT_EQ(answered_tokens(), std::vector<std::string>{"TOKEN-ATTEMPT-2"})
      << "the old token belongs to a failed attempt; the new one waits";
}

TEST_F(IdempotencyKeyTest, ARepeatAfterTheStatementEndedAnswersTheNewTokenAtOnce) {
  Json first = tasker.handle(keyed("TOKEN-ATTEMPT-1"), context);
  redshift->set_status(first["Id"], "FAILED", "ERROR: relation \"t\" does not exist");
  EXPECT_TRUE(
      tasker.handle(completion_batch(first, "FAILED"), context)["batchItemFailures"].empty());
  Json again = tasker.handle(keyed("TOKEN-ATTEMPT-2"), context);
  EXPECT_EQ(redshift->executed().size(), 1u) << "the SQL ran twice";
  EXPECT_EQ(again["Id"], first["Id"]);
  auto callbacks = sfn->callbacks();
  ASSERT_EQ(callbacks.size(), 2u);
  EXPECT_EQ(callbacks[1].task_token, "TOKEN-ATTEMPT-2");
  EXPECT_EQ(callbacks[1].kind, "failure") << "the same outcome as the first waiter's";
  EXPECT_EQ(callbacks[1].error, callbacks[0].error);
  EXPECT_NE(callbacks[1].cause.find("does not exist"), std::string::npos) << callbacks[1].cause;
}

TEST_F(IdempotencyKeyTest, ARepeatAfterARefusedStartStartsAfresh) {
  redshift->fail_next_execute(Error("ActiveStatementsExceededException", "too many", 400));
  EXPECT_EQ(error_of(keyed("TOKEN-ATTEMPT-1")).name(), "ActiveStatementsExceededException");
  Json again = tasker.handle(keyed("TOKEN-ATTEMPT-2"), context);
  EXPECT_EQ(redshift->executed().size(), 1u);
  auto records = state->records();
  ASSERT_EQ(records.size(), 2u);
  EXPECT_EQ(records[0].state == RecordState::kStartFailed ? records[1].waiter.task_token
                                                          : records[0].waiter.task_token,
            "TOKEN-ATTEMPT-2");
  EXPECT_EQ(tasker.handle(keyed("TOKEN-ATTEMPT-3"), context)["Id"], again["Id"]);
  EXPECT_EQ(redshift->executed().size(), 1u);
}

TEST_F(IdempotencyKeyTest, ARepeatOfAStartThatDiedBeforeRecordingItStartsItOnce) {
  int inserts = 0;
  state->before_operation = [&](std::string_view operation) {
    if (operation == "insert" && ++inserts == 1) throw SimulatedDeath{};
  };
  EXPECT_THROW(tasker.handle(keyed("TOKEN-ATTEMPT-1"), context), SimulatedDeath);
  EXPECT_TRUE(state->records().empty());
  Json again = tasker.handle(keyed("TOKEN-ATTEMPT-2"), context);
  EXPECT_EQ(redshift->executed().size(), 1u);
  ASSERT_EQ(state->records().size(), 1u);
  EXPECT_EQ(state->records()[0].key.statement_name(), again["StatementName"]);
  EXPECT_EQ(tasker.handle(keyed("TOKEN-ATTEMPT-3"), context)["Id"], again["Id"]);
  EXPECT_EQ(redshift->executed().size(), 1u);
}

TEST_F(IdempotencyKeyTest, ASingletonRepeatIsNotRefusedByItsOwnLock) {
  Json event = keyed("TOKEN-ATTEMPT-1");
  event["action"] = "executeSingletonStatement";
  Json first = tasker.handle(event, context);
  event["taskToken"] = "TOKEN-ATTEMPT-2";
  EXPECT_EQ(tasker.handle(event, context)["Id"], first["Id"]);
  EXPECT_EQ(redshift->executed().size(), 1u);
}

// A key does not bypass the singleton's rule: the same SQL running, whoever started it, refuses
// it, and the refusal keeps no lock.
TEST_F(IdempotencyKeyTest, AKeyedSingletonRefusesWhileTheSameSqlRunsElsewhere) {
  Json plain = tasker.handle({{"sqlStatement", "call sp_load()"}}, context);
  Json event = keyed("TOKEN-ATTEMPT-1");
  event["action"] = "executeSingletonStatement";
  Error refused = error_of(event);
  EXPECT_EQ(refused.name(), "ConcurrentExecution");
  EXPECT_NE(refused.message().find(plain["Id"].get<std::string>()), std::string::npos)
      << refused.message();
  EXPECT_TRUE(state->locks().empty()) << "a refused singleton keeps no lock";
  EXPECT_EQ(redshift->executed().size(), 1u);
  // Once the other statement has ended, a retry with the same key runs it, once.
  redshift->set_status(plain["Id"], "FINISHED");
  event["taskToken"] = "TOKEN-ATTEMPT-2";
  Json ran = tasker.handle(event, context);
  EXPECT_NE(ran["Id"], plain["Id"]);
  event["taskToken"] = "TOKEN-ATTEMPT-3";
  EXPECT_EQ(tasker.handle(event, context)["Id"], ran["Id"]);
  EXPECT_EQ(redshift->executed().size(), 2u);
}

// Two attempts with one key at once: B starts the statement under the name A chose while A is
// taking the lock under that same name. A must see B's statement as its own start, not as
// another statement running the same SQL: refusing would also release the lock B holds.
TEST_F(IdempotencyKeyTest, AKeyedSingletonDoesNotTakeItsOtherAttemptsStatementForAnother) {
  Json a = keyed("TOKEN-ATTEMPT-A");
  a["action"] = "executeSingletonStatement";
  Json b = a;
  b["taskToken"] = "TOKEN-ATTEMPT-B";
  Json started_by_b;
  bool b_ran = false;
  state->before_operation = [&](std::string_view operation) {
    if (operation != "acquire_lock" || b_ran) return;
    b_ran = true;  // A has written its marker and is about to take the lock
    started_by_b = tasker.handle(b, context);
  };
  Json started_by_a = tasker.handle(a, context);
  ASSERT_TRUE(b_ran);
  EXPECT_EQ(started_by_a["Id"], started_by_b["Id"]);
  EXPECT_EQ(redshift->executed().size(), 1u) << "the SQL ran twice";
  EXPECT_EQ(state->locks().size(), 1u) << "the running statement's lock was released";
}

TEST_F(IdempotencyKeyTest, AKeyWithoutAWaiterReturnsTheSameStatement) {
  Json event = {{"sqlStatement", "call sp_load()"}, {"idempotencyKey", "nightly-2026-12-02"}};
  Json first = tasker.handle(event, context);
  EXPECT_EQ(tasker.handle(event, context)["Id"], first["Id"]);
  EXPECT_EQ(redshift->executed().size(), 1u);
}

TEST_F(IdempotencyKeyTest, AKeyReusedForAnotherRequestOrMalformedIsRefused) {
  tasker.handle(keyed("TOKEN-ATTEMPT-1"), context);
  Error other = error_of(keyed("TOKEN-ATTEMPT-2", "call sp_other()"));
  EXPECT_EQ(other.name(), "InvalidRequest");
  EXPECT_NE(other.message().find("idempotencyKey"), std::string::npos) << other.message();
  for (const Json& bad : {Json(""), Json(std::string(513, 'k')), Json(42)}) {
    Json event = keyed("TOKEN-ATTEMPT-3");
    event["idempotencyKey"] = bad;
    Error e = error_of(event);
    EXPECT_EQ(e.name(), "InvalidRequest");
    EXPECT_NE(e.what(), std::string()) << bad;
    EXPECT_NE(std::string(e.message()).find("idempotencyKey"), std::string::npos) << e.message();
  }
  EXPECT_EQ(redshift->executed().size(), 1u);
  Json longest = keyed("TOKEN-ATTEMPT-4");
  longest["idempotencyKey"] = std::string(512, 'k');
  EXPECT_NO_THROW(tasker.handle(longest, context));
}

TEST_F(TaskerTest, StatementNameRoundTrip) {
  StatementKey key{kExecutionArn, StatementKey::new_invocation_id()};
  EXPECT_EQ(StatementKey::from_statement_name(key.statement_name()), key);
  EXPECT_FALSE(StatementKey::from_statement_name("someone-elses-statement"));
  EXPECT_FALSE(StatementKey::from_statement_name("x:123"));
  EXPECT_FALSE(StatementKey::from_statement_name(":1793654066.123456"));
  EXPECT_FALSE(StatementKey::from_statement_name("x:1793654066.12345a"));
  // Ids from one process strictly increase, even within one microsecond.
  std::string a = StatementKey::new_invocation_id();
  std::string b = StatementKey::new_invocation_id();
  EXPECT_LT(a, b);
}

}  // namespace
}  // namespace rstasker::tasker
