// The query runner driven step by step, as its state machine drives it: every step's output goes
// back in as the next step's state. Statements run on the in-memory Data API fake.
#include "rstasker/tasker/query_runner.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <cmath>
#include <optional>

#include "rstasker/common/error.hpp"
#include "rstasker/tasker/tasker.hpp"
#include "support/fakes.hpp"
#include "support/paths.hpp"

namespace rstasker::tasker {
namespace {

using rstasker::testing::FakeRedshiftData;
using rstasker::testing::MemoryStateTable;

const char* kArn = "arn:aws:states:eu-west-1:012345678910:execution:QueryRunner:run-1";

// The shared example inputs (../shared/events), with the same text inline for clones without it.
Json runner_input(const std::string& name, const char* inline_copy) {
  if (auto shared = rstasker::testing::shared_dir()) {
    auto path = *shared / "events" / name;
    if (std::filesystem::exists(path)) return Json::parse(rstasker::testing::read_file(path));
  }
  return Json::parse(inline_copy);
}

const char* kSimpleInput = R"json([
  "copy favoritemovies from 'dynamodb://Movies' iam_role 'arn:aws:iam::0123456789012:role/MyRedshiftRole' readratio 50;",
  "vacuum favoritemovies;"])json";
const char* kObjectsInput = R"json([
  {"ExecuteStatementParameters": "vacuum favoritemovies;", "MaxRetries": 0},
  {"ExecuteStatementParameters": {"ClusterIdentifier": "somecluster-2", "Sql": "ANALYZE;",
                                  "Database": "db-2", "DbUser": "master"},
   "InitialWaitTime": 5, "BaseWaitTime": 2, "WaitMultiplier": 1.5, "MaxWait": 60, "MaxRetries": 3,
   "RetryErrorMatch": "(deadlock|serializable isolation)"
}])json";

struct QueryRunnerTest : ::testing::Test {
  Config config = rstasker::testing::test_config();
  std::shared_ptr<FakeRedshiftData> redshift = std::make_shared<FakeRedshiftData>();
  std::shared_ptr<MemoryStateTable> state = std::make_shared<MemoryStateTable>();
  Launcher launcher{config, redshift, state};
  QueryRunner runner{config, redshift, launcher};
  aws::CallContext context{Deadline::after(std::chrono::seconds(30)), {}};

  Json step(const Json& runner_state, const Json& defaults = nullptr) {
    Json event = {{"action", "queryRunnerStep"}, {"executionArn", kArn}, {"state", runner_state}};
    if (!defaults.is_null()) event["defaults"] = defaults;
    // Through JSON text, as Step Functions hands it over.
    return Json::parse(runner.step(Json::parse(event.dump()), context).dump());
  }

  Error error_of(const Json& event) {
    try {
      runner.step(event, context);
    } catch (const Error& e) {
      return e;
    }
    ADD_FAILURE() << "no error for " << event.dump().substr(0, 300);
    return Error("none", "");
  }

  Error step_error(const Json& runner_state, const Json& defaults = nullptr) {
    Json event = {{"action", "queryRunnerStep"}, {"executionArn", kArn}, {"state", runner_state}};
    if (!defaults.is_null()) event["defaults"] = defaults;
    return error_of(event);
  }

  std::string invalid(const Json& runner_state, const Json& defaults = nullptr) {
    Error e = step_error(runner_state, defaults);
    EXPECT_EQ(e.name(), "InvalidRequest") << e.message();
    return e.message();
  }

  static std::string current_id(const Json& s) { return s["current"]["statementId"]; }
};

bool mentions(const std::string& text, std::string_view part) {
  return text.find(part) != std::string::npos;
}

