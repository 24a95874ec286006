// The DynamoDB state table against moto (signatures checked): conditional writes, claims, the
// sparse waiting index, singleton locks, and the 20-caller singleton race through the tasker.
#include <gtest/gtest.h>

#include <algorithm>
#include <atomic>
#include <functional>
#include <thread>

#include "rstasker/aws/endpoints.hpp"
#include "rstasker/aws/http.hpp"
#include "rstasker/common/error.hpp"
#include "rstasker/common/text.hpp"
#include "rstasker/services/dynamodb.hpp"
#include "rstasker/tasker/tasker.hpp"
#include "support/fakes.hpp"
#include "support/lost_reply_transport.hpp"
#include "support/moto_server.hpp"

namespace rstasker::tasker {
namespace {

using rstasker::testing::LostReplyTransport;
using rstasker::testing::MotoOptions;
using rstasker::testing::MotoServer;

class StateTableTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (MotoServer::unavailable_reason()) return;
    try {
      moto_ = std::make_unique<MotoServer>(MotoOptions{.signature_checking = true});
    } catch (const std::exception& e) {
      start_error_ = e.what();
    }
  }
  static void TearDownTestSuite() { moto_.reset(); }

  void SetUp() override {
    RSTASKER_SKIP_IF_UNAVAILABLE(MotoServer::unavailable_reason());
    ASSERT_NE(moto_, nullptr) << "moto did not start: " << start_error_;
    auto client = std::make_shared<const aws::JsonClient>(
        aws::protocol::kDynamoDb,
        aws::resolve_endpoint(aws::service::kDynamoDb, moto_->region(), moto_->env()),
        moto_->credentials(), lossy_);
    db_ = std::make_shared<const services::DynamoDb>(client);
    // A table per test keeps tests independent.
    table_ = "state-" + random_uuid().substr(0, 8);
    db_->create_table(state_table_definition(table_), ctx_);
    table = make_dynamodb_state_table(db_, table_);
  }

  StatementRecord waiting_record(const std::string& id, std::int64_t created_ms,
                                 WaiterKind kind = WaiterKind::kStepFunctions) {
    StatementRecord r;
    r.key = {id, StatementKey::new_invocation_id()};
    r.waiter.kind = kind;
    r.waiter.task_token = kind == WaiterKind::kStepFunctions ? "token-" + id : "";
    r.created_at_ms = created_ms;
    r.expires_at_s = now_epoch_seconds() + 86400;
    return r;
  }

  // A tasker over this test's table, with fakes for the other services.
  struct TaskerOverTable {
    Config config;
    std::shared_ptr<rstasker::testing::FakeRedshiftData> redshift;
    std::shared_ptr<StateTable> state;
    std::shared_ptr<rstasker::testing::FakeStepFunctions> sfn;
    std::unique_ptr<Tasker> tasker;
  };
  TaskerOverTable tasker_over_table() {
    TaskerOverTable t;
    t.config.target = {"cluster-1", "", "dev", "admin", ""};
    t.config.table_name = table_;
    t.config.region = moto_->region();
    t.redshift = std::make_shared<rstasker::testing::FakeRedshiftData>();
    t.state = std::move(table);
    t.sfn = std::make_shared<rstasker::testing::FakeStepFunctions>();
    t.tasker = std::make_unique<Tasker>(
        t.config, Dependencies{t.redshift, t.state, t.sfn,
                               std::make_shared<rstasker::testing::FakeCfnResponder>()});
    return t;
  }

  // The SQS batch of the completion event of `started` (an execute action's response), FINISHED.
  static Json finished_batch(const Json& started) {
    Json body = {{"source", "aws.redshift-data"},
                 {"detail-type", "Redshift Data Statement Status Change"},
                 {"detail",
                  {{"statementName", started["StatementName"]},
                   {"statementId", started["Id"]},
                   {"state", "FINISHED"}}}};
    return {{"Records",
             {{{"messageId", "m1"}, {"eventSource", "aws:sqs"}, {"body", dump_json(body)}}}}};
  }

  static inline std::unique_ptr<MotoServer> moto_;
  static inline std::string start_error_;
  // Every call passes it; a test makes it lose the replies of chosen writes after moto applied
  // them.
  std::shared_ptr<LostReplyTransport> lossy_ =
      std::make_shared<LostReplyTransport>(aws::make_curl_transport());
  std::shared_ptr<const services::DynamoDb> db_;
  std::string table_;
  std::unique_ptr<StateTable> table;
  aws::CallContext ctx_{Deadline::after(std::chrono::seconds(60)), {}};
};

