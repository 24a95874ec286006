// The state table: who waits for which statement, singleton locks, and the sparse index of
// statements still waiting. DynamoDB in production (seed key schema: `id` + `invocationId`, TTL
// attribute `TTL`); tests may substitute an in-memory implementation.
//
// Completion protocol (exactly one callback per statement):
//   WAITING --claim--> CLAIMED --finish--> DONE
// A claim is a conditional write that holds a lease until the claimant's invocation deadline;
// a claim whose lease has passed (its holder died) may be taken over by a redelivery.
//
// Every write is safe when its reply is lost and the client retries it: a write whose condition
// its own earlier application would falsify (insert, claim, release_claim, finish, acquire_lock,
// steal_lock, rebind_waiter, put_idempotency) stamps the item with a write id and, when the retry
// meets a failed condition, reads the item back to tell its own applied write from someone else's;
// the others are idempotent as they stand (set_statement_id, mark_start_failed, set_lock_statement,
// release_lock, the failed Update markers).
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

// A statement runs up to 24 hours and its completion event may be redelivered after that: a
// record someone waits for is kept at least this long from its creation, whatever TtlDays says,
// and reconcile keeps one that still waits this long from its visit.
inline constexpr std::int64_t kMinWaitingRecordSeconds = 2LL * 86400;

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
  // The idempotency marker that names this record (IdempotencyMarker::id()), or "".
  std::string idempotency_id;
  // Reconcile's last visit while the record still waited: when, and what it found
  // ("stillRunning" or "retryLater"); 0 and "" before the first.
  std::int64_t reconciled_at_ms = 0;
  std::string reconcile_result;
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

// A caller's idempotency key and the statement record it stands for: the first start with the
// key records it, repeats find the record through it.
struct IdempotencyMarker {
  std::string scope;              // the caller id the key belongs to ("" when none)
  std::string key;                // the caller's key
  StatementKey record;            // the record it stands for
  std::string request_digest;     // what the first start with the key asked for
  std::int64_t expires_at_s = 0;  // TTL

  // The marker's identity: a digest of scope and key (bounded, whatever their length).
  std::string id() const;
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

  // Replaces the waiter of a WAITING record (a repeated start with the same idempotency key
  // brings the waiter that now waits); false when the record is no longer WAITING (claimed,
  // done, failed) or does not exist.
  virtual bool rebind_waiter(const StatementKey& key, const Waiter& waiter,
                             const aws::CallContext& context) = 0;

  // The marker of (scope, key), strongly consistent, or nullopt.
  virtual std::optional<IdempotencyMarker> get_idempotency(const std::string& scope,
                                                           const std::string& key,
                                                           const aws::CallContext& context) = 0;
  // Stores `marker`: when `replacing` is nullopt, only if none exists for its scope and key;
  // otherwise only if the existing one still stands for `*replacing`. False when that condition
  // fails (another attempt got there first).
  virtual bool put_idempotency(const IdempotencyMarker& marker,
                               const std::optional<StatementKey>& replacing,
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

  // Moves the TTL of a record still waiting (WAITING or CLAIMED) to `expires_at_s` unless its own
  // is later. False when the record is answered (DONE, START_FAILED), gone, or kept longer.
  virtual bool keep_until(const StatementKey& key, std::int64_t expires_at_s,
                          const aws::CallContext& context) = 0;

  // Notes reconcile's visit of a record that still waits (WAITING or CLAIMED): when, and what
  // it found. False when the record is answered or gone (nothing is written then).
  virtual bool note_reconciled(const StatementKey& key, std::int64_t at_ms,
                               const std::string& result, const aws::CallContext& context) = 0;
};

// Name of the sparse global secondary index of waiting records.
inline constexpr std::string_view kWaitingIndex = "waiting-index";

std::unique_ptr<StateTable> make_dynamodb_state_table(std::shared_ptr<const services::DynamoDb> db,
                                                      std::string table_name);

// The CreateTable request for the state table (keys, waiting index, on-demand billing), for the
// local stack and tests; the CloudFormation template declares the same.
Json state_table_definition(const std::string& table_name);

}  // namespace rstasker::tasker