TEST_F(QueryRunnerTest, SimpleInputRunsEachQueryInOrderWithTheSeedDefaults) {
  Json input = runner_input("runner-input-simple.json", kSimpleInput);
  Json s = step(input);
  EXPECT_EQ(s["next"], "wait");
  EXPECT_EQ(s["waitSeconds"], 30);  // InitialWaitTime
  ASSERT_EQ(redshift->executed().size(), 1u);
  const services::ExecuteRequest first = redshift->executed()[0];
  EXPECT_EQ(first.sqls, std::vector<std::string>{input[0].get<std::string>()});
  EXPECT_EQ(first.target, config.target);  // the function's configured target
  EXPECT_FALSE(first.with_event);          // the runner polls; no completion event is needed
  EXPECT_TRUE(first.statement_name.starts_with(std::string(kArn) + ":"));
  const std::string id0 = current_id(s);
  EXPECT_EQ(s["current"]["index"], 0);
  EXPECT_EQ(s["current"]["attempt"], 1);

  // "LATEST" works for this execution: the statement is recorded under its ARN.
  auto latest = state->latest(kArn, /*started_only=*/true, context);
  ASSERT_TRUE(latest.has_value());
  EXPECT_EQ(latest->statement_id, id0);

  // Still running: poll every BaseWaitTime (multiplier 1, so it stays 15).
  s = step(s);
  EXPECT_EQ(s["waitSeconds"], 15);
  s = step(s);
  EXPECT_EQ(s["waitSeconds"], 15);
  EXPECT_EQ(redshift->executed().size(), 1u);

  // Finished: the next query starts in the same step.
  redshift->set_status(id0, "FINISHED");
  s = step(s);
  EXPECT_EQ(s["next"], "wait");
  EXPECT_EQ(s["waitSeconds"], 30);
  ASSERT_EQ(redshift->executed().size(), 2u);
  EXPECT_EQ(redshift->executed()[1].sqls[0], "vacuum favoritemovies;");
  const std::string id1 = current_id(s);
  EXPECT_NE(id0, id1);

  redshift->set_status(id1, "FINISHED");
  s = step(s);
  EXPECT_EQ(s["next"], "succeed");
  ASSERT_EQ(s["output"].size(), 2u);
  EXPECT_EQ(s["output"][0]["StatementId"], id0);
  EXPECT_EQ(s["output"][1]["StatementId"], id1);
  EXPECT_EQ(s["output"][0]["Attempts"], 1);
}

TEST_F(QueryRunnerTest, ObjectInputUsesEachQuerysTargetAndGrowingCappedWaits) {
  Json s = step(runner_input("runner-input-objects.json", kObjectsInput));
  redshift->set_status(current_id(s), "FINISHED");
  s = step(s);
  ASSERT_EQ(redshift->executed().size(), 2u);
  const services::RedshiftTarget target = redshift->executed()[1].target;
  EXPECT_EQ(target.cluster_identifier, "somecluster-2");
  EXPECT_EQ(target.database, "db-2");
  EXPECT_EQ(target.db_user, "master");
  EXPECT_EQ(s["waitSeconds"], 5);  // its InitialWaitTime

  // BaseWaitTime 2, WaitMultiplier 1.5, MaxWait 60: 2, 3, 4.5, 6.75, ... rounded, capped at 60.
  std::vector<int> waits;
  double expected = 2;
  for (int i = 0; i < 14; ++i) {
    s = step(s);
    ASSERT_TRUE(s["waitSeconds"].is_number_integer()) << s["waitSeconds"];
    waits.push_back(s["waitSeconds"]);
    EXPECT_EQ(waits.back(), std::llround(std::min(60.0, expected))) << "poll " << i;
    expected *= 1.5;
  }
  EXPECT_EQ(waits.front(), 2);
  EXPECT_EQ(waits[2], 5);  // 4.5 rounds to 5
  EXPECT_EQ(waits.back(), 60);
}

TEST_F(QueryRunnerTest, TheFirstObjectQueryHasNoRetriesAndFailsAtOnce) {
  Json s = step(runner_input("runner-input-objects.json", kObjectsInput));
  redshift->set_status(current_id(s), "FAILED", "ERROR: deadlock detected");
  Error e = step_error(s);
  EXPECT_EQ(e.name(), "QueryFailed");
  EXPECT_TRUE(mentions(e.message(), "MaxRetries is 0")) << e.message();
  EXPECT_EQ(redshift->executed().size(), 1u);
}

