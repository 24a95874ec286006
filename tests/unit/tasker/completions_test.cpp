// Completion batches over in-memory fakes: exactly one callback per statement, whatever the
// duplication, concurrency or crash point; exactly the failed records reported for retry.
#include <gtest/gtest.h>

#include <atomic>
#include <filesystem>
#include <stdexcept>
#include <thread>

#include "rstasker/common/error.hpp"
#include "rstasker/common/log.hpp"
#include "rstasker/tasker/tasker.hpp"
#include "support/fakes.hpp"
#include "support/paths.hpp"
#include "support/process.hpp"

namespace rstasker::tasker {
namespace {

using rstasker::testing::FakeCfnResponder;
using rstasker::testing::FakeRedshiftData;
using rstasker::testing::FakeStepFunctions;
using rstasker::testing::MemoryStateTable;

// Thrown by the fault hook: not an rstasker::Error, so nothing catches it on the way out, as if
// the process had died at that step.
struct SimulatedCrash {
  std::string step;
};

struct World {
  std::shared_ptr<FakeRedshiftData> redshift = std::make_shared<FakeRedshiftData>();
  std::shared_ptr<MemoryStateTable> state = std::make_shared<MemoryStateTable>();
  std::shared_ptr<FakeStepFunctions> sfn = std::make_shared<FakeStepFunctions>();
  std::shared_ptr<FakeCfnResponder> cfn = std::make_shared<FakeCfnResponder>();