TEST_F(StateTableTest, InsertIsConditionalAndRoundTripsEveryField) {
  StatementRecord r = waiting_record("exec-1", now_epoch_ms());
  r.waiter.kind = WaiterKind::kCloudFormation;
  r.waiter.cloudformation = {{"ResponseURL", "https://example/x"}, {"RequestId", "r1"}};
  r.lock_key = "lock#abc";
  ASSERT_TRUE(table->insert(r, ctx_));
  EXPECT_FALSE(table->insert(r, ctx_)) << "a second insert of the same key must be refused";
  table->set_statement_id(r.key, "sid-1", ctx_);
  auto got = table->get(r.key, ctx_);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->key, r.key);
  EXPECT_EQ(got->state, RecordState::kWaiting);
  EXPECT_EQ(got->statement_id, "sid-1");
  EXPECT_EQ(got->waiter.kind, WaiterKind::kCloudFormation);
  EXPECT_EQ(got->waiter.cloudformation["RequestId"], "r1");
  EXPECT_EQ(got->lock_key, "lock#abc");
  EXPECT_EQ(got->created_at_ms, r.created_at_ms);
  EXPECT_EQ(got->expires_at_s, r.expires_at_s);
  EXPECT_FALSE(table->get({"exec-1", "1.000000"}, ctx_));
  EXPECT_THROW(table->set_statement_id({"nobody", "1.000000"}, "x", ctx_), Error);
}

TEST_F(StateTableTest, LatestStartedSkipsFailedStarts) {
  StatementRecord a = waiting_record("exec-2", now_epoch_ms());
  StatementRecord b = waiting_record("exec-2", now_epoch_ms());
  StatementRecord c = waiting_record("exec-2", now_epoch_ms());
  for (auto* r : {&a, &b, &c}) ASSERT_TRUE(table->insert(*r, ctx_));
  table->set_statement_id(a.key, "sid-a", ctx_);
  table->set_statement_id(b.key, "sid-b", ctx_);
  table->mark_start_failed(c.key, "ValidationException: bad", ctx_);
  auto latest = table->latest("exec-2", true, ctx_);
  ASSERT_TRUE(latest);
  EXPECT_EQ(latest->statement_id, "sid-b");
  EXPECT_FALSE(table->latest("exec-none", true, ctx_));
  EXPECT_EQ(table->get(c.key, ctx_)->state, RecordState::kStartFailed);
  auto newest = table->latest("exec-2", false, ctx_);
  ASSERT_TRUE(newest);
  EXPECT_EQ(newest->key, c.key) << "without started_only the failed start is the newest";
}

TEST_F(StateTableTest, ClaimProtocol) {
  StatementRecord r = waiting_record("exec-3", now_epoch_ms());
  ASSERT_TRUE(table->insert(r, ctx_));
  std::int64_t far = now_epoch_ms() + 60000;

  Claim first = table->claim(r.key, "owner-1", far, ctx_);
  ASSERT_EQ(first.result, ClaimResult::kClaimed);
  EXPECT_FALSE(first.taken_over);
  EXPECT_EQ(first.record.waiter.task_token, "token-exec-3");
  EXPECT_EQ(table->claim(r.key, "owner-2", far, ctx_).result, ClaimResult::kHeldByOther);
  EXPECT_FALSE(table->finish(r.key, "owner-2", "FINISHED", ctx_)) << "not the owner";
  EXPECT_FALSE(table->release_claim(r.key, "owner-2", ctx_));

  EXPECT_TRUE(table->release_claim(r.key, "owner-1", ctx_));
  EXPECT_EQ(table->get(r.key, ctx_)->state, RecordState::kWaiting);
  ASSERT_EQ(table->claim(r.key, "owner-3", far, ctx_).result, ClaimResult::kClaimed);
  EXPECT_TRUE(table->finish(r.key, "owner-3", "FINISHED", ctx_));
  auto done = table->get(r.key, ctx_);
  EXPECT_EQ(done->state, RecordState::kDone);
  EXPECT_EQ(done->outcome, "FINISHED");
  EXPECT_EQ(table->claim(r.key, "owner-4", far, ctx_).result, ClaimResult::kAlreadyDone);
  EXPECT_EQ(table->claim({"exec-none", "1.000000"}, "o", far, ctx_).result, ClaimResult::kMissing);
}

