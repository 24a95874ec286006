// The state table: who waits for which statement, singleton locks, and the sparse index of
// statements still waiting. DynamoDB in production (seed key schema: `id` + `invocationId`, TTL
// attribute `TTL`); tests may substitute an in-memory implementation.
//
// Completion protocol (exactly one callback per statement):
//   WAITING --claim--> CLAIMED --finish--> DONE
// A claim is a conditional write that holds a lease until the claimant's invocation deadline;
// a claim whose lease has passed (its holder died) may be taken over by a redelivery.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "rstasker/aws/json_client.hpp"
#include "rstasker/common/json.hpp"
#include "rstasker/services/dynamodb.hpp"

namespace rstasker::tasker {

// One statement's key. The Data API statement name is "<id>:<invocation_id>"; the completion
// event carries it back.
struct StatementKey {
  std::string id;             // the caller: an execution ARN, or a generated id
  std::string invocation_id;  // "<epoch seconds>.<microseconds>", sorts by time

  std::string statement_name() const { return id + ":" + invocation_id; }
  // The key a statement name stands for, or nullopt when the name is not one we issue.
  static std::optional<StatementKey> from_statement_name(std::string_view name);
  // A new invocation id for the current time (microsecond resolution).
  static std::string new_invocation_id();

  bool operator==(const StatementKey&) const = default;
};

enum class WaiterKind { kNone, kStepFunctions, kCloudFormation };

// Who is called back when the statement ends.
struct Waiter {
  WaiterKind kind = WaiterKind::kNone;
  std::string task_token;  // kStepFunctions
  Json cloudformation;     // kCloudFormation: the response fields (see custom resources)
};

enum class RecordState { kWaiting, kClaimed, kDone, kStartFailed };
std::string_view to_string(RecordState state);

struct StatementRecord {
  StatementKey key;
  RecordState state = RecordState::kWaiting;
  std::string statement_id;  // the Data API id, once known
  Waiter waiter;
  std::string lock_key;  // the singleton lock this statement holds, or ""
  std::int64_t created_at_ms = 0;
  std::int64_t expires_at_s = 0;  // TTL
  std::string claim_owner;
  std::int64_t claim_until_ms = 0;
  std::string outcome;  // how it ended (DONE / START_FAILED), for people reading the table
  // Whether reconcile should look at it: it has a waiter or holds a lock.
  bool tracked() const { return waiter.kind != WaiterKind::kNone || !lock_key.empty(); }
};

enum class ClaimResult {
  kClaimed,      // the caller now holds the claim and must call back, then finish()
  kAlreadyDone,  // DONE or START_FAILED: nothing to do
  kHeldByOther,  // another invocation holds a live claim (or held it and gave it back): retry
  kMissing,      // no such record: not ours
};

struct Claim {
  ClaimResult result = ClaimResult::kMissing;
  // With kClaimed: the record as it was just before the claim (waiter, lock, ...).
  StatementRecord record;
  // With kClaimed: an earlier claimant's lease had run out. That claimant may have called back
  // before it died, so the new holder checks with the waiter before calling again.
  bool taken_over = false;
};

// One page of the waiting index.
struct WaitingPage {
  std::vector<StatementRecord> records;  // oldest first
  // Where the next page starts (opaque, for the next call); "" when there is nothing after it.
  std::string next;
};

struct SingletonLock {
  std::string key;
  std::string holder;        // the holding statement's name
  std::string statement_id;  // "" until the holder's statement has started
  std::int64_t acquired_at_ms = 0;
  std::int64_t expires_at_ms = 0;
};

// A custom-resource Update that failed without changing anything (its SQL runs in one
// transaction, or none ran), remembered so that CloudFormation's rollback of it is recognised:
// the rollback carries the failed properties as OldResourceProperties, and diffing from them
// would start from a state that never existed.
struct FailedUpdate {
  std::string physical_id;
  std::string failed_digest;      // digest of the properties the Update tried to apply
  std::string restored_digest;    // digest of the properties the resource kept (its old ones)
  std::int64_t expires_at_s = 0;  // TTL
};

class StateTable {
 public:
  virtual ~StateTable() = default;