  // A fresh tasker over the same services: a new Lambda sandbox.
  std::unique_ptr<Tasker> tasker(CompletionOptions options = {}) {
    return std::make_unique<Tasker>(rstasker::testing::test_config(),
                                    Dependencies{redshift, state, sfn, cfn}, std::move(options));
  }
};

aws::CallContext ctx(std::chrono::milliseconds left = std::chrono::seconds(30)) {
  return {Deadline::after(left), {}};
}

std::string arn(int i) {
  return "arn:aws:states:eu-west-1:012345678910:execution:Machine:run-" + std::to_string(i);
}

Json completion_body(const std::string& name, const std::string& id, const std::string& state) {
  return {{"version", "0"},
          {"id", "e-" + id},
          {"detail-type", "Redshift Data Statement Status Change"},
          {"source", "aws.redshift-data"},
          {"account", "012345678910"},
          {"time", "2026-11-01T21:14:26Z"},
          {"region", "eu-west-1"},
          {"resources", Json::array()},
          {"detail",
           {{"principal", "p"},
            {"statementName", name},
            {"statementId", id},
            {"redshiftQueryId", -1},
            {"state", state},
            {"rows", 1},
            {"expireAt", 1793740466}}}};
}

Json record(const std::string& message_id, const Json& body) {
  return {{"messageId", message_id},
          {"receiptHandle", "rh-" + message_id},
          {"body", dump_json(body)},
          {"eventSource", "aws:sqs"},
          {"attributes", {{"ApproximateReceiveCount", "1"}}}};
}

Json batch(std::vector<Json> records) {
  return {{"Records", records}};
}

std::vector<std::string> failed_ids(const Json& response) {
  std::vector<std::string> ids;
  for (const auto& f : response.at("batchItemFailures")) ids.push_back(f.at("itemIdentifier"));
  return ids;
}

struct Started {
  std::string name;
  std::string id;
  std::string token;
};

Started start(Tasker& tasker, int i, const char* action = "executeStatement") {
  std::string token = "TOKEN-" + std::to_string(i) + "-abcdef";
  Json out = tasker.handle({{"action", action},
                            {"sqlStatement", "call sp(" + std::to_string(i) + ")"},
                            {"executionArn", arn(i)},
                            {"taskToken", token}},
                           ctx());
  return {out["StatementName"], out["Id"], token};
}

TEST(Completions, FinishedCallsBackOnceWithTheEventAsOutput) {
  World w;
  auto tasker = w.tasker();
  Started s = start(*tasker, 1);
  Json body = completion_body(s.name, s.id, "FINISHED");
  Json response = tasker->handle(batch({record("m1", body)}), ctx());
  EXPECT_TRUE(failed_ids(response).empty());
  auto callbacks = w.sfn->callbacks();
  ASSERT_EQ(callbacks.size(), 1u);
  EXPECT_EQ(callbacks[0].kind, "success");
  EXPECT_EQ(callbacks[0].task_token, s.token);
  EXPECT_EQ(Json::parse(callbacks[0].output), body);
  EXPECT_EQ(w.state->records()[0].state, RecordState::kDone);
  EXPECT_EQ(w.state->records()[0].outcome, "FINISHED");
}

TEST(Completions, FailedCallsBackFailedWithTheDataApiErrorInTheCause) {
  World w;
  auto tasker = w.tasker();
  Started s = start(*tasker, 2);
  w.redshift->set_status(s.id, "FAILED", "ERROR: relation \"nope\" does not exist");
  tasker->handle(batch({record("m1", completion_body(s.name, s.id, "FAILED"))}), ctx());
  auto callbacks = w.sfn->callbacks();
  ASSERT_EQ(callbacks.size(), 1u);
  EXPECT_EQ(callbacks[0].kind, "failure");
  EXPECT_EQ(callbacks[0].error, "FAILED");
  Json cause = Json::parse(callbacks[0].cause);
  EXPECT_EQ(cause["state"], "FAILED");
  EXPECT_EQ(cause["statementId"], s.id);
  EXPECT_EQ(cause["statementName"], s.name);
  EXPECT_EQ(cause["error"], "ERROR: relation \"nope\" does not exist");
}

TEST(Completions, HugeErrorTextsStayWithinTheCauseLimit) {
  Outcome o;
  o.status = services::StatementStatus::kFailed;
  o.statement_id = "id";
  o.statement_name = "name";
  o.error = std::string(100000, '"');  // every character doubles when escaped
  std::string cause = failure_cause(o);
  EXPECT_LE(cause.size(), services::kMaxTaskCauseChars);
  EXPECT_EQ(Json::parse(cause)["state"], "FAILED");
}

TEST(Completions, EventsThatAreNotOursAreAcknowledged) {
  World w;
  auto tasker = w.tasker();
  Json foreign = completion_body("someone-elses-statement", "x", "FINISHED");
  Json unknown = completion_body(arn(9) + ":1793654066.123456", "y", "FINISHED");
  Json s3 = {{"source", "aws.s3"}, {"detail-type", "Object Created"}, {"detail", Json::object()}};
  Json response = tasker->handle(
      batch({record("a", foreign),
             record("b", unknown),
             record("c", s3),
             {{"messageId", "d"}, {"body", "not json"}, {"eventSource", "aws:sqs"}}}),
      ctx());
  EXPECT_TRUE(failed_ids(response).empty());
  EXPECT_TRUE(w.sfn->callbacks().empty());
}

// A body nested 100,000 deep that names a waiting statement used to be parsed without a limit and
// dumped recursively: a stack overflow that failed the whole batch on every delivery. It is now
// refused like any body that is not a completion event; the statement stays waiting for the
// reconciler, which asks the Data API.
TEST(Completions, ABodyNestedTooDeepIsAcknowledgedWithoutACrash) {
  World w;
  auto tasker = w.tasker();
  Started s = start(*tasker, 3);
  std::string body = dump_json(completion_body(s.name, s.id, "FINISHED"));
  body.pop_back();  // the closing brace
  body += R"(,"padding":)" + std::string(100000, '[') + std::string(100000, ']') + "}";
  Json response = tasker->handle(batch({{{"messageId", "deep"},
                                         {"receiptHandle", "rh"},
                                         {"body", body},
                                         {"eventSource", "aws:sqs"}}}),
                                 ctx());
  EXPECT_TRUE(failed_ids(response).empty());
  EXPECT_TRUE(w.sfn->callbacks().empty());
  EXPECT_EQ(w.state->records()[0].state, RecordState::kWaiting);
}

// The completion path (not only the action that registered the token) keeps the task token out
// of the logs, even when a service's error message quotes it.
TEST(Completions, AFailedCallbackNeverLogsTheTaskToken) {
  World w;
  auto tasker = w.tasker();
  Started s = start(*tasker, 4);
  w.sfn->fail_token(s.token, Error("ServiceUnavailable", "no delivery to " + s.token, 503, true));
  log::init(log::Settings{spdlog::level::info, log::Format::kJson});
  const std::string logged = rstasker::testing::capture_stderr([&] {
    tasker->handle(batch({record("m1", completion_body(s.name, s.id, "FINISHED"))}), ctx());
  });
  EXPECT_NE(logged.find("could not call back"), std::string::npos) << logged;
  EXPECT_EQ(logged.find(s.token), std::string::npos) << logged;
}

TEST(Completions, SharedEventFilesGetTheDocumentedOutcome) {
  auto shared = rstasker::testing::shared_dir();
  // A user's clone has no ../shared: skipped there, a failure under RSTASKER_REQUIRE_SERVERS=1.
  if (!shared)
    RSTASKER_SKIP_IF_UNAVAILABLE(
        std::optional<std::string>("../shared is absent (a user's clone): nothing to read"));
  World w;
  auto tasker = w.tasker();
  for (const char* file :
       {"sqs-not-ours.json", "sqs-mixed-batch.json", "sqs-completion-finished.json",
        "sqs-completion-failed.json", "sqs-completion-aborted.json"}) {
    Json event = Json::parse(rstasker::testing::read_file(*shared / "events" / file));
    Json response = tasker->handle(event, ctx());
    // No record exists for their statements: all acknowledged, none retried, nothing called.
    EXPECT_TRUE(failed_ids(response).empty()) << file;
  }
  EXPECT_TRUE(w.sfn->callbacks().empty());
}

TEST(Completions, SharedCompletionEventsOfOurStatementsCallTheirWaitersBack) {
  auto shared = rstasker::testing::shared_dir();
  // A user's clone has no ../shared: skipped there, a failure under RSTASKER_REQUIRE_SERVERS=1.
  if (!shared)
    RSTASKER_SKIP_IF_UNAVAILABLE(std::optional<std::string>(
        "../shared is absent (a user's clone): no example events to replay"));
  struct Case {
    const char* file;
    const char* state;
    const char* error;  // what DescribeStatement says
  };
  const Case cases[] = {
      {"sqs-completion-finished.json", "FINISHED", ""},
      {"sqs-completion-failed.json", "FAILED", "ERROR: relation \"staging.orders\" does not exist"},
      {"sqs-completion-aborted.json", "ABORTED", "Query (4711) cancelled on user's request"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.file);
    World w;
    Json event = Json::parse(rstasker::testing::read_file(*shared / "events" / c.file));
    ASSERT_EQ(event["Records"].size(), 1u);
    Json body = Json::parse(event["Records"][0]["body"].get<std::string>());
    const std::string name = body["detail"]["statementName"];
    const std::string id = body["detail"]["statementId"];
    ASSERT_EQ(body["detail"]["state"], c.state);

    // The record the start of that statement would have written.
    auto key = StatementKey::from_statement_name(name);
    ASSERT_TRUE(key) << name;
    StatementRecord r;
    r.key = *key;
    r.statement_id = id;
    r.waiter.kind = WaiterKind::kStepFunctions;
    r.waiter.task_token = "TOKEN-shared-event-abcdef";
    r.created_at_ms = now_epoch_ms();
    r.expires_at_s = now_epoch_seconds() + 7 * 86400;
    ASSERT_TRUE(w.state->insert(r, ctx()));
    w.redshift->set_status(id, c.state, c.error);

    Json response = w.tasker()->handle(event, ctx());
    EXPECT_TRUE(failed_ids(response).empty());
    auto callbacks = w.sfn->callbacks();
    ASSERT_EQ(callbacks.size(), 1u);
    EXPECT_EQ(callbacks[0].task_token, r.waiter.task_token);
    if (std::string(c.state) == "FINISHED") {
      EXPECT_EQ(callbacks[0].kind, "success");
      EXPECT_EQ(Json::parse(callbacks[0].output), body) << "the event is the task's output";
    } else {
      EXPECT_EQ(callbacks[0].kind, "failure");
      EXPECT_EQ(callbacks[0].error, "FAILED");
      Json cause = Json::parse(callbacks[0].cause);
      EXPECT_EQ(cause["state"], c.state);
      EXPECT_EQ(cause["statementId"], id);
      EXPECT_EQ(cause["statementName"], name);
      EXPECT_EQ(cause["error"], c.error);
    }
    auto done = w.state->get(*key, ctx());
    ASSERT_TRUE(done);
    EXPECT_EQ(done->state, RecordState::kDone);
    EXPECT_EQ(done->outcome, c.state);
  }
}

TEST(Completions, OnlyTheRecordWhoseCallbackFailsIsRetried) {
  World w;
  auto tasker = w.tasker();
  Started a = start(*tasker, 1), b = start(*tasker, 2), c = start(*tasker, 3);
  w.sfn->fail_token(b.token, Error("ServiceUnavailable", "try later", 503, true));
  Json response = tasker->handle(batch({record("ma", completion_body(a.name, a.id, "FINISHED")),
                                        record("mb", completion_body(b.name, b.id, "FINISHED")),
                                        record("mc", completion_body(c.name, c.id, "FINISHED"))}),
                                 ctx());
  EXPECT_EQ(failed_ids(response), std::vector<std::string>{"mb"});
  EXPECT_EQ(w.sfn->callbacks().size(), 2u);
  // The failed one went back to WAITING, so the redelivery completes it at once.
  w.sfn->clear_failure(b.token);
  Json again =
      tasker->handle(batch({record("mb", completion_body(b.name, b.id, "FINISHED"))}), ctx());
  EXPECT_TRUE(failed_ids(again).empty());
  EXPECT_EQ(w.sfn->callbacks().size(), 3u);
}

TEST(Completions, ANullErrorTextInDescribeStatementStillCallsBack) {
  World w;
  auto tasker = w.tasker();
  Started s = start(*tasker, 5);
  w.redshift->set_describe_response(s.id, {{"Id", s.id}, {"Status", "FAILED"}, {"Error", nullptr}});
  Json response =
      tasker->handle(batch({record("m", completion_body(s.name, s.id, "FAILED"))}), ctx());
  EXPECT_TRUE(failed_ids(response).empty());
  auto callbacks = w.sfn->callbacks();
  ASSERT_EQ(callbacks.size(), 1u);
  EXPECT_EQ(callbacks[0].kind, "failure");
  EXPECT_EQ(Json::parse(callbacks[0].cause)["error"], "");
  EXPECT_EQ(w.state->records()[0].state, RecordState::kDone);
}

// Step Functions whose first callback throws a std::exception that is not an rstasker::Error.
class SurprisingStepFunctions : public FakeStepFunctions {
 public:
  void send_task_success(const std::string& task_token, const std::string& output,
                         const aws::CallContext& context) override {
    if (!surprised_.exchange(true)) throw std::runtime_error("unexpected answer shape");
    FakeStepFunctions::send_task_success(task_token, output, context);
  }