TEST_F(QueryRunnerTest, TemplateDefaultsApplyUnlessTheQuerySaysOtherwise) {
  Json defaults = {{"ClusterIdentifier", "default-cluster"},
                   {"Database", "warehouse"},
                   {"DbUser", "etl"},
                   {"WorkgroupName", ""},  // template parameters left empty mean "not set"
                   {"SecretArn", ""},
                   {"InitialWaitTime", 7},
                   {"BaseWaitTime", 4},
                   {"WaitMultiplier", 2},
                   {"MaxWait", 10},
                   {"MaxRetries", 1},
                   {"RetryErrorMatch", ""}};
  Json input = {"select 1",
                {{"ExecuteStatementParameters", {{"Sql", "select 2"}, {"Database", "other"}}},
                 {"InitialWaitTime", 1}}};
  Json s = step(input, defaults);
  EXPECT_EQ(s["waitSeconds"], 7);
  auto sent = redshift->executed()[0].target;
  EXPECT_EQ(sent.cluster_identifier, "default-cluster");
  EXPECT_EQ(sent.database, "warehouse");
  EXPECT_EQ(sent.db_user, "etl");
  // The normalised queries carry everything, so later steps need no defaults.
  EXPECT_EQ(s["queries"][1]["ExecuteStatementParameters"]["Database"], "other");
  EXPECT_EQ(s["queries"][1]["ExecuteStatementParameters"]["ClusterIdentifier"], "default-cluster");
  EXPECT_EQ(s["queries"][1]["BaseWaitTime"], 4);
  EXPECT_EQ(s["queries"][1]["InitialWaitTime"], 1);
  EXPECT_EQ(s["queries"][1]["MaxRetries"], 1);

  s = step(s);
  EXPECT_EQ(s["waitSeconds"], 4);
  s = step(s);
  EXPECT_EQ(s["waitSeconds"], 8);
  s = step(s);
  EXPECT_EQ(s["waitSeconds"], 10);  // 16 capped by MaxWait
  redshift->set_status(current_id(s), "FINISHED");
  s = step(s);
  EXPECT_EQ(s["waitSeconds"], 1);
  EXPECT_EQ(redshift->executed()[1].target.database, "other");
  EXPECT_EQ(redshift->executed()[1].target.cluster_identifier, "default-cluster");
}

TEST_F(QueryRunnerTest, AWorkgroupInTheQueryReplacesTheDefaultCluster) {
  Json s =
      step(Json::array({{{"ExecuteStatementParameters",
                          {{"Sql", "select 1"}, {"WorkgroupName", "wg"}, {"Database", "d"}}}}}));
  auto sent = redshift->executed()[0].target;
  EXPECT_EQ(sent.workgroup_name, "wg");
  EXPECT_TRUE(sent.cluster_identifier.empty());
  EXPECT_EQ(sent.db_user, "admin");  // the configured user still applies
  EXPECT_EQ(s["next"], "wait");
}

