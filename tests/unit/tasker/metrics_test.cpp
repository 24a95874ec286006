// The tasker's metrics over in-memory fakes: every invocation writes valid EMF documents whose
// counts match what happened (starts, refusals, callbacks by waiter and outcome, duplicates,
// foreign events, failed and gone callbacks, cold starts).
#include "rstasker/tasker/metrics.hpp"

#include <gtest/gtest.h>

#include <cstdio>

#include "rstasker/common/deadline.hpp"
#include "rstasker/common/error.hpp"
#include "rstasker/tasker/tasker.hpp"
#include "support/emf.hpp"
#include "support/fakes.hpp"

namespace rstasker::tasker {
namespace {

using rstasker::testing::emf_problem;
using rstasker::testing::emf_totals;
using rstasker::testing::emf_values;

aws::CallContext call_context() {
  return {Deadline::after(std::chrono::seconds(30)), {}};
}

Json completion_event(const std::string& name, const std::string& id, const std::string& state,
                      const std::string& time = "2026-11-01T21:14:26Z") {
  Json body = {{"version", "0"},
               {"id", "e-" + id},
               {"detail-type", "Redshift Data Statement Status Change"},
               {"source", "aws.redshift-data"},
               {"time", time},
               {"detail", {{"statementName", name}, {"statementId", id}, {"state", state}}}};
  return body;
}

Json sqs_event(std::vector<std::pair<std::string, Json>> messages) {
  Json records = Json::array();
  for (auto& [id, body] : messages) {
    records.push_back({{"messageId", id},
                       {"eventSource", "aws:sqs"},
                       {"body", body.is_string() ? body.get<std::string>() : dump_json(body)}});
  }
  return {{"Records", records}};
}

// A Tasker over fakes whose metrics go to a temporary file; each invocation's documents are read
// back after it.
class TaskerMetrics : public ::testing::Test {
 protected:
  void SetUp() override {
    out_ = std::tmpfile();
    ASSERT_NE(out_, nullptr);
    metrics::init({true, "RedshiftTasker", "tasker-fn", out_});
    tasker_ = make_tasker();
  }
  void TearDown() override {
    metrics::init({});
    std::fclose(out_);
  }

  std::unique_ptr<Tasker> make_tasker() {
    return std::make_unique<Tasker>(rstasker::testing::test_config(),
                                    Dependencies{redshift_, state_, sfn_, cfn_});
  }

  // Handles `event` (an error is part of the scenario) and returns the documents it wrote.
  std::vector<Json> invoke(const Json& event, Tasker* tasker = nullptr) {
    const long before = std::ftell(out_);
    try {
      last_ = (tasker ? tasker : tasker_.get())->handle(event, call_context());
    } catch (const Error& e) {
      last_ = {{"errorType", e.name()}};
    }
    std::fseek(out_, before, SEEK_SET);
    std::vector<Json> docs;
    std::string line;
    for (int c; (c = std::fgetc(out_)) != EOF;) {
      if (c != '\n') {
        line.push_back(static_cast<char>(c));
        continue;
      }
      docs.push_back(Json::parse(line));
      line.clear();
    }
    EXPECT_TRUE(line.empty()) << "a document without its newline";
    for (const Json& doc : docs) EXPECT_EQ(emf_problem(doc), "") << doc.dump();
    all_.insert(all_.end(), docs.begin(), docs.end());
    return docs;
  }

  std::pair<std::string, std::string> start(int i, bool with_token = true) {
    Json event = {
        {"action", "executeStatement"},
        {"sqlStatement", "call sp(" + std::to_string(i) + ")"},
        {"executionArn", "arn:aws:states:eu-west-1:1:execution:M:run-" + std::to_string(i)}};
    if (with_token) event["taskToken"] = "TOKEN-" + std::to_string(i) + "-abcdefgh";
    invoke(event);
    return {last_.at("StatementName"), last_.at("Id")};
  }