 private:
  std::atomic<bool> surprised_{false};
};

TEST(Completions, AnUnexpectedExceptionGivesTheClaimBack) {
  World w;
  w.sfn = std::make_shared<SurprisingStepFunctions>();
  auto tasker = w.tasker();
  Started s = start(*tasker, 6);
  Json event = batch({record("m", completion_body(s.name, s.id, "FINISHED"))});
  EXPECT_EQ(failed_ids(tasker->handle(event, ctx())), std::vector<std::string>{"m"});
  EXPECT_EQ(w.state->records()[0].state, RecordState::kWaiting) << "the claim is still held";
  // So the redelivery completes it at once instead of waiting for the lease to run out.
  EXPECT_TRUE(failed_ids(tasker->handle(event, ctx())).empty());
  EXPECT_EQ(w.sfn->callbacks().size(), 1u);
  EXPECT_EQ(w.state->records()[0].state, RecordState::kDone);
}

TEST(Completions, AGoneWaiterIsFinalNotRetried) {
  World w;
  auto tasker = w.tasker();
  Started s = start(*tasker, 1);
  w.sfn->fail_token(s.token, Error("TaskTimedOut", "Task Timed Out", 400));
  Json response =
      tasker->handle(batch({record("m", completion_body(s.name, s.id, "ABORTED"))}), ctx());
  EXPECT_TRUE(failed_ids(response).empty());
  EXPECT_EQ(w.state->records()[0].state, RecordState::kDone);
}

TEST(Completions, DuplicatesInOneBatchAcrossBatchesAndConcurrentInvocationsCallBackOnce) {
  World w;
  auto tasker = w.tasker();
  std::vector<Started> started;
  for (int i = 0; i < 6; ++i) started.push_back(start(*tasker, i));
  auto rec = [&](const Started& s, int copy) {
    return record(s.id + "-" + std::to_string(copy), completion_body(s.name, s.id, "FINISHED"));
  };
  // Each completion three times in one batch.
  Json response =
      tasker->handle(batch({rec(started[0], 0), rec(started[0], 1), rec(started[0], 2)}), ctx());
  EXPECT_TRUE(failed_ids(response).empty());
  // Three times in three batches, one after another.
  for (int copy = 0; copy < 3; ++copy) tasker->handle(batch({rec(started[1], copy)}), ctx());
  // Three times at once, from three sandboxes.
  for (int i = 2; i < 6; ++i) {
    std::vector<std::thread> threads;
    std::vector<Json> responses(3);
    for (int copy = 0; copy < 3; ++copy) {
      threads.emplace_back([&, copy] {
        auto sandbox = w.tasker();
        responses[copy] = sandbox->handle(batch({rec(started[i], copy)}), ctx());
      });
    }
    for (auto& t : threads) t.join();
    // A copy that met a live claim is retried; its redelivery finds the statement done.
    for (int copy = 0; copy < 3; ++copy) {
      for (const auto& id : failed_ids(responses[copy])) {
        EXPECT_TRUE(failed_ids(tasker->handle(batch({rec(started[i], copy)}), ctx())).empty())
            << id;
      }
    }
  }
  // Counted as received, refused ones included: Step Functions refusing a second callback on a
  // closed task must not hide that it was sent.
  auto per_token = w.sfn->callback_requests();
  ASSERT_EQ(per_token.size(), started.size());
  for (const auto& [token, count] : per_token) EXPECT_EQ(count, 1u) << token;
  EXPECT_EQ(w.sfn->callbacks().size(), started.size());
}

class CrashAt : public ::testing::TestWithParam<std::string> {
 protected:
  // Options of an invocation that dies right after the step under test. Its lease has already
  // run out, as it has by the time SQS redelivers in production (the visibility timeout is longer
  // than the function's), so the next delivery may take the claim over.
  static CompletionOptions crashing() {
    CompletionOptions options;
    options.claim_grace = std::chrono::milliseconds(-1000);
    options.min_time_to_start = std::chrono::milliseconds(0);
    options.fault_hook = [step = GetParam()](std::string_view at) {
      if (at == step) throw SimulatedCrash{std::string(at)};
    };
    return options;
  }
};

TEST_P(CrashAt, RedeliveryAfterACrashStillCallsBackExactlyOnce) {
  World w;
  Started s = start(*w.tasker(), 7);
  Json event = batch({record("m", completion_body(s.name, s.id, "FINISHED"))});

  // The dying invocation is at its deadline, so its lease (deadline + grace) has run out.
  EXPECT_THROW(w.tasker(crashing())->handle(event, ctx(std::chrono::milliseconds(0))),
               SimulatedCrash);

  Json response = w.tasker()->handle(event, ctx());  // a fresh sandbox
  EXPECT_TRUE(failed_ids(response).empty());
  auto callbacks = w.sfn->callbacks();
  ASSERT_EQ(callbacks.size(), 1u) << "crash after " << GetParam();
  EXPECT_EQ(callbacks[0].kind, "success");
  // Sent once, not sent again and refused: after a crash past the callback, the heartbeat probe
  // is what keeps the redelivery from sending a second one.
  EXPECT_EQ(w.sfn->callback_requests(s.token), 1u) << "crash after " << GetParam();
  EXPECT_EQ(w.state->records()[0].state, RecordState::kDone);
  // Later duplicates change nothing.
  w.tasker()->handle(event, ctx());
  EXPECT_EQ(w.sfn->callback_requests(s.token), 1u);
}

// A CloudFormation response URL cannot be asked whether an answer arrived, so after a crash
// between the PUT and marking the record done the answer is PUT again: byte for byte the same
// body (an idempotent overwrite of the same S3 object), even when reconcile rather than the
// event finishes the statement the second time.
TEST_P(CrashAt, ACloudFormationWaiterGetsOneAnswerOrTheSameBodyTwice) {
  World w;
  Json create = {{"RequestType", "Create"},
                 {"ResponseURL", "https://cfn-responses.s3.amazonaws.com/r?X-Amz-Signature=s"},
                 {"StackId", "arn:aws:cloudformation:eu-west-1:012345678910:stack/app/1"},
                 {"RequestId", "req-1"},
                 {"LogicalResourceId", "Schema"},
                 {"ResourceType", "Custom::RedshiftSql"},
                 {"ResourceProperties", {{"CreateSql", "create schema s"}}}};
  Json started = w.tasker()->handle(create, ctx());
  ASSERT_EQ(started["Status"], "STARTED");
  const std::string name = started["StatementName"];
  const std::string id = started["StatementId"];
  w.redshift->set_status(id, "FAILED", "ERROR: permission denied for database dev");
  // An event without the statement id: the answer must still name the statement as the one
  // reconcile builds from DescribeStatement does.
  Json body = completion_body(name, id, "FAILED");
  body["detail"].erase("statementId");
  Json event = batch({record("m", body)});

  EXPECT_THROW(w.tasker(crashing())->handle(event, ctx(std::chrono::milliseconds(0))),
               SimulatedCrash);
  // The event is not redelivered this time: reconcile finds the statement instead.
  w.tasker()->handle({{"action", "reconcile"}, {"olderThanSeconds", 0}}, ctx());
  w.tasker()->handle(event, ctx());  // a late duplicate changes nothing

  auto responses = w.cfn->responses();
  ASSERT_EQ(responses.size(), GetParam() == "called_back" ? 2u : 1u)
      << "crash after " << GetParam();
  for (const auto& response : responses) EXPECT_EQ(response.text, responses[0].text);
  EXPECT_EQ(responses[0].body["Status"], "FAILED");
  EXPECT_NE(responses[0].body["Reason"].get<std::string>().find("permission denied"),
            std::string::npos);
  // A failed Create's id is derived from the request, not made up per attempt.
  EXPECT_NE(responses[0].body["PhysicalResourceId"].get<std::string>().find("create-failed"),
            std::string::npos);
  EXPECT_EQ(w.state->records()[0].state, RecordState::kDone);
}

INSTANTIATE_TEST_SUITE_P(EveryStep, CrashAt,
                         ::testing::Values("claimed", "called_back", "finished"));

TEST(Completions, ALiveClaimMakesOtherDeliveriesRetry) {
  World w;
  Started s = start(*w.tasker(), 3);
  CompletionOptions crashing;
  crashing.fault_hook = [](std::string_view at) {
    if (at == "claimed") throw SimulatedCrash{std::string(at)};
  };
  Json event = batch({record("m", completion_body(s.name, s.id, "FINISHED"))});
  EXPECT_THROW(w.tasker(crashing)->handle(event, ctx()), SimulatedCrash);
  // The lease (deadline + grace) is still running: the redelivery must come back later.
  EXPECT_EQ(failed_ids(w.tasker()->handle(event, ctx())), std::vector<std::string>{"m"});
  EXPECT_EQ(w.sfn->callback_requests(s.token), 0u);
}

TEST(Completions, CompletionReleasesTheSingletonLock) {
  World w;
  auto tasker = w.tasker();
  Started s = start(*tasker, 4, "executeSingletonStatement");
  ASSERT_EQ(w.state->locks().size(), 1u);
  tasker->handle(batch({record("m", completion_body(s.name, s.id, "FINISHED"))}), ctx());
  EXPECT_TRUE(w.state->locks().empty());
}

// Through the whole binary's path (dispatch, SQS completion, answer): a Custom::RedshiftUser
// Update whose SQL fails is remembered, and CloudFormation's rollback of it runs no SQL.
TEST(Completions, TheRollbackOfAUserUpdateWhoseSqlFailedRunsNoSql) {
  World w;
  auto tasker = w.tasker();
  Json update = {{"RequestType", "Update"},
                 {"ResponseURL", "https://cfn-response.example/update"},
                 {"StackId", "arn:aws:cloudformation:eu-west-1:012345678910:stack/app/1"},
                 {"RequestId", "update-1"},
                 {"LogicalResourceId", "EtlUser"},
                 {"PhysicalResourceId", "EtlUser:0123456789abcdef"},
                 {"ResourceType", "Custom::RedshiftUser"},
                 {"ResourceProperties", {{"username", "etl_writer"}}},
                 {"OldResourceProperties", {{"username", "etl_loader"}}}};
  Json started = tasker->handle(update, ctx());
  ASSERT_EQ(started["Status"], "STARTED");
  const std::string id = started["StatementId"];
  w.redshift->set_status(id, "FAILED", "ERROR: permission denied");
  Json body = completion_body(started["StatementName"], id, "FAILED");
  EXPECT_TRUE(failed_ids(tasker->handle(batch({record("m1", body)}), ctx())).empty());
  ASSERT_EQ(w.cfn->responses().size(), 1u);
  EXPECT_EQ(w.cfn->responses()[0].body["Status"], "FAILED");

  Json rollback = update;
  rollback["RequestId"] = "rollback-1";
  rollback["ResponseURL"] = "https://cfn-response.example/rollback";
  std::swap(rollback["ResourceProperties"], rollback["OldResourceProperties"]);
  EXPECT_EQ(tasker->handle(rollback, ctx())["Status"], "SUCCESS");
  EXPECT_EQ(w.redshift->executed().size(), 1u) << "the rollback ran SQL";
  ASSERT_EQ(w.cfn->responses().size(), 2u);
  EXPECT_EQ(w.cfn->responses()[1].url, "https://cfn-response.example/rollback");
  EXPECT_EQ(w.cfn->responses()[1].body["Status"], "SUCCESS");
}

TEST(Completions, RecordsNotStartedBeforeTheDeadlineAreLeftForRedelivery) {
  World w;
  auto tasker = w.tasker();
  Started a = start(*tasker, 1), b = start(*tasker, 2);
  Json response = tasker->handle(batch({record("ma", completion_body(a.name, a.id, "FINISHED")),
                                        record("mb", completion_body(b.name, b.id, "FINISHED"))}),
                                 ctx(std::chrono::milliseconds(1000)));  // < min_time_to_start
  auto failed = failed_ids(response);
  std::sort(failed.begin(), failed.end());
  EXPECT_EQ(failed, (std::vector<std::string>{"ma", "mb"}));
  EXPECT_TRUE(w.sfn->callbacks().empty());
  for (const auto& r : w.state->records()) EXPECT_EQ(r.state, RecordState::kWaiting);
}

TEST(Completions, ARecordsCallbackStopsEarlyEnoughToMarkItDoneWithinTheWorkDeadline) {
  World w;
  CompletionOptions options;
  options.finish_reserve = std::chrono::seconds(5);
  auto tasker = w.tasker(options);
  Started s = start(*tasker, 1);
  // As in Lambda: the work deadline is kInvocationReserve before the invocation's hard deadline,
  // which is kept for returning the batch response.
  auto invocation = aws::CallContext::for_invocation(Deadline::after(std::chrono::seconds(40)));
  const std::int64_t work_deadline = invocation.deadline.epoch_ms();
  EXPECT_LE(work_deadline, invocation.hard_deadline.epoch_ms() - 900);
  Json response =
      tasker->handle(batch({record("m", completion_body(s.name, s.id, "FINISHED"))}), invocation);
  EXPECT_TRUE(failed_ids(response).empty());
  auto callbacks = w.sfn->callbacks();
  ASSERT_EQ(callbacks.size(), 1u);
  // Deadlines read as wall-clock times differ by milliseconds; the margins here are seconds.
  EXPECT_LE(callbacks[0].deadline_epoch_ms, work_deadline - 4000)
      << "the callback may run until the record can no longer be marked done";
  EXPECT_GE(callbacks[0].deadline_epoch_ms, work_deadline - 6000);
  EXPECT_EQ(w.state->records()[0].state, RecordState::kDone);
}

TEST(Reconcile, FinishesTerminalStatementsWhoseEventNeverCame) {
  World w;
  auto tasker = w.tasker();
  Started done = start(*tasker, 1), running = start(*tasker, 2), failed = start(*tasker, 3);
  w.redshift->set_status(done.id, "FINISHED");
  w.redshift->set_status(failed.id, "FAILED", "ERROR: division by zero");
  Json summary = tasker->handle({{"action", "reconcile"}, {"olderThanSeconds", 0}}, ctx());
  EXPECT_EQ(summary["examined"], 3);
  EXPECT_EQ(summary["completed"], 2);
  EXPECT_EQ(summary["stillRunning"], 1);
  EXPECT_EQ(summary["more"], false);
  auto callbacks = w.sfn->callbacks();
  ASSERT_EQ(callbacks.size(), 2u);
  for (const auto& cb : callbacks) {
    if (cb.task_token == done.token) {
      Json output = Json::parse(cb.output);
      EXPECT_EQ(output["detail"]["statementName"], done.name);
      EXPECT_EQ(output["detail"]["state"], "FINISHED");
      EXPECT_EQ(output["source"], "aws.redshift-data");
    } else {
      EXPECT_EQ(cb.task_token, failed.token);
      EXPECT_EQ(Json::parse(cb.cause)["error"], "ERROR: division by zero");
    }
  }
  // The late event for a reconciled statement is a duplicate.
  Json late =
      tasker->handle(batch({record("m", completion_body(done.name, done.id, "FINISHED"))}), ctx());
  EXPECT_TRUE(failed_ids(late).empty());
  EXPECT_EQ(w.sfn->callback_requests(done.token), 1u);
  EXPECT_EQ(w.sfn->callback_requests(failed.token), 1u);
  // A second run only sees what still runs.
  Json second = tasker->handle({{"action", "reconcile"}, {"olderThanSeconds", 0}}, ctx());
  EXPECT_EQ(second["examined"], 1);
}

TEST(Reconcile, NullsInDescribeStatementDoNotStopTheRun) {
  World w;
  auto tasker = w.tasker();
  Started s = start(*tasker, 1);
  w.redshift->set_describe_response(s.id, {{"Id", s.id},
                                           {"Status", "FINISHED"},
                                           {"Error", nullptr},
                                           {"ResultRows", nullptr},
                                           {"RedshiftQueryId", nullptr}});
  Json summary = tasker->handle({{"action", "reconcile"}, {"olderThanSeconds", 0}}, ctx());
  EXPECT_EQ(summary["completed"], 1);
  ASSERT_EQ(w.sfn->callbacks().size(), 1u);
  EXPECT_EQ(Json::parse(w.sfn->callbacks()[0].output)["detail"]["rows"], -1);
}

TEST(Reconcile, PagesPastStatementsThatAreStillRunning) {
  World w;
  auto tasker = w.tasker();
  // More statements still running than one page of the index holds, all older than the one
  // whose event was lost: reconcile must still get to it.
  for (int i = 0; i < 250; ++i) start(*tasker, i);
  Started lost = start(*tasker, 250);
  w.redshift->set_status(lost.id, "FINISHED");
  Json summary = tasker->handle({{"action", "reconcile"}, {"olderThanSeconds", 0}}, ctx());
  EXPECT_EQ(summary["examined"], 251);
  EXPECT_EQ(summary["stillRunning"], 250);
  EXPECT_EQ(summary["completed"], 1);
  EXPECT_EQ(summary["more"], false);
  EXPECT_EQ(w.sfn->callback_requests(lost.token), 1u);
}

TEST(Reconcile, AStatementTheDataApiNoLongerKnowsFailsAsUnknownAfterItsRetention) {
  World w;
  auto tasker = w.tasker();
  const std::int64_t hour_ms = 3600 * 1000;
  auto waiting = [&](int i, std::int64_t age_ms) {
    StatementRecord r;
    r.key = {arn(i), "1790000000.00000" + std::to_string(i)};
    r.statement_id = "forgotten-" + std::to_string(i);  // DescribeStatement: not found
    r.waiter.kind = WaiterKind::kStepFunctions;
    r.waiter.task_token = "TOKEN-" + std::to_string(i) + "-abcdef";
    r.created_at_ms = now_epoch_ms() - age_ms;
    r.expires_at_s = now_epoch_seconds() + 7 * 86400;
    EXPECT_TRUE(w.state->insert(r, ctx()));
    return r;
  };
  StatementRecord expired = waiting(1, 25 * hour_ms);
  StatementRecord recent = waiting(2, 2 * hour_ms);

  Json summary = tasker->handle({{"action", "reconcile"}, {"olderThanSeconds", 0}}, ctx());
  EXPECT_EQ(summary["outcomeUnknown"], 1);
  EXPECT_EQ(summary["retryLater"], 1) << "within 24 hours, not found may still be transient";
  auto callbacks = w.sfn->callbacks();
  ASSERT_EQ(callbacks.size(), 1u);
  EXPECT_EQ(callbacks[0].task_token, expired.waiter.task_token);
  EXPECT_EQ(callbacks[0].kind, "failure");
  EXPECT_EQ(callbacks[0].error, "FAILED");
  Json cause = Json::parse(callbacks[0].cause);
  EXPECT_EQ(cause["statementId"], expired.statement_id);
  EXPECT_NE(cause["error"].get<std::string>().find("outcome is unknown"), std::string::npos)
      << cause.dump();
  EXPECT_EQ(w.state->get(expired.key, ctx())->state, RecordState::kDone);
  EXPECT_EQ(w.state->get(recent.key, ctx())->state, RecordState::kWaiting);

  // The next run does not call the expired one again.
  Json second = tasker->handle({{"action", "reconcile"}, {"olderThanSeconds", 0}}, ctx());
  EXPECT_EQ(second["examined"], 1);
  EXPECT_EQ(w.sfn->callback_requests(expired.waiter.task_token), 1u);
}

// A CloudFormation request whose statement never started (the invocation died, or its start's
// reply was lost and nothing could be recorded) is answered FAILED by reconcile: CloudFormation
// would otherwise wait an hour. A retry of the same request after that runs no SQL: the answer
// is given, and a statement started now would have its completion ignored.
TEST(Reconcile, ANeverStartedCloudFormationRequestIsAnsweredFailed) {
  World w;
  Json create = {{"RequestType", "Create"},
                 {"ResponseURL", "https://cfn-responses.s3.amazonaws.com/r?X-Amz-Signature=s"},
                 {"StackId", "arn:aws:cloudformation:eu-west-1:012345678910:stack/app/1"},
                 {"RequestId", "req-never"},
                 {"LogicalResourceId", "Schema"},
                 {"ResourceType", "Custom::RedshiftSql"},
                 {"ResourceProperties", {{"CreateSql", "create schema s"}}}};
  // The start gets no answer and the invocation has no time left to ask again: the record stays
  // WAITING with no statement id, as after an invocation that died between the insert and the
  // start.
  w.redshift->fail_next_execute(Error("InternalFailure", "reply lost", 500, true));
  w.state->before_operation = [](std::string_view op) {
    if (op == "mark_start_failed") throw Error("InternalServerError", "ddb down", 500, true);
  };
  EXPECT_THROW(w.tasker()->handle(create, ctx(std::chrono::milliseconds(250))), Error);
  w.state->before_operation = nullptr;
  ASSERT_EQ(w.state->records().size(), 1u);
  StatementRecord stuck = w.state->records()[0];
  ASSERT_EQ(stuck.state, RecordState::kWaiting);
  ASSERT_TRUE(stuck.statement_id.empty());
  stuck.created_at_ms -= 20LL * 60 * 1000;  // older than any invocation lives
  w.state->replace(stuck);

  Json summary = w.tasker()->handle({{"action", "reconcile"}, {"olderThanSeconds", 0}}, ctx());
  EXPECT_EQ(summary["neverStarted"], 1);
  auto responses = w.cfn->responses();
  ASSERT_EQ(responses.size(), 1u) << "CloudFormation was not answered";
  EXPECT_EQ(responses[0].body["Status"], "FAILED");
  EXPECT_NE(responses[0].body["Reason"].get<std::string>().find("never started"), std::string::npos)
      << responses[0].body.dump();
  EXPECT_NE(responses[0].body["PhysicalResourceId"].get<std::string>().find("create-failed"),
            std::string::npos);

  // CloudFormation (or Lambda's retry) sends the same request again: nothing runs.
  w.tasker()->handle(create, ctx());
  EXPECT_TRUE(w.redshift->executed().empty());
  EXPECT_EQ(w.cfn->responses().size(), 1u);
  Json again = w.tasker()->handle({{"action", "reconcile"}, {"olderThanSeconds", 0}}, ctx());
  EXPECT_EQ(again["examined"], 0);
}

// A record still waiting as its TTL comes near (its statement runs long, its callback keeps
// failing) is kept alive by reconcile: it is never forgotten before it is answered.
TEST(Reconcile, KeepsRecordsThatStillWaitAlive) {
  World w;
  auto tasker = w.tasker();
  Started running = start(*tasker, 1);
  Started unanswered = start(*tasker, 2);
  w.redshift->set_status(unanswered.id, "FINISHED");
  w.sfn->fail_token(unanswered.token, Error("ServiceUnavailable", "down", 503, true));
  for (StatementRecord r : w.state->records()) {
    r.expires_at_s = now_epoch_seconds() + 3600;  // an hour left
    w.state->replace(r);
  }
  Json summary = tasker->handle({{"action", "reconcile"}, {"olderThanSeconds", 0}}, ctx());
  EXPECT_EQ(summary["stillRunning"], 1);
  EXPECT_EQ(summary["retryLater"], 1);
  for (const StatementRecord& r : w.state->records()) {
    EXPECT_GE(r.expires_at_s, now_epoch_seconds() + 2 * 86400 - 60) << r.key.statement_name();
  }
}

TEST(Reconcile, RespectsTheThreshold) {
  World w;
  auto tasker = w.tasker();
  Started s = start(*tasker, 1);
  w.redshift->set_status(s.id, "FINISHED");
  Json summary = tasker->handle({{"action", "reconcile"}, {"olderThanSeconds", 3600}}, ctx());
  EXPECT_EQ(summary["examined"], 0);
  EXPECT_TRUE(w.sfn->callbacks().empty());
}

TEST(Reconcile, RacingCompletionEventsStillGiveOneCallback) {
  World w;
  auto tasker = w.tasker();
  std::vector<Started> started;
  for (int i = 0; i < 8; ++i) started.push_back(start(*tasker, i));
  for (const auto& s : started) w.redshift->set_status(s.id, "FINISHED");
  std::thread reconcile([&] {
    w.tasker()->handle({{"action", "reconcile"}, {"olderThanSeconds", 0}}, ctx());
  });
  std::vector<Json> records;
  for (const auto& s : started)
    records.push_back(record(s.id, completion_body(s.name, s.id, "FINISHED")));
  Json response = w.tasker()->handle(batch(records), ctx());
  reconcile.join();
  for (const auto& id : failed_ids(response)) {  // met reconcile's live claim: redelivered
    for (const auto& s : started) {
      if (s.id == id)
        w.tasker()->handle(batch({record(id, completion_body(s.name, s.id, "FINISHED"))}), ctx());
    }
  }
  auto per_token = w.sfn->callback_requests();
  EXPECT_EQ(per_token.size(), started.size());
  for (const auto& [token, count] : per_token) EXPECT_EQ(count, 1u) << token;
}

}  // namespace
}  // namespace rstasker::tasker