TEST_F(QueryRunnerTest, AMatchingFailureIsRetriedAfterAWaitUntilTheQuerySucceeds) {
  Json input = {"select 1",
                {{"ExecuteStatementParameters", "insert into t select * from s"},
                 {"BaseWaitTime", 3},
                 {"MaxWait", 100},
                 {"MaxRetries", 2},
                 {"RetryErrorMatch", "(deadlock|serializable isolation)"}}};
  Json s = step(input);
  redshift->set_status(current_id(s), "FINISHED");
  s = step(s);  // query 1, attempt 1
  ASSERT_EQ(redshift->executed().size(), 2u);

  double previous = 3;
  for (int failure = 1; failure <= 2; ++failure) {
    const std::string id = current_id(s);
    redshift->set_status(id, "FAILED", "ERROR: 1023 DETAIL: serializable isolation violation");
    s = step(s);
    // A real wait before the retry, and nothing restarted in this step.
    EXPECT_EQ(s["next"], "wait");
    double sleep = s["current"]["retryWait"];
    EXPECT_GE(sleep, 3.0);
    EXPECT_LE(sleep, std::min(100.0, previous * 3));
    EXPECT_EQ(s["waitSeconds"], std::llround(sleep));
    EXPECT_EQ(current_id(s), "");
    EXPECT_TRUE(mentions(s["current"]["lastError"], "serializable isolation"));
    EXPECT_EQ(redshift->executed().size(), 1u + static_cast<std::size_t>(failure));
    previous = sleep;

    // After the wait: the next step starts the query again.
    s = step(s);
    EXPECT_EQ(redshift->executed().size(), 2u + static_cast<std::size_t>(failure));
    EXPECT_EQ(s["current"]["attempt"], failure + 1);
    EXPECT_EQ(s["waitSeconds"], 30);  // InitialWaitTime again
    EXPECT_NE(current_id(s), id);
  }
  const std::string last = current_id(s);
  redshift->set_status(last, "FINISHED");
  s = step(s);
  EXPECT_EQ(s["next"], "succeed");
  EXPECT_EQ(s["output"][1]["Attempts"], 3);
  EXPECT_EQ(s["output"][1]["StatementId"], last);
  EXPECT_EQ(s["output"][0]["Attempts"], 1);
}

TEST_F(QueryRunnerTest, ANonMatchingFailureFailsTheExecutionAtOnce) {
  Json input = Json::array({{{"ExecuteStatementParameters", "select * from missing_table"},
                             {"MaxRetries", 5},
                             {"RetryErrorMatch", "deadlock"}}});
  Json s = step(input);
  const std::string id = current_id(s);
  redshift->set_status(id, "FAILED", "ERROR: relation \"missing_table\" does not exist");
  Error e = step_error(s);
  EXPECT_EQ(e.name(), "QueryFailed");
  EXPECT_TRUE(mentions(e.message(), "query 1 of 1 (index 0)")) << e.message();
  EXPECT_TRUE(mentions(e.message(), "after 1 attempt")) << e.message();
  EXPECT_TRUE(mentions(e.message(), id)) << e.message();
  EXPECT_TRUE(mentions(e.message(), "relation \"missing_table\" does not exist")) << e.message();
  EXPECT_TRUE(mentions(e.message(), "select * from missing_table")) << e.message();
  EXPECT_TRUE(mentions(e.message(), "does not match RetryErrorMatch")) << e.message();
  EXPECT_EQ(redshift->executed().size(), 1u);
}

TEST_F(QueryRunnerTest, ZeroRetriesFailsAtOnceEvenWhenTheErrorMatches) {
  Json s = step(Json::array({{{"ExecuteStatementParameters", "vacuum"}, {"MaxRetries", 0}}}));
  redshift->set_status(current_id(s), "FAILED", "anything");
  Error e = step_error(s);
  EXPECT_EQ(e.name(), "QueryFailed");
  EXPECT_TRUE(mentions(e.message(), "MaxRetries is 0"));
}

TEST_F(QueryRunnerTest, RetriesRunOutAndTheFailureSaysHowManyAttemptsWereMade) {
  Json s = step(Json::array({{{"ExecuteStatementParameters", "vacuum"},
                              {"MaxRetries", 1},
                              {"BaseWaitTime", 0},
                              {"MaxWait", 0}}}));
  redshift->set_status(current_id(s), "FAILED", "boom");
  s = step(s);
  EXPECT_EQ(s["waitSeconds"], 0);  // a jitter wait may be 0 when the caps say so
  s = step(s);
  redshift->set_status(current_id(s), "FAILED", "boom again");
  Error e = step_error(s);
  EXPECT_EQ(e.name(), "QueryFailed");
  EXPECT_TRUE(mentions(e.message(), "after 2 attempts")) << e.message();
  EXPECT_TRUE(mentions(e.message(), "no retries left (MaxRetries 1)")) << e.message();
  EXPECT_TRUE(mentions(e.message(), "boom again")) << e.message();
}