// Runs `after_refused_claim` once, right after DynamoDB refuses a claim's conditional update and
// before the claimant reads the record: the moment another invocation may change it.
class ClaimRaceTransport : public aws::HttpTransport {
 public:
  explicit ClaimRaceTransport(std::shared_ptr<aws::HttpTransport> inner)
      : inner_(std::move(inner)) {}
  aws::HttpResponse send(const aws::HttpRequest& request, const Deadline& deadline) override {
    aws::HttpResponse response = inner_->send(request, deadline);
    const std::string* target = request.header("X-Amz-Target");
    if (target != nullptr && target->ends_with(".UpdateItem") &&
        request.body.find("claimUntil") != std::string::npos &&
        response.body.find("ConditionalCheckFailed") != std::string::npos && after_refused_claim) {
      auto hook = std::move(after_refused_claim);
      after_refused_claim = nullptr;
      hook();
    }
    return response;
  }
  std::function<void()> after_refused_claim;

 private:
  std::shared_ptr<aws::HttpTransport> inner_;
};

// A duplicate delivery loses the claim race, and before it reads the record the winner's
// callback fails and gives the claim back: the record is WAITING again, its callback not made.
// The duplicate must be retried, not acknowledged as if the statement were done.
TEST_F(StateTableTest, AClaimLostToAWinnerThatThenReleasedItIsRetriedNotDone) {
  auto transport = std::make_shared<ClaimRaceTransport>(aws::make_curl_transport());
  auto client = std::make_shared<const aws::JsonClient>(
      aws::protocol::kDynamoDb,
      aws::resolve_endpoint(aws::service::kDynamoDb, moto_->region(), moto_->env()),
      moto_->credentials(), transport);
  auto racing =
      make_dynamodb_state_table(std::make_shared<const services::DynamoDb>(client), table_);
  StatementRecord r = waiting_record("exec-race", now_epoch_ms());
  ASSERT_TRUE(table->insert(r, ctx_));
  const std::int64_t far = now_epoch_ms() + 60000;
  ASSERT_EQ(table->claim(r.key, "winner", far, ctx_).result, ClaimResult::kClaimed);
  transport->after_refused_claim = [&] {
    ASSERT_TRUE(table->release_claim(r.key, "winner", ctx_));
  };

  Claim duplicate = racing->claim(r.key, "duplicate", far, ctx_);
  EXPECT_EQ(transport->after_refused_claim, nullptr) << "the race was not staged";
  EXPECT_EQ(duplicate.result, ClaimResult::kHeldByOther)
      << "a record WAITING again still needs its callback: retry, do not acknowledge";
  EXPECT_EQ(table->get(r.key, ctx_)->state, RecordState::kWaiting);
}

TEST_F(StateTableTest, AnExpiredClaimIsTakenOverAndSaysSo) {
  StatementRecord r = waiting_record("exec-4", now_epoch_ms());
  ASSERT_TRUE(table->insert(r, ctx_));
  ASSERT_EQ(table->claim(r.key, "dead", now_epoch_ms() - 1000, ctx_).result, ClaimResult::kClaimed);
  Claim next = table->claim(r.key, "alive", now_epoch_ms() + 60000, ctx_);
  ASSERT_EQ(next.result, ClaimResult::kClaimed);
  EXPECT_TRUE(next.taken_over);
  EXPECT_FALSE(table->finish(r.key, "dead", "FINISHED", ctx_));
  EXPECT_TRUE(table->finish(r.key, "alive", "FINISHED", ctx_));
}

TEST_F(StateTableTest, KeepUntilOnlyLengthensTheLifeOfRecordsStillWaiting) {
  StatementRecord r = waiting_record("exec-keep", now_epoch_ms());
  ASSERT_TRUE(table->insert(r, ctx_));
  const std::int64_t later = r.expires_at_s + 86400;
  EXPECT_TRUE(table->keep_until(r.key, later, ctx_));
  EXPECT_EQ(table->get(r.key, ctx_)->expires_at_s, later);
  EXPECT_FALSE(table->keep_until(r.key, later - 10, ctx_)) << "never shortened";
  EXPECT_EQ(table->get(r.key, ctx_)->expires_at_s, later);
  ASSERT_EQ(table->claim(r.key, "o", now_epoch_ms() + 60000, ctx_).result, ClaimResult::kClaimed);
  EXPECT_TRUE(table->keep_until(r.key, later + 1, ctx_)) << "a claimed record still waits";
  ASSERT_TRUE(table->finish(r.key, "o", "FINISHED", ctx_));
  EXPECT_FALSE(table->keep_until(r.key, later + 2, ctx_)) << "a done record is not kept";
  EXPECT_FALSE(table->keep_until({"exec-none", "1.000000"}, later, ctx_));
}

