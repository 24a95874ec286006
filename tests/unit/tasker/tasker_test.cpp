// The action API over in-memory fakes: what is recorded, what is started, what is returned.
#include "rstasker/tasker/tasker.hpp"

#include <gtest/gtest.h>

#include <thread>

#include "rstasker/common/error.hpp"
#include "support/fakes.hpp"

namespace rstasker::tasker {
namespace {

using rstasker::testing::FakeRedshiftData;
using rstasker::testing::FakeStepFunctions;
using rstasker::testing::MemoryStateTable;

const char* kExecutionArn = "arn:aws:states:eu-west-1:012345678910:execution:Machine:run-1";

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
  for (std::string_view payload : {std::string_view("[1,2"), std::string_view("{\"a\":\"\xff\"}"),
                                   std::string_view(""), std::string_view("null")}) {
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