TEST_F(QueryRunnerTest, ACancelledStatementIsNeverRetried) {
  Json s = step(Json::array({"select pg_sleep(100)"}));
  redshift->set_status(current_id(s), "ABORTED");
  Error e = step_error(s);
  EXPECT_EQ(e.name(), "QueryFailed");
  EXPECT_TRUE(mentions(e.message(), "ABORTED")) << e.message();
}

TEST_F(QueryRunnerTest, AStatementTheDataApiRefusesIsAFailedAttempt) {
  redshift->fail_next_execute(
      Error("ActiveStatementsExceededException", "too many active statements", 400));
  Json s = step(Json::array({{{"ExecuteStatementParameters", "select 1"},
                              {"RetryErrorMatch", "ActiveStatementsExceeded"}}}));
  EXPECT_EQ(s["next"], "wait");
  EXPECT_EQ(current_id(s), "");
  EXPECT_EQ(s["current"]["status"], "START_FAILED");
  EXPECT_TRUE(mentions(s["current"]["lastError"], "ActiveStatementsExceededException"));
  s = step(s);
  EXPECT_EQ(redshift->executed().size(), 1u);
  EXPECT_NE(current_id(s), "");
  EXPECT_EQ(s["current"]["attempt"], 2);

  redshift->fail_next_execute(Error("ValidationException", "bad parameter", 400));
  Error e = step_error(Json::array(
      {{{"ExecuteStatementParameters", "select 1"}, {"RetryErrorMatch", "ActiveStatements"}}}));
  EXPECT_EQ(e.name(), "QueryFailed");
  EXPECT_TRUE(mentions(e.message(), "(not started)")) << e.message();
  EXPECT_TRUE(mentions(e.message(), "ValidationException: bad parameter")) << e.message();
}

TEST_F(QueryRunnerTest, JitterStaysWithinItsBoundsAndVaries) {
  const double base = 2;
  const double cap = 50;
  Json s = step(Json::array({{{"ExecuteStatementParameters", "select 1"},
                              {"BaseWaitTime", base},
                              {"MaxWait", cap},
                              {"MaxRetries", 100}}}));
  double previous = base;
  std::set<long long> distinct;
  for (int i = 0; i < 100; ++i) {
    redshift->set_status(current_id(s), "FAILED", "transient");
    s = step(s);
    double sleep = s["current"]["retryWait"];
    ASSERT_GE(sleep, base) << "retry " << i;
    ASSERT_LE(sleep, std::min(cap, previous * 3)) << "retry " << i;
    const long long wait = s["waitSeconds"];
    ASSERT_GE(wait, 0);
    ASSERT_LE(wait, static_cast<long long>(cap));
    ASSERT_EQ(wait, std::llround(sleep));
    distinct.insert(wait);
    previous = sleep;
    s = step(s);  // restart
  }
  EXPECT_GT(distinct.size(), 5u);  // randomised, not a fixed schedule
}

TEST_F(QueryRunnerTest, FractionalAndIntegerNumbersAreBothAccepted) {
  Json s = step(Json::array({{{"ExecuteStatementParameters", "select 1"},
                              {"InitialWaitTime", 2.6},
                              {"BaseWaitTime", 1.2},
                              {"WaitMultiplier", 2},
                              {"MaxWait", 100.0},
                              {"MaxRetries", 3.0}}}));
  EXPECT_EQ(s["waitSeconds"], 3);
  EXPECT_TRUE(s["waitSeconds"].is_number_integer());
  s = step(s);
  EXPECT_EQ(s["waitSeconds"], 1);
  s = step(s);
  EXPECT_EQ(s["waitSeconds"], 2);  // 2.4
  EXPECT_EQ(s["queries"][0]["MaxRetries"], 3);
}