TEST_F(StateTableTest, ReconcilesVisitIsNotedOnRecordsStillWaitingOnly) {
  StatementRecord r = waiting_record("exec-visited", now_epoch_ms());
  ASSERT_TRUE(table->insert(r, ctx_));
  EXPECT_EQ(table->get(r.key, ctx_)->reconciled_at_ms, 0);
  EXPECT_TRUE(table->note_reconciled(r.key, 1793567666000, "stillRunning", ctx_));
  StatementRecord read = *table->get(r.key, ctx_);
  EXPECT_EQ(read.reconciled_at_ms, 1793567666000);
  EXPECT_EQ(read.reconcile_result, "stillRunning");
  // The waiting index carries it too (listWaiting reads the index).
  WaitingPage page = table->waiting_before(now_epoch_ms() + 1000, 100, "", ctx_);
  auto listed = std::find_if(page.records.begin(), page.records.end(),
                             [&](const StatementRecord& x) { return x.key.id == r.key.id; });
  ASSERT_NE(listed, page.records.end());
  EXPECT_EQ(listed->reconcile_result, "stillRunning");
  ASSERT_EQ(table->claim(r.key, "o", now_epoch_ms() + 60000, ctx_).result, ClaimResult::kClaimed);
  EXPECT_TRUE(table->note_reconciled(r.key, 1793567667000, "retryLater", ctx_));
  ASSERT_TRUE(table->finish(r.key, "o", "FINISHED", ctx_));
  EXPECT_FALSE(table->note_reconciled(r.key, 1793567668000, "stillRunning", ctx_))
      << "an answered record is left as it is";
  EXPECT_EQ(table->get(r.key, ctx_)->reconcile_result, "retryLater");
  EXPECT_FALSE(table->note_reconciled({"exec-none", "1.000000"}, 1, "stillRunning", ctx_))
      << "nothing is created";
  EXPECT_FALSE(table->get({"exec-none", "1.000000"}, ctx_));
}

// Reconcile's two writes on a record still waiting, applied and their replies lost: the retry
// meets its own write and still reports it done.
TEST_F(StateTableTest, KeepUntilAndTheVisitNoteWhoseRepliesAreLostStillCount) {
  StatementRecord r = waiting_record("exec-lost-visit", now_epoch_ms());
  ASSERT_TRUE(table->insert(r, ctx_));
  const std::int64_t later = r.expires_at_s + 86400;
  lossy_->lose_reply("UpdateItem", 1, LostReplyTransport::Loss::kServerError);
  EXPECT_TRUE(table->keep_until(r.key, later, ctx_));
  EXPECT_EQ(table->get(r.key, ctx_)->expires_at_s, later);
  lossy_->lose_reply("UpdateItem");
  EXPECT_TRUE(table->note_reconciled(r.key, 1793567666000, "stillRunning", ctx_));
  EXPECT_EQ(table->get(r.key, ctx_)->reconcile_result, "stillRunning");
  EXPECT_EQ(lossy_->lost(), 2);
}

TEST_F(StateTableTest, TheWaitingIndexHoldsOnlyTrackedUnfinishedRecordsOldestFirst) {
  std::int64_t now = now_epoch_ms();
  StatementRecord old1 = waiting_record("exec-5", now - 50000);
  StatementRecord old2 = waiting_record("exec-6", now - 40000);
  StatementRecord fresh = waiting_record("exec-7", now);
  StatementRecord untracked = waiting_record("exec-8", now - 60000, WaiterKind::kNone);
  StatementRecord finished = waiting_record("exec-9", now - 70000);
  StatementRecord failed = waiting_record("exec-10", now - 80000);
  for (auto* r : {&old1, &old2, &fresh, &untracked, &finished, &failed}) {
    ASSERT_TRUE(table->insert(*r, ctx_));
  }
  ASSERT_EQ(table->claim(finished.key, "o", now + 60000, ctx_).result, ClaimResult::kClaimed);
  ASSERT_TRUE(table->finish(finished.key, "o", "FINISHED", ctx_));
  table->mark_start_failed(failed.key, "x", ctx_);

  auto waiting = table->waiting_before(now - 10000, 10, "", ctx_).records;
  ASSERT_EQ(waiting.size(), 2u);
  EXPECT_EQ(waiting[0].key, old1.key);
  EXPECT_EQ(waiting[1].key, old2.key);
  EXPECT_EQ(table->waiting_before(now + 1, 10, "", ctx_).records.size(), 3u);

  // Page by page, each page continuing where the previous one ended.
  std::vector<StatementKey> paged;
  std::string cursor;
  int pages = 0;
  do {
    WaitingPage page = table->waiting_before(now + 1, 2, cursor, ctx_);
    EXPECT_LE(page.records.size(), 2u) << "limit";
    for (const auto& r : page.records) paged.push_back(r.key);
    cursor = page.next;
  } while (!cursor.empty() && ++pages < 10);
  EXPECT_EQ(paged, (std::vector<StatementKey>{old1.key, old2.key, fresh.key}));
  EXPECT_THROW(table->waiting_before(now + 1, 2, "not a cursor", ctx_), Error);
}