  std::shared_ptr<rstasker::testing::FakeRedshiftData> redshift_ =
      std::make_shared<rstasker::testing::FakeRedshiftData>();
  std::shared_ptr<rstasker::testing::MemoryStateTable> state_ =
      std::make_shared<rstasker::testing::MemoryStateTable>();
  std::shared_ptr<rstasker::testing::FakeStepFunctions> sfn_ =
      std::make_shared<rstasker::testing::FakeStepFunctions>();
  std::shared_ptr<rstasker::testing::FakeCfnResponder> cfn_ =
      std::make_shared<rstasker::testing::FakeCfnResponder>();
  std::FILE* out_ = nullptr;
  std::unique_ptr<Tasker> tasker_;
  Json last_;
  std::vector<Json> all_;
};

TEST_F(TaskerMetrics, StartsRefusalsAndFailuresAreCounted) {
  auto first = invoke({{"action", "executeSingletonStatement"},
                       {"sqlStatement", "vacuum"},
                       {"executionArn", "arn:aws:states:eu-west-1:1:execution:M:a"}});
  EXPECT_EQ(emf_totals(first)["ColdStart"], 1) << "the first invocation of a sandbox";
  EXPECT_EQ(emf_totals(first)["StatementsStarted|Waiter=None"], 1);
  auto refused = invoke({{"action", "executeSingletonStatement"},
                         {"sqlStatement", "vacuum"},
                         {"executionArn", "arn:aws:states:eu-west-1:1:execution:M:b"}});
  EXPECT_EQ(last_["errorType"], "ConcurrentExecution");
  EXPECT_EQ(emf_totals(refused)["SingletonRefused"], 1);
  EXPECT_EQ(emf_totals(refused).count("ColdStart"), 0u) << "only the first invocation is cold";

  redshift_->fail_next_execute(Error("ValidationException", "bad SQL", 400));
  auto failed = invoke({{"action", "executeStatement"},
                        {"sqlStatement", "selec 1"},
                        {"executionArn", "arn:aws:states:eu-west-1:1:execution:M:c"},
                        {"taskToken", "TOKEN-c-abcdefgh"}});
  EXPECT_EQ(emf_totals(failed)["StartFailures|Waiter=StepFunctions"], 1);
  EXPECT_EQ(emf_totals(failed).count("StatementsStarted|Waiter=StepFunctions"), 0u);

  start(1);
  start(2);
  auto totals = emf_totals(all_);
  EXPECT_EQ(totals["StatementsStarted|Waiter=StepFunctions"], 2);
  EXPECT_EQ(totals["StatementsStarted|Waiter=None"], 1);
}

TEST_F(TaskerMetrics, CompletionBatchesCountCallbacksByWaiterAndOutcome) {
  auto [name1, id1] = start(1);
  auto [name2, id2] = start(2);
  auto [name3, id3] = start(3);
  auto [name4, id4] = start(4);
  auto [name5, id5] = start(5, /*with_token=*/false);
  sfn_->fail_token("TOKEN-3-abcdefgh", Error("TaskTimedOut", "Task Timed Out", 400));
  sfn_->fail_token("TOKEN-4-abcdefgh", Error("ServiceUnavailable", "try later", 503, true));

  auto docs = invoke(sqs_event({
      {"m1", completion_event(name1, id1, "FINISHED", "2026-11-01T21:14:26.500Z")},
      {"m1-copy", completion_event(name1, id1, "FINISHED")},
      {"m2", completion_event(name2, id2, "FAILED")},
      {"m3", completion_event(name3, id3, "ABORTED")},
      {"m4", completion_event(name4, id4, "FINISHED")},
      {"m5", completion_event(name5, id5, "FINISHED")},
      {"m6", Json("not an event")},
      {"m7", completion_event("someone-else", "x", "FINISHED")},
  }));
  auto totals = emf_totals(docs);
  EXPECT_EQ(totals["CallbacksSent|Waiter=StepFunctions|Outcome=FINISHED"], 1);
  EXPECT_EQ(totals["CallbacksSent|Waiter=StepFunctions|Outcome=FAILED"], 1);
  EXPECT_EQ(totals.count("CallbacksSent|Waiter=StepFunctions|Outcome=ABORTED"), 0u)
      << "the waiter was gone";
  EXPECT_EQ(totals["WaiterGone|Waiter=StepFunctions"], 1);
  EXPECT_EQ(totals["CallbackFailures|Waiter=StepFunctions"], 1);
  EXPECT_EQ(totals["StatementsCompleted|Waiter=StepFunctions|Outcome=FINISHED"], 1);
  EXPECT_EQ(totals["StatementsCompleted|Waiter=StepFunctions|Outcome=FAILED"], 1);
  EXPECT_EQ(totals["StatementsCompleted|Waiter=StepFunctions|Outcome=ABORTED"], 1);
  EXPECT_EQ(totals["StatementsCompleted|Waiter=None|Outcome=FINISHED"], 1);
  EXPECT_EQ(totals["DuplicateEvents"], 1);
  EXPECT_EQ(totals["ForeignEvents"], 2);
  // One latency per callback made, measured from the event's time (in the past: > 0).
  auto latency = emf_values(docs, "CallbackLatency|Waiter=StepFunctions|Outcome=FINISHED");
  ASSERT_EQ(latency.size(), 1u);
  EXPECT_GT(latency[0], 0);
  EXPECT_EQ(emf_values(docs, "StatementDuration|Waiter=None|Outcome=FINISHED").size(), 1u);

  // The redelivered duplicate is acknowledged and counted; the failed callback now succeeds.
  sfn_->clear_failure("TOKEN-4-abcdefgh");
  auto again = invoke(sqs_event({{"m1", completion_event(name1, id1, "FINISHED")},
                                 {"m4", completion_event(name4, id4, "FINISHED")}}));
  auto totals2 = emf_totals(again);
  EXPECT_EQ(totals2["DuplicateEvents"], 1);
  EXPECT_EQ(totals2["CallbacksSent|Waiter=StepFunctions|Outcome=FINISHED"], 1);
  EXPECT_EQ(totals2.count("CallbackFailures|Waiter=StepFunctions"), 0u);
}

TEST_F(TaskerMetrics, ReconcileReportsWhatItCompletedEvenWhenNothing) {
  auto docs = invoke({{"action", "reconcile"}, {"olderThanSeconds", 1}});
  auto totals = emf_totals(docs);
  ASSERT_EQ(totals.count("ReconcileCompleted"), 1u) << "a zero is a data point for the alarm";
  EXPECT_EQ(totals["ReconcileCompleted"], 0);
  EXPECT_EQ(totals["ReconcileOutcomeUnknown"], 0);
}

TEST_F(TaskerMetrics, NothingIsWrittenWhenMetricsAreDisabled) {
  metrics::init({false, "RedshiftTasker", "tasker-fn", out_});
  EXPECT_TRUE(invoke({{"action", "reconcile"}}).empty());
}

TEST_F(TaskerMetrics, ListWaitingPagesThroughWhatWaitsWithoutSecrets) {
  auto [name1, id1] = start(1);
  auto [name2, id2] = start(2);
  invoke({{"action", "executeSingletonStatement"},
          {"sqlStatement", "vacuum"},
          {"executionArn", "arn:aws:states:eu-west-1:1:execution:M:s"}});
  const std::string singleton = last_.at("StatementName");

  invoke({{"action", "listWaiting"}, {"limit", 2}});
  const Json first = last_;
  ASSERT_EQ(first["waiting"].size(), 2u) << first.dump();
  ASSERT_TRUE(first.contains("nextToken"));
  EXPECT_EQ(first["waiting"][0]["statementName"], name1) << "oldest first";
  EXPECT_EQ(first["waiting"][0]["statementId"], id1);
  EXPECT_EQ(first["waiting"][0]["waiter"], "StepFunctions");
  EXPECT_EQ(first["waiting"][0]["target"], "arn:aws:states:eu-west-1:1:execution:M:run-1");
  EXPECT_EQ(first["waiting"][0]["state"], "WAITING");
  EXPECT_GE(first["waiting"][0]["ageSeconds"].get<std::int64_t>(), 0);
  EXPECT_TRUE(first["waiting"][0]["startedAt"].get<std::string>().ends_with("Z"));
  invoke({{"action", "listWaiting"}, {"limit", 2}, {"nextToken", first["nextToken"]}});
  const Json second = last_;
  ASSERT_EQ(second["waiting"].size(), 1u) << second.dump();
  EXPECT_EQ(second["waiting"][0]["statementName"], singleton);
  EXPECT_EQ(second["waiting"][0]["waiter"], "None");
  EXPECT_EQ(second["waiting"][0]["singleton"], true);
  EXPECT_FALSE(second.contains("nextToken"));
  EXPECT_EQ(first.dump().find("TOKEN-"), std::string::npos) << "no task token is listed";

  // A completed statement leaves the list.
  invoke(sqs_event({{"m1", completion_event(name1, id1, "FINISHED")}}));
  invoke({{"action", "listWaiting"}});
  ASSERT_EQ(last_["waiting"].size(), 2u) << last_.dump();
  EXPECT_EQ(last_["waiting"][0]["statementName"], name2);

  invoke({{"action", "listWaiting"}, {"limit", 0}});
  EXPECT_EQ(last_["errorType"], "InvalidRequest");
  invoke({{"action", "listWaiting"}, {"limit", 101}});
  EXPECT_EQ(last_["errorType"], "InvalidRequest");
}

// Reconcile's last visit of a statement that still runs is listed: when, and what it found.
TEST_F(TaskerMetrics, ListWaitingShowsReconcilesLastVisit) {
  auto [name, id] = start(1);
  invoke({{"action", "listWaiting"}});
  ASSERT_EQ(last_["waiting"].size(), 1u) << last_.dump();
  EXPECT_FALSE(last_["waiting"][0].contains("lastReconcileAt")) << "not visited yet";

  const std::int64_t before = rstasker::now_epoch_ms() / 1000 * 1000;
  invoke({{"action", "reconcile"}, {"olderThanSeconds", 0}});
  ASSERT_EQ(last_.value("stillRunning", -1), 1) << last_.dump();
  invoke({{"action", "listWaiting"}});
  ASSERT_EQ(last_["waiting"].size(), 1u) << last_.dump();
  const Json& item = last_["waiting"][0];
  EXPECT_EQ(item.value("lastReconcileResult", ""), "stillRunning") << item.dump();
  ASSERT_TRUE(item.contains("lastReconcileAt")) << item.dump();
  EXPECT_GE(item["lastReconcileAt"].get<std::string>(), rstasker::iso8601_utc(before));
}

TEST(EventTime, ReadsEventBridgeTimesAndRefusesOthers) {
  EXPECT_EQ(metric::event_time_ms({{"time", "1970-01-01T00:00:01Z"}}), 1000);
  EXPECT_EQ(metric::event_time_ms({{"time", "2026-11-01T21:14:26Z"}}), 1793567666000);
  EXPECT_EQ(metric::event_time_ms({{"time", "2026-11-01T21:14:26.5Z"}}), 1793567666500);
  EXPECT_EQ(metric::event_time_ms({{"time", "2026-11-01T21:14:26.123456Z"}}), 1793567666123);
  EXPECT_EQ(metric::event_time_ms({{"time", "2026-11-01 21:14:26"}}), std::nullopt);
  EXPECT_EQ(metric::event_time_ms({{"time", "2026-11-01T21:14:26+01:00"}}), std::nullopt);
  EXPECT_EQ(metric::event_time_ms(Json::object()), std::nullopt);
}

}  // namespace
}  // namespace rstasker::tasker