TEST_F(QueryRunnerTest, PollingNeverWaitsLessThanASecond) {
  Json s = step(Json::array({{{"ExecuteStatementParameters", "select 1"},
                              {"InitialWaitTime", 0},
                              {"BaseWaitTime", 0},
                              {"MaxWait", 0}}}));
  EXPECT_EQ(s["waitSeconds"], 0);
  EXPECT_EQ(step(s)["waitSeconds"], 1);
}

TEST_F(QueryRunnerTest, APathologicalPatternOnAMegabyteOfErrorTextFinishesQuickly) {
  // (a+)+$ backtracks exponentially in engines like Python's; RE2 is linear in the text.
  Json s = step(Json::array({{{"ExecuteStatementParameters", "select 1"},
                              {"MaxRetries", 1},
                              {"RetryErrorMatch", "(a+)+$|(a|aa)+b|(x+x+)+y"}}}));
  std::string error(1 << 20, 'a');
  error += '!';
  redshift->set_status(current_id(s), "FAILED", error);
  auto started = std::chrono::steady_clock::now();
  Error e = step_error(s);
  auto took = std::chrono::steady_clock::now() - started;
  EXPECT_EQ(e.name(), "QueryFailed");  // no match after scanning the whole text
  EXPECT_TRUE(mentions(e.message(), "does not match RetryErrorMatch"))
      << e.message().substr(0, 300);
  // A generous bound: a backtracking engine would not finish in the lifetime of the test.
  EXPECT_LT(took, std::chrono::seconds(10));
  EXPECT_LT(e.message().size(), 6000u);  // the error text is truncated in the message
}

TEST_F(QueryRunnerTest, AnEmptyListSucceedsWithoutRunningAnything) {
  Json s = step(Json::array());
  EXPECT_EQ(s["next"], "succeed");
  EXPECT_EQ(s["output"], Json::array());
  EXPECT_EQ(redshift->call_count(), 0u);
}

TEST_F(QueryRunnerTest, SeedExecuteFieldsTheRunnerSetsItselfAreAcceptedAndIgnored) {
  Json s = step(
      Json::array({{{"ExecuteStatementParameters",
                     {{"Sql", "select 1"}, {"StatementName", "mine"}, {"WithEvent", true}}}}}));
  EXPECT_TRUE(redshift->executed()[0].statement_name.starts_with(kArn));
  EXPECT_FALSE(s["queries"][0]["ExecuteStatementParameters"].contains("StatementName"));
}

TEST_F(QueryRunnerTest, NamedParametersArePassedOn) {
  step(Json::array({{{"ExecuteStatementParameters",
                      {{"Sql", "select :n"}, {"Parameters", {{{"name", "n"}, {"value", 5}}}}}}}}));
  ASSERT_EQ(redshift->executed()[0].parameters.size(), 1u);
  EXPECT_EQ(redshift->executed()[0].parameters[0].name, "n");
  EXPECT_EQ(redshift->executed()[0].parameters[0].value, "5");
}