TEST_F(StateTableTest, FailedUpdatesAreRememberedPerPhysicalIdUntilForgottenOrExpired) {
  const std::string id = "EtlUser:0123456789abcdef";
  EXPECT_FALSE(table->failed_update(id, ctx_));
  table->forget_failed_update(id, ctx_);  // nothing to forget is fine
  table->record_failed_update({id, "failed-1", "kept-1", now_epoch_seconds() + 86400}, ctx_);
  table->record_failed_update({id, "failed-2", "kept-2", now_epoch_seconds() + 86400}, ctx_);
  auto got = table->failed_update(id, ctx_);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->physical_id, id);
  EXPECT_EQ(got->failed_digest, "failed-2") << "the newer failure replaces the older";
  EXPECT_EQ(got->restored_digest, "kept-2");
  EXPECT_FALSE(table->failed_update("Other:0123456789abcdef", ctx_));
  // Not a statement: LATEST and the waiting index never see it.
  EXPECT_TRUE(table->waiting_before(now_epoch_ms() + 1, 10, "", ctx_).records.empty());
  table->forget_failed_update(id, ctx_);
  EXPECT_FALSE(table->failed_update(id, ctx_));

  // Unconditional writes: a retry after a lost reply writes (or deletes) the same again.
  lossy_->lose_reply("PutItem");
  table->record_failed_update({id, "failed-4", "kept-4", now_epoch_seconds() + 86400}, ctx_);
  EXPECT_EQ(table->failed_update(id, ctx_)->failed_digest, "failed-4");
  lossy_->lose_reply("DeleteItem", 1, LostReplyTransport::Loss::kServerError);
  table->forget_failed_update(id, ctx_);
  EXPECT_FALSE(table->failed_update(id, ctx_));
  EXPECT_EQ(lossy_->lost(), 2);

  // Expired but not yet swept by DynamoDB's TTL: gone all the same.
  table->record_failed_update({id, "failed-3", "kept-3", now_epoch_seconds() - 10}, ctx_);
  EXPECT_FALSE(table->failed_update(id, ctx_));
}

TEST_F(StateTableTest, SingletonLocks) {
  std::int64_t now = now_epoch_ms();
  SingletonLock lock{"lock#sql", "holder-1", "", now, now + 60000};
  ASSERT_TRUE(table->acquire_lock(lock, now, ctx_));
  SingletonLock other{"lock#sql", "holder-2", "", now, now + 60000};
  EXPECT_FALSE(table->acquire_lock(other, now, ctx_));
  table->set_lock_statement("lock#sql", "holder-1", "sid-1", ctx_);
  EXPECT_EQ(table->get_lock("lock#sql", ctx_)->statement_id, "sid-1");
  table->set_lock_statement("lock#sql", "holder-x", "sid-x", ctx_);  // not the holder: ignored
  EXPECT_EQ(table->get_lock("lock#sql", ctx_)->statement_id, "sid-1");

  EXPECT_FALSE(table->steal_lock(other, "holder-x", ctx_));
  EXPECT_TRUE(table->steal_lock(other, "holder-1", ctx_));
  EXPECT_EQ(table->get_lock("lock#sql", ctx_)->holder, "holder-2");
  table->release_lock("lock#sql", "holder-1", ctx_);  // no longer the holder: no effect
  EXPECT_TRUE(table->get_lock("lock#sql", ctx_));
  table->release_lock("lock#sql", "holder-2", ctx_);
  EXPECT_FALSE(table->get_lock("lock#sql", ctx_));

  SingletonLock expired{"lock#old", "gone", "", now - 20000, now - 10000};
  ASSERT_TRUE(table->acquire_lock(expired, now - 20000, ctx_));
  EXPECT_TRUE(table->acquire_lock({"lock#old", "new", "", now, now + 1000}, now, ctx_))
      << "an expired lock is free";
  // Locks live in their own partition: LATEST never sees them.
  EXPECT_FALSE(table->latest("lock#old", false, ctx_));
}