  // Stores a new record; false when one with the same key exists already.
  virtual bool insert(const StatementRecord& record, const aws::CallContext& context) = 0;
  virtual void set_statement_id(const StatementKey& key, const std::string& statement_id,
                                const aws::CallContext& context) = 0;
  // The start failed (the Data API refused it): the record leaves the waiting index.
  virtual void mark_start_failed(const StatementKey& key, const std::string& reason,
                                 const aws::CallContext& context) = 0;
  // Strongly consistent read.
  virtual std::optional<StatementRecord> get(const StatementKey& key,
                                             const aws::CallContext& context) = 0;
  // The newest record of `id`; with `started_only`, the newest whose statement started (has a
  // statement id).
  virtual std::optional<StatementRecord> latest(const std::string& id, bool started_only,
                                                const aws::CallContext& context) = 0;
  // Takes the completion claim (see the protocol above) until `lease_until_ms`.
  virtual Claim claim(const StatementKey& key, const std::string& owner,
                      std::int64_t lease_until_ms, const aws::CallContext& context) = 0;
  // Gives a claim back (the callback could not be delivered now): the record is WAITING again and
  // the next delivery may claim it at once. False when `owner` no longer holds the claim.
  virtual bool release_claim(const StatementKey& key, const std::string& owner,
                             const aws::CallContext& context) = 0;
  // Marks a claimed record DONE and removes it from the waiting index; false when `owner` no
  // longer holds the claim (it expired and was taken over).
  virtual bool finish(const StatementKey& key, const std::string& owner, const std::string& outcome,
                      const aws::CallContext& context) = 0;
  // Records in the waiting index that started waiting at or before `cutoff_ms`, oldest first:
  // at most `limit` of them, starting after `cursor` ("" for the oldest; else a page's `next`).
  // Paging lets a caller get past records that stay waiting (statements still running) to the
  // ones behind them. Throws InvalidRequest for a cursor it did not make.
  virtual WaitingPage waiting_before(std::int64_t cutoff_ms, std::size_t limit,
                                     const std::string& cursor,
                                     const aws::CallContext& context) = 0;

  // Remembers the failed Update of `update.physical_id`, replacing any earlier one.
  virtual void record_failed_update(const FailedUpdate& update,
                                    const aws::CallContext& context) = 0;
  // The failed Update remembered for `physical_id` (strongly consistent), or nullopt when none
  // is, or it has expired.
  virtual std::optional<FailedUpdate> failed_update(const std::string& physical_id,
                                                    const aws::CallContext& context) = 0;
  // Forgets it (an Update of the resource has since succeeded). Nothing to forget is fine.
  virtual void forget_failed_update(const std::string& physical_id,
                                    const aws::CallContext& context) = 0;

  // Creates `lock` unless a live lock with its key exists (one whose expires_at_ms >= now_ms).
  virtual bool acquire_lock(const SingletonLock& lock, std::int64_t now_ms,
                            const aws::CallContext& context) = 0;
  // Replaces the lock held by `expected_holder` with `lock`; false when someone else changed it.
  virtual bool steal_lock(const SingletonLock& lock, const std::string& expected_holder,
                          const aws::CallContext& context) = 0;
  virtual std::optional<SingletonLock> get_lock(const std::string& key,
                                                const aws::CallContext& context) = 0;
  virtual void set_lock_statement(const std::string& key, const std::string& holder,
                                  const std::string& statement_id,
                                  const aws::CallContext& context) = 0;
  // Deletes the lock if `holder` still holds it; otherwise does nothing.
  virtual void release_lock(const std::string& key, const std::string& holder,
                            const aws::CallContext& context) = 0;
};

// Name of the sparse global secondary index of waiting records.
inline constexpr std::string_view kWaitingIndex = "waiting-index";

std::unique_ptr<StateTable> make_dynamodb_state_table(std::shared_ptr<const services::DynamoDb> db,
                                                      std::string table_name);

// The CreateTable request for the state table (keys, waiting index, on-demand billing), for the
// local stack and tests; the CloudFormation template declares the same.
Json state_table_definition(const std::string& table_name);

}  // namespace rstasker::tasker