TEST_F(QueryRunnerTest, MalformedInputsAreInvalidRequestsNamingTheProblem) {
  EXPECT_TRUE(mentions(invalid("select 1"), "list of queries"));
  EXPECT_TRUE(mentions(invalid(Json::object()), "'queries' and 'current'"));
  EXPECT_TRUE(mentions(invalid(Json::array({42})), "query 0 must be a string"));
  EXPECT_TRUE(mentions(invalid(Json::array({"   "})), "query 0 is empty"));
  EXPECT_TRUE(mentions(invalid(Json::array({"ok", {{"MaxRetries", 1}}})),
                       "query 1 has no ExecuteStatementParameters"));
  EXPECT_TRUE(mentions(invalid(Json::array({{{"ExecuteStatementParameters", {{"sql", "x"}}}}})),
                       "did you mean 'Sql'"));
  EXPECT_TRUE(
      mentions(invalid(Json::array({{{"ExecuteStatementParameters", {{"Database", "x"}}}}})),
               ".Sql must be a string"));
  EXPECT_TRUE(
      mentions(invalid(Json::array({{{"ExecuteStatementParameters", "x"}, {"maxWait", 3}}})),
               "did you mean 'MaxWait'"));
  EXPECT_TRUE(mentions(invalid(Json::array({{{"ExecuteStatementParameters", "x"}, {"Foo", 3}}})),
                       "unknown field 'Foo'"));
  EXPECT_TRUE(
      mentions(invalid(Json::array({{{"ExecuteStatementParameters", "x"}, {"MaxWait", "30"}}})),
               "query 0.MaxWait must be a number, not string"));
  EXPECT_TRUE(
      mentions(invalid(Json::array({{{"ExecuteStatementParameters", "x"}, {"BaseWaitTime", -1}}})),
               "query 0.BaseWaitTime must be between 0 and 86400"));
  EXPECT_TRUE(
      mentions(invalid(Json::array({{{"ExecuteStatementParameters", "x"}, {"MaxRetries", 1.5}}})),
               "MaxRetries must be a whole number"));
  EXPECT_TRUE(
      mentions(invalid(Json::array({{{"ExecuteStatementParameters", "x"}, {"WaitMultiplier", 0}}})),
               "WaitMultiplier must be greater than 0"));
  EXPECT_TRUE(mentions(
      invalid(
          Json::array({"ok", {{"ExecuteStatementParameters", "x"}, {"RetryErrorMatch", "(a"}}})),
      "query 1.RetryErrorMatch is not a valid RE2 regular expression"));
  EXPECT_TRUE(mentions(
      invalid(Json::array({{{"ExecuteStatementParameters", "x"}, {"RetryErrorMatch", "(a)\\1"}}})),
      "RetryErrorMatch is not a valid"));
  EXPECT_TRUE(mentions(
      invalid(Json::array({{{"ExecuteStatementParameters", "x"}, {"RetryErrorMatch", 5}}})),
      "RetryErrorMatch must be a string"));
  EXPECT_TRUE(mentions(
      invalid(
          Json::array({{{"ExecuteStatementParameters",
                         {{"Sql", "x"}, {"ClusterIdentifier", "a"}, {"WorkgroupName", "b"}}}}})),
      "both ClusterIdentifier and WorkgroupName"));
  EXPECT_TRUE(mentions(
      invalid(Json::array({{{"ExecuteStatementParameters", {{"Sql", "x"}, {"Database", ""}}}}})),
      "Database must not be empty"));
  EXPECT_TRUE(mentions(
      invalid(Json::array(
          {{{"ExecuteStatementParameters", {{"Sql", "x"}, {"Parameters", {{{"name", "a-b"}}}}}}}})),
      "must be letters, digits and underscores"));
  EXPECT_TRUE(mentions(invalid(Json::array({std::string(100001, 'x')})), "at most 100000"));
  EXPECT_TRUE(
      mentions(invalid(Json::array({"x"}), {{"Database", 5}}), "Database must be a string"));
  EXPECT_TRUE(
      mentions(invalid(Json::array({"x"}), {{"database", "d"}}), "did you mean 'Database'"));
  // Nothing runs when any query of the input is wrong.
  EXPECT_EQ(redshift->call_count(), 0u);
}

TEST_F(QueryRunnerTest, ATargetThatCannotWorkIsRefusedBeforeAnythingRuns) {
  config.target = {};  // nothing configured and no defaults
  std::string message = invalid(Json::array({"ok"}));
  EXPECT_TRUE(mentions(message, "query 0: Redshift target")) << message;
  EXPECT_EQ(redshift->call_count(), 0u);
}

TEST_F(QueryRunnerTest, MalformedStepEventsAreInvalidRequests) {
  auto message = [&](const Json& event) {
    Error e = error_of(event);
    EXPECT_EQ(e.name(), "InvalidRequest") << e.message();
    return e.message();
  };
  Json ok = {{"action", "queryRunnerStep"}, {"executionArn", kArn}, {"state", Json::array({"x"})}};
  Json e = ok;
  e.erase("executionArn");
  EXPECT_TRUE(mentions(message(e), "needs 'executionArn'"));
  e = ok;
  e["executionArn"] = "not-an-arn";
  EXPECT_TRUE(mentions(message(e), "not a Step Functions execution ARN"));
  e = ok;
  e.erase("state");
  EXPECT_TRUE(mentions(message(e), "needs 'state'"));
  e = ok;
  e["State"] = 1;
  EXPECT_TRUE(mentions(message(e), "did you mean 'state'"));
  e = ok;
  e["defaults"] = "x";
  EXPECT_TRUE(mentions(message(e), "'defaults' must be an object"));
  EXPECT_TRUE(mentions(message(Json::array()), "must be a JSON object"));
}