// Each conditional write applied by moto whose reply is then lost (connection reset, or a 500)
// is retried by the client and meets its own write: it must still count as applied.
TEST_F(StateTableTest, AnInsertWhoseReplyIsLostIsInsertedOnce) {
  for (auto loss :
       {LostReplyTransport::Loss::kNetworkError, LostReplyTransport::Loss::kServerError}) {
    StatementRecord r = waiting_record("exec-lost-insert", now_epoch_ms());
    lossy_->lose_reply("PutItem", 1, loss);
    EXPECT_TRUE(table->insert(r, ctx_)) << "the retry met our own insert";
    EXPECT_FALSE(table->insert(r, ctx_)) << "a second insert is still refused";
    EXPECT_EQ(table->get(r.key, ctx_)->state, RecordState::kWaiting);
  }
  EXPECT_EQ(lossy_->lost(), 2);
}

TEST_F(StateTableTest, ClaimReleaseAndFinishWhoseRepliesAreLostStillCount) {
  StatementRecord r = waiting_record("exec-lost-claim", now_epoch_ms());
  ASSERT_TRUE(table->insert(r, ctx_));
  const std::int64_t far = now_epoch_ms() + 60000;

  lossy_->lose_reply("UpdateItem");
  Claim claim = table->claim(r.key, "owner-1", far, ctx_);
  ASSERT_EQ(claim.result, ClaimResult::kClaimed) << "not held by someone else: held by us";
  EXPECT_EQ(claim.record.waiter.task_token, "token-exec-lost-claim");
  // Taken as a take-over, the waiter would be probed first; a task without HeartbeatSeconds may
  // refuse the probe, and the statement would then never be answered.
  EXPECT_FALSE(claim.taken_over) << "the record was WAITING: our claim took over nobody's lease";
  EXPECT_EQ(table->claim(r.key, "owner-2", far, ctx_).result, ClaimResult::kHeldByOther);

  lossy_->lose_reply("UpdateItem", 1, LostReplyTransport::Loss::kServerError);
  EXPECT_TRUE(table->release_claim(r.key, "owner-1", ctx_));
  EXPECT_EQ(table->get(r.key, ctx_)->state, RecordState::kWaiting);

  ASSERT_EQ(table->claim(r.key, "owner-3", far, ctx_).result, ClaimResult::kClaimed);
  lossy_->lose_reply("UpdateItem");
  EXPECT_TRUE(table->finish(r.key, "owner-3", "FINISHED", ctx_));
  EXPECT_EQ(table->get(r.key, ctx_)->state, RecordState::kDone);
  EXPECT_FALSE(table->finish(r.key, "owner-2", "FINISHED", ctx_)) << "not the owner";
  EXPECT_EQ(lossy_->lost(), 3);
}

TEST_F(StateTableTest, AClaimWhoseReplyIsLostKnowsWhetherItTookALeaseOver) {
  StatementRecord r = waiting_record("exec-lost-takeover", now_epoch_ms());
  ASSERT_TRUE(table->insert(r, ctx_));
  // owner-1's lease has already run out when owner-2 claims, and owner-2's reply is lost.
  ASSERT_EQ(table->claim(r.key, "owner-1", now_epoch_ms() - 1, ctx_).result, ClaimResult::kClaimed);
  lossy_->lose_reply("UpdateItem", 1, LostReplyTransport::Loss::kServerError);
  Claim claim = table->claim(r.key, "owner-2", now_epoch_ms() + 60000, ctx_);
  ASSERT_EQ(claim.result, ClaimResult::kClaimed);
  EXPECT_TRUE(claim.taken_over) << "owner-1 may have called back before its lease ran out";
  EXPECT_EQ(lossy_->lost(), 1);
}

TEST_F(StateTableTest, LockWritesWhoseRepliesAreLostStillCount) {
  const std::int64_t now = now_epoch_ms();
  lossy_->lose_reply("PutItem");
  EXPECT_TRUE(table->acquire_lock({"lock#lost", "holder-1", "", now, now + 60000}, now, ctx_));
  EXPECT_FALSE(table->acquire_lock({"lock#lost", "holder-2", "", now, now + 60000}, now, ctx_));

  lossy_->lose_reply("PutItem", 1, LostReplyTransport::Loss::kServerError);
  EXPECT_TRUE(table->steal_lock({"lock#lost", "holder-2", "", now, now + 60000}, "holder-1", ctx_));
  EXPECT_EQ(table->get_lock("lock#lost", ctx_)->holder, "holder-2");

  lossy_->lose_reply("UpdateItem");
  table->set_lock_statement("lock#lost", "holder-2", "sid-2", ctx_);
  EXPECT_EQ(table->get_lock("lock#lost", ctx_)->statement_id, "sid-2");
  lossy_->lose_reply("DeleteItem");
  table->release_lock("lock#lost", "holder-2", ctx_);
  EXPECT_FALSE(table->get_lock("lock#lost", ctx_));
  EXPECT_EQ(lossy_->lost(), 4);
}