TEST_F(QueryRunnerTest, ATamperedRunnerStateIsRefused) {
  Json s = step(Json::array({"select 1", "select 2"}));
  Json bad = s;
  bad["current"]["index"] = 5;
  EXPECT_TRUE(mentions(invalid(bad), "current.index must be between 0 and 1"));
  bad = s;
  bad["current"]["index"] = 1;  // results do not say query 0 finished
  EXPECT_TRUE(mentions(invalid(bad), "inconsistent"));
  bad = s;
  bad["current"].erase("index");
  EXPECT_TRUE(mentions(invalid(bad), "index is missing"));
  bad = s;
  bad["current"]["statementId"] = 7;
  EXPECT_TRUE(mentions(invalid(bad), "statementId must be a string"));
  bad = s;
  bad["queries"] = Json::array();
  EXPECT_TRUE(mentions(invalid(bad), "non-empty list"));
}

TEST_F(QueryRunnerTest, TheTaskerRoutesQueryRunnerStepEventsHere) {
  auto sfn = std::make_shared<rstasker::testing::FakeStepFunctions>();
  auto cfn = std::make_shared<rstasker::testing::FakeCfnResponder>();
  Tasker tasker(rstasker::testing::test_config(), Dependencies{redshift, state, sfn, cfn});
  Json out = Json::parse(
      tasker.handle_payload(R"({"action":"queryRunnerStep","executionArn":")" + std::string(kArn) +
                                R"(","defaults":{"InitialWaitTime":12},"state":["select 1"]})",
                            context));
  EXPECT_EQ(out["next"], "wait");
  EXPECT_EQ(out["waitSeconds"], 12);
  EXPECT_EQ(redshift->executed().size(), 1u);
}

// A step retried after a Lambda error (the same input, the same key) finds the statement its
// failed invocation started; the next attempt of a failed query gets a key of its own.
TEST_F(QueryRunnerTest, AStepRetriedWithItsIdempotencyKeyRunsTheQueryOnce) {
  Json event = {{"action", "queryRunnerStep"},
                {"executionArn", kArn},
                {"idempotencyKey", std::string(kArn) + "#Step#2026-12-02T10:00:00.000Z"},
                {"state", Json::array({{{"ExecuteStatementParameters", "select 1"},
                                        {"RetryErrorMatch", "deadlock"}}})}};
  Json first = runner.step(event, context);
  Json again = runner.step(event, context);
  EXPECT_EQ(redshift->executed().size(), 1u) << "the retried step ran the query again";
  EXPECT_EQ(current_id(again), current_id(first));

  redshift->set_status(current_id(first), "FAILED", "deadlock detected");
  Json polled = first;
  Json poll = event;
  poll["state"] = first;
  poll["idempotencyKey"] = std::string(kArn) + "#Step#2026-12-02T10:00:05.000Z";
  polled = runner.step(poll, context);  // the failure: a second attempt is due
  poll["state"] = polled;
  poll["idempotencyKey"] = std::string(kArn) + "#Step#2026-12-02T10:00:10.000Z";
  Json second = runner.step(poll, context);
  EXPECT_EQ(redshift->executed().size(), 2u) << "the next attempt runs the query again";
  EXPECT_EQ(second["current"]["attempt"], 2);

  event["idempotencyKey"] = "";
  EXPECT_EQ(error_of(event).name(), "InvalidRequest");
}

}  // namespace
}  // namespace rstasker::tasker