TEST_F(StateTableTest, StartRecordWritesWhoseRepliesAreLostStillCount) {
  StatementRecord r = waiting_record("exec-lost-start", now_epoch_ms());
  ASSERT_TRUE(table->insert(r, ctx_));
  lossy_->lose_reply("UpdateItem");
  table->set_statement_id(r.key, "sid-1", ctx_);
  EXPECT_EQ(table->get(r.key, ctx_)->statement_id, "sid-1");
  lossy_->lose_reply("UpdateItem", 1, LostReplyTransport::Loss::kServerError);
  table->mark_start_failed(r.key, "ValidationException: bad", ctx_);
  EXPECT_EQ(table->get(r.key, ctx_)->state, RecordState::kStartFailed);
  EXPECT_EQ(lossy_->lost(), 2);
}

TEST_F(StateTableTest, IdempotencyMarkersAndWaiterRebindingSurviveLostReplies) {
  StatementRecord r = waiting_record("exec-key", now_epoch_ms());
  ASSERT_TRUE(table->insert(r, ctx_));
  IdempotencyMarker marker{"exec-key", "step#1", r.key, "digest-1", now_epoch_seconds() + 86400};
  lossy_->lose_reply("PutItem");
  EXPECT_TRUE(table->put_idempotency(marker, std::nullopt, ctx_));
  EXPECT_FALSE(table->put_idempotency(marker, std::nullopt, ctx_)) << "the key is taken";
  auto got = table->get_idempotency("exec-key", "step#1", ctx_);
  ASSERT_TRUE(got);
  EXPECT_EQ(got->record, r.key);
  EXPECT_EQ(got->request_digest, "digest-1");
  EXPECT_FALSE(table->get_idempotency("exec-key", "step#2", ctx_));
  EXPECT_FALSE(table->get_idempotency("exec-other", "step#1", ctx_)) << "keys are per caller";

  IdempotencyMarker moved = marker;
  moved.record = {"exec-key", StatementKey::new_invocation_id()};
  EXPECT_FALSE(table->put_idempotency(moved, moved.record, ctx_)) << "it stands for r, not that";
  lossy_->lose_reply("PutItem", 1, LostReplyTransport::Loss::kServerError);
  EXPECT_TRUE(table->put_idempotency(moved, r.key, ctx_));
  EXPECT_EQ(table->get_idempotency("exec-key", "step#1", ctx_)->record, moved.record);
  EXPECT_EQ(table->latest("exec-key", false, ctx_)->key, r.key) << "a marker is no statement";

  lossy_->lose_reply("UpdateItem");
  EXPECT_TRUE(table->rebind_waiter(r.key, {WaiterKind::kStepFunctions, "token-new", {}}, ctx_));
  EXPECT_EQ(table->get(r.key, ctx_)->waiter.task_token, "token-new");
  ASSERT_EQ(table->claim(r.key, "owner", now_epoch_ms() + 60000, ctx_).result,
            ClaimResult::kClaimed);
  EXPECT_FALSE(table->rebind_waiter(r.key, {WaiterKind::kStepFunctions, "token-late", {}}, ctx_))
      << "a claimed record is being answered: its waiter stays";
  EXPECT_EQ(lossy_->lost(), 3);
}

// The whole life of a singleton statement with the first reply of every state-table write lost
// after moto applied it: it starts once, calls back once, and leaves no lock.
TEST_F(StateTableTest, ASingletonFlowWhoseWritesAllLoseTheirFirstReplyRunsOnceAndLeavesNoLock) {
  TaskerOverTable over = tasker_over_table();
  auto& redshift = over.redshift;
  auto& shared_table = over.state;
  auto& sfn = over.sfn;
  auto& tasker = over.tasker;
  const Json event = {{"action", "executeSingletonStatement"},
                      {"sqlStatement", "call sp_lost_replies()"},
                      {"executionArn", "arn:aws:states:us-east-1:123456789012:execution:M:lost"},
                      {"taskToken", "TOKEN-lost-replies-xxxxxxxx"}};
  lossy_->lose_reply("PutItem", 1, LostReplyTransport::Loss::kNetworkError, "expiresAt");  // lock
  lossy_->lose_reply("PutItem", 1, LostReplyTransport::Loss::kServerError, "waiter");      // record
  lossy_->lose_reply("UpdateItem", 1, LostReplyTransport::Loss::kNetworkError, "#sid");
  Json started = tasker->handle(event, ctx_);
  ASSERT_EQ(redshift->executed().size(), 1u);
  EXPECT_EQ(lossy_->lost(), 3);
  auto lock = shared_table->get_lock(
      Launcher::lock_key(over.config.target, {"call sp_lost_replies()"}, {}), ctx_);
  ASSERT_TRUE(lock);
  EXPECT_EQ(lock->holder, started["StatementName"]);
  EXPECT_EQ(lock->statement_id, started["Id"]);

  lossy_->lose_reply("UpdateItem", 1, LostReplyTransport::Loss::kServerError, "CLAIMED");
  lossy_->lose_reply("UpdateItem", 1, LostReplyTransport::Loss::kNetworkError, "DONE");
  lossy_->lose_reply("DeleteItem", 1, LostReplyTransport::Loss::kServerError);
  const Json batch = finished_batch(started);
  EXPECT_TRUE(tasker->handle(batch, ctx_)["batchItemFailures"].empty());
  EXPECT_EQ(lossy_->lost(), 6);
  EXPECT_EQ(sfn->callbacks().size(), 1u);
  EXPECT_FALSE(shared_table->get_lock(lock->key, ctx_)) << "a lock was left behind";
  auto key = StatementKey::from_statement_name(started["StatementName"].get<std::string>());
  EXPECT_EQ(shared_table->get(*key, ctx_)->state, RecordState::kDone);
  // The redelivery is a duplicate, not a second callback.
  EXPECT_TRUE(tasker->handle(batch, ctx_)["batchItemFailures"].empty());
  EXPECT_EQ(sfn->callbacks().size(), 1u);
}

TEST_F(StateTableTest, TwentyConcurrentSingletonCallersStartExactlyOne) {
  TaskerOverTable over = tasker_over_table();
  auto& redshift = over.redshift;
  auto& sfn = over.sfn;
  auto& tasker = over.tasker;

  auto event = [](int i) {
    return Json{{"action", "executeSingletonStatement"},
                {"sqlStatement", "call sp_nightly_load()"},
                {"executionArn",
                 "arn:aws:states:us-east-1:123456789012:execution:M:run-" + std::to_string(i)},
                {"taskToken", "TOKEN-" + std::to_string(i) + "-xxxxxxxx"}};
  };
  std::atomic<int> started{0}, refused{0}, other{0};
  std::vector<std::string> ids(20);
  std::vector<std::thread> threads;
  for (int i = 0; i < 20; ++i) {
    threads.emplace_back([&, i] {
      try {
        ids[i] = tasker->handle(event(i), ctx_).value("Id", "");
        ++started;
      } catch (const Error& e) {
        (e.name() == "ConcurrentExecution" ? refused : other)++;
      }
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(started.load(), 1);
  EXPECT_EQ(refused.load(), 19);
  EXPECT_EQ(other.load(), 0);
  ASSERT_EQ(redshift->executed().size(), 1u);
  std::string winner = *std::find_if(ids.begin(), ids.end(), [](auto& s) { return !s.empty(); });

  // Still running: refused. Finished (completion event not yet processed): taken over.
  EXPECT_THROW(tasker->handle(event(21), ctx_), Error);
  redshift->set_status(winner, "FINISHED");
  Json second = tasker->handle(event(22), ctx_);
  EXPECT_NE(second["Id"], winner);

  // The completion of the second releases the lock: a third starts without any take-over.
  redshift->set_status(second["Id"], "FINISHED");
  const Json batch = finished_batch(second);
  EXPECT_TRUE(tasker->handle(batch, ctx_)["batchItemFailures"].empty());
  std::size_t describes_before = 0;
  for (const auto& c : redshift->calls()) describes_before += c.starts_with("DescribeStatement");
  EXPECT_NO_THROW(tasker->handle(event(23), ctx_));
  std::size_t describes_after = 0;
  for (const auto& c : redshift->calls()) describes_after += c.starts_with("DescribeStatement");
  EXPECT_EQ(describes_after, describes_before) << "the lock was free: nothing to take over";
  EXPECT_EQ(sfn->callbacks().size(), 1u);
}

}  // namespace
}  // namespace rstasker::tasker
