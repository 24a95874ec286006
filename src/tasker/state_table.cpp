// The state table on DynamoDB: conditional writes carry every guarantee (no read-modify-write).
#include "rstasker/tasker/state_table.hpp"

#include <algorithm>
#include <atomic>
#include <cctype>
#include <chrono>

#include "rstasker/aws/sigv4.hpp"
#include "rstasker/common/deadline.hpp"
#include "rstasker/common/error.hpp"
#include "rstasker/common/text.hpp"

namespace rstasker::tasker {

namespace {

using services::attr_n;
using services::attr_s;
using services::item_n;
using services::item_s;

constexpr std::string_view kLockSortKey = "lock";
// Failed custom-resource Updates live in partitions of their own: "failed-update#<digest of the
// physical id>" (bounded, whatever the id), sort key "failed-update".
constexpr std::string_view kFailedUpdatePrefix = "failed-update#";
constexpr std::string_view kFailedUpdateSortKey = "failed-update";
constexpr std::string_view kWaitingMarker = "W";
// Idempotency markers: "idempotency#<digest of scope and key>", sort key "idempotency".
constexpr std::string_view kIdempotencyPrefix = "idempotency#";
// claimPreviousOwner of a claim that took over nobody's lease.
constexpr std::string_view kNoOwner = "-";
constexpr std::string_view kIdempotencySortKey = "idempotency";

// Expression attribute names used by every expression (several are DynamoDB reserved words).
const Json& names() {
  static const Json kNames = {{"#state", "state"},
                              {"#ttl", "TTL"},
                              {"#owner", "claimOwner"},
                              {"#until", "claimUntil"},
                              {"#waiting", "waiting"},
                              {"#since", "waitingSince"},
                              {"#sid", "statementId"},
                              {"#outcome", "outcome"},
                              {"#holder", "holder"},
                              {"#expires", "expiresAt"},
                              {"#write", "writeId"},
                              {"#waiter", "waiter"},
                              {"#prev", "claimPreviousOwner"},
                              {"#rid", "recordId"},
                              {"#rinv", "recordInvocationId"}};
  return kNames;
}

// Only the names an expression uses may be sent (DynamoDB rejects unused ones).
Json names_for(std::initializer_list<const char*> used) {
  Json out = Json::object();
  for (const char* name : used) out[name] = names().at(name);
  return out;
}

Json key_of(const StatementKey& key) {
  return {{"id", attr_s(key.id)}, {"invocationId", attr_s(key.invocation_id)}};
}

Json lock_key_of(const std::string& key) {
  return {{"id", attr_s(key)}, {"invocationId", attr_s(kLockSortKey)}};
}

Json failed_update_key_of(const std::string& physical_id) {
  return {{"id", attr_s(std::string(kFailedUpdatePrefix) + aws::sha256_hex(physical_id))},
          {"invocationId", attr_s(kFailedUpdateSortKey)}};
}

Json idempotency_key_of(const IdempotencyMarker& marker) {
  return {{"id", attr_s(marker.id())}, {"invocationId", attr_s(kIdempotencySortKey)}};
}

std::optional<RecordState> parse_state(std::string_view s) {
  if (s == "WAITING") return RecordState::kWaiting;
  if (s == "CLAIMED") return RecordState::kClaimed;
  if (s == "DONE") return RecordState::kDone;
  if (s == "START_FAILED") return RecordState::kStartFailed;
  return std::nullopt;
}

Json waiter_to_json(const Waiter& waiter) {
  switch (waiter.kind) {
    case WaiterKind::kNone:
      return {{"type", "none"}};
    case WaiterKind::kStepFunctions:
      return {{"type", "sfn"}, {"taskToken", waiter.task_token}};
    case WaiterKind::kCloudFormation:
      return {{"type", "cfn"}, {"request", waiter.cloudformation}};
  }
  return {{"type", "none"}};
}

Waiter waiter_from_json(const std::string& text) {
  Waiter waiter;
  Json json = try_parse_json(text).value_or(Json());
  std::string type = json.is_object() ? json.value("type", "none") : "none";
  if (type == "sfn") {
    waiter.kind = WaiterKind::kStepFunctions;
    waiter.task_token = json.value("taskToken", "");
  } else if (type == "cfn") {
    waiter.kind = WaiterKind::kCloudFormation;
    waiter.cloudformation = json.value("request", Json::object());
  }
  return waiter;
}

StatementRecord record_from_item(const Json& item) {
  StatementRecord r;
  r.key.id = item_s(item, "id").value_or("");
  r.key.invocation_id = item_s(item, "invocationId").value_or("");
  auto state = parse_state(item_s(item, "state").value_or(""));
  if (!state) {
    throw Error(error_names::kInternalError,
                "state table item " + r.key.statement_name() + " has an unknown state");
  }
  r.state = *state;
  r.statement_id = item_s(item, "statementId").value_or("");
  r.waiter = waiter_from_json(item_s(item, "waiter").value_or("{}"));
  r.lock_key = item_s(item, "lockKey").value_or("");
  r.created_at_ms = item_n(item, "createdAt").value_or(0);
  r.expires_at_s = item_n(item, "TTL").value_or(0);
  r.claim_owner = item_s(item, "claimOwner").value_or("");
  r.claim_until_ms = item_n(item, "claimUntil").value_or(0);
  r.outcome = item_s(item, "outcome").value_or("");
  r.idempotency_id = item_s(item, "idempotencyId").value_or("");
  r.reconciled_at_ms = item_n(item, "reconciledAt").value_or(0);
  r.reconcile_result = item_s(item, "reconcileResult").value_or("");
  return r;
}

SingletonLock lock_from_item(const Json& item) {
  SingletonLock lock;
  lock.key = item_s(item, "id").value_or("");
  lock.holder = item_s(item, "holder").value_or("");
  lock.statement_id = item_s(item, "statementId").value_or("");
  lock.acquired_at_ms = item_n(item, "acquiredAt").value_or(0);
  lock.expires_at_ms = item_n(item, "expiresAt").value_or(0);
  return lock;
}

Json lock_item(const SingletonLock& lock) {
  Json item = lock_key_of(lock.key);
  item["holder"] = attr_s(lock.holder);
  if (!lock.statement_id.empty()) item["statementId"] = attr_s(lock.statement_id);
  item["acquiredAt"] = attr_n(lock.acquired_at_ms);
  item["expiresAt"] = attr_n(lock.expires_at_ms);
  // DynamoDB's TTL sweep removes long-expired locks; expiry itself is enforced by expiresAt.
  item["TTL"] = attr_n(lock.expires_at_ms / 1000 + 86400);
  return item;
}

// What a claim refused by its condition means, from the record read just after. WAITING again
// is a claim that won the race and was given back (its callback failed) before we read: the
// callback is still owed, so the message is retried as for a live claim, never acknowledged.
ClaimResult refused_claim_result(RecordState state) {
  switch (state) {
    case RecordState::kClaimed:
    case RecordState::kWaiting:
      return ClaimResult::kHeldByOther;
    case RecordState::kDone:
    case RecordState::kStartFailed:
      return ClaimResult::kAlreadyDone;
  }
  return ClaimResult::kHeldByOther;
}

// What a conditional write found: whether it was applied, and on a failed condition the item as
// it is now (absent when there is none).
struct WriteResult {
  bool applied = false;
  std::optional<Json> current;
};

class DynamoStateTable final : public StateTable {
 public:
  DynamoStateTable(std::shared_ptr<const services::DynamoDb> db, std::string table)
      : db_(std::move(db)), table_(std::move(table)) {}

  bool insert(const StatementRecord& r, const aws::CallContext& context) override {
    Json item = key_of(r.key);
    item["state"] = attr_s(to_string(r.state));
    if (!r.statement_id.empty()) item["statementId"] = attr_s(r.statement_id);
    item["waiter"] = attr_s(dump_json(waiter_to_json(r.waiter)));
    if (!r.lock_key.empty()) item["lockKey"] = attr_s(r.lock_key);
    if (!r.idempotency_id.empty()) item["idempotencyId"] = attr_s(r.idempotency_id);
    item["createdAt"] = attr_n(r.created_at_ms);
    item["TTL"] = attr_n(r.expires_at_s);
    if (r.tracked() && r.state == RecordState::kWaiting) {
      item["waiting"] = attr_s(kWaitingMarker);
      item["waitingSince"] = attr_n(r.created_at_ms);
    }
    return write_once("PutItem",
                      {{"TableName", table_},
                       {"Item", item},
                       {"ConditionExpression", "attribute_not_exists(id)"}},
                      key_of(r.key), context)
        .applied;
  }

  void set_statement_id(const StatementKey& key, const std::string& statement_id,
                        const aws::CallContext& context) override {
    db_->update_item({{"TableName", table_},
                      {"Key", key_of(key)},
                      {"UpdateExpression", "SET #sid = :sid"},
                      {"ConditionExpression", "attribute_exists(id)"},
                      {"ExpressionAttributeNames", names_for({"#sid"})},
                      {"ExpressionAttributeValues", {{":sid", attr_s(statement_id)}}}},
                     context);
  }

  void mark_start_failed(const StatementKey& key, const std::string& reason,
                         const aws::CallContext& context) override {
    db_->update_item({{"TableName", table_},
                      {"Key", key_of(key)},
                      {"UpdateExpression", "SET #state = :failed, #outcome = :why REMOVE #waiting"},
                      {"ConditionExpression", "attribute_exists(id)"},
                      {"ExpressionAttributeNames", names_for({"#state", "#outcome", "#waiting"})},
                      {"ExpressionAttributeValues",
                       {{":failed", attr_s("START_FAILED")}, {":why", attr_s(reason)}}}},
                     context);
  }

  std::optional<StatementRecord> get(const StatementKey& key,
                                     const aws::CallContext& context) override {
    Json response = db_->get_item(
        {{"TableName", table_}, {"Key", key_of(key)}, {"ConsistentRead", true}}, context);
    auto item = response.find("Item");
    if (item == response.end() || !item->is_object()) return std::nullopt;
    return record_from_item(*item);
  }

  std::optional<StatementRecord> latest(const std::string& id, bool started_only,
                                        const aws::CallContext& context) override {
    // Newest first; with started_only, records without a statement id are passed over.
    Json request = {{"TableName", table_},
                    {"KeyConditionExpression", "id = :id"},
                    {"ExpressionAttributeValues", {{":id", attr_s(id)}}},
                    {"ScanIndexForward", false},
                    {"ConsistentRead", true},
                    {"Limit", 25}};
    for (int page = 0; page < 40; ++page) {
      Json response = db_->query(request, context);
      for (const auto& item : response.value("Items", Json::array())) {
        if (item_s(item, "invocationId") == std::string(kLockSortKey)) continue;
        StatementRecord r = record_from_item(item);
        if (!started_only || !r.statement_id.empty()) return r;
      }
      auto last = response.find("LastEvaluatedKey");
      if (last == response.end() || last->empty()) break;
      request["ExclusiveStartKey"] = *last;
    }
    return std::nullopt;
  }

  Claim claim(const StatementKey& key, const std::string& owner, std::int64_t lease_until_ms,
              const aws::CallContext& context) override {
    WriteResult write = write_once(
        "UpdateItem",
        {{"TableName", table_},
         {"Key", key_of(key)},
         // #prev keeps who held the claim before (kNoOwner: nobody), so that a claim whose reply
         // was lost, read back, still tells whether it took over an earlier claimant's lease.
         {"UpdateExpression",
          "SET #prev = if_not_exists(#owner, :nobody), #state = :claimed, #owner = :owner, "
          "#until = :until"},
         {"ConditionExpression",
          "attribute_exists(id) AND (#state = :waiting OR (#state = :claimed AND #until < :now))"},
         {"ExpressionAttributeNames", names_for({"#prev", "#state", "#owner", "#until"})},
         {"ExpressionAttributeValues",
          {{":nobody", attr_s(kNoOwner)},
           {":claimed", attr_s("CLAIMED")},
           {":waiting", attr_s("WAITING")},
           {":owner", attr_s(owner)},
           {":until", attr_n(lease_until_ms)},
           {":now", attr_n(now_epoch_ms())}}},
         {"ReturnValues", "ALL_OLD"}},
        key_of(key), context);
    Claim claim;
    if (!write.current) return claim;  // kMissing
    claim.record = record_from_item(*write.current);
    if (write.applied) {
      claim.result = ClaimResult::kClaimed;
      if (claim.record.state == RecordState::kClaimed && claim.record.claim_owner == owner) {
        // The reply was lost and the record read back is our claim: whether it took over a
        // lease is what it stored of the owner before it.
        claim.taken_over =
            item_s(*write.current, "claimPreviousOwner").value_or(std::string(kNoOwner)) !=
            kNoOwner;
      } else {
        // The record as it was before the claim (ALL_OLD).
        claim.taken_over = claim.record.state == RecordState::kClaimed;
      }
    } else {
      claim.result = refused_claim_result(claim.record.state);
    }
    return claim;
  }

  bool release_claim(const StatementKey& key, const std::string& owner,
                     const aws::CallContext& context) override {
    return write_once("UpdateItem",
                      {{"TableName", table_},
                       {"Key", key_of(key)},
                       {"UpdateExpression", "SET #state = :waiting REMOVE #owner, #until"},
                       {"ConditionExpression", "#state = :claimed AND #owner = :owner"},
                       {"ExpressionAttributeNames", names_for({"#state", "#owner", "#until"})},
                       {"ExpressionAttributeValues",
                        {{":waiting", attr_s("WAITING")},
                         {":claimed", attr_s("CLAIMED")},
                         {":owner", attr_s(owner)}}}},
                      key_of(key), context)
        .applied;
  }

  bool finish(const StatementKey& key, const std::string& owner, const std::string& outcome,
              const aws::CallContext& context) override {
    return write_once(
               "UpdateItem",
               {{"TableName", table_},
                {"Key", key_of(key)},
                {"UpdateExpression", "SET #state = :done, #outcome = :outcome REMOVE #waiting"},
                {"ConditionExpression", "#state = :claimed AND #owner = :owner"},
                {"ExpressionAttributeNames",
                 names_for({"#state", "#outcome", "#waiting", "#owner"})},
                {"ExpressionAttributeValues",
                 {{":done", attr_s("DONE")},
                  {":claimed", attr_s("CLAIMED")},
                  {":owner", attr_s(owner)},
                  {":outcome", attr_s(outcome)}}}},
               key_of(key), context)
        .applied;
  }

  WaitingPage waiting_before(std::int64_t cutoff_ms, std::size_t limit, const std::string& cursor,
                             const aws::CallContext& context) override {
    Json request = {{"TableName", table_},
                    {"IndexName", kWaitingIndex},
                    {"KeyConditionExpression", "#waiting = :w AND #since <= :cutoff"},
                    {"ExpressionAttributeNames", names_for({"#waiting", "#since"})},
                    {"ExpressionAttributeValues",
                     {{":w", attr_s(kWaitingMarker)}, {":cutoff", attr_n(cutoff_ms)}}},
                    {"ScanIndexForward", true},
                    {"Limit", static_cast<std::int64_t>(std::max<std::size_t>(limit, 1))}};
    if (!cursor.empty()) {
      // The cursor is the index's LastEvaluatedKey of the previous page, as JSON text.
      Json start = parse_json(cursor, "the waiting-index cursor", error_names::kInvalidRequest);
      if (!start.is_object()) {
        throw invalid_request("the waiting-index cursor is not one this table made");
      }
      request["ExclusiveStartKey"] = std::move(start);
    }
    Json response = db_->query(request, context);
    WaitingPage page;
    for (const auto& item : response.value("Items", Json::array())) {
      page.records.push_back(record_from_item(item));
    }
    if (auto last = response.find("LastEvaluatedKey");
        last != response.end() && last->is_object() && !last->empty()) {
      page.next = dump_json(*last);
    }
    return page;
  }

  bool rebind_waiter(const StatementKey& key, const Waiter& waiter,
                     const aws::CallContext& context) override {
    return write_once("UpdateItem",
                      {{"TableName", table_},
                       {"Key", key_of(key)},
                       {"UpdateExpression", "SET #waiter = :waiter"},
                       {"ConditionExpression", "#state = :waiting"},
                       {"ExpressionAttributeNames", names_for({"#waiter", "#state"})},
                       {"ExpressionAttributeValues",
                        {{":waiter", attr_s(dump_json(waiter_to_json(waiter)))},
                         {":waiting", attr_s("WAITING")}}}},
                      key_of(key), context)
        .applied;
  }

  std::optional<IdempotencyMarker> get_idempotency(const std::string& scope, const std::string& key,
                                                   const aws::CallContext& context) override {
    IdempotencyMarker wanted{scope, key, {}, "", 0};
    Json response = db_->get_item(
        {{"TableName", table_}, {"Key", idempotency_key_of(wanted)}, {"ConsistentRead", true}},
        context);
    auto item = response.find("Item");
    if (item == response.end() || !item->is_object()) return std::nullopt;
    wanted.record.id = item_s(*item, "recordId").value_or("");
    wanted.record.invocation_id = item_s(*item, "recordInvocationId").value_or("");
    wanted.request_digest = item_s(*item, "requestDigest").value_or("");
    wanted.expires_at_s = item_n(*item, "TTL").value_or(0);
    return wanted;
  }

  bool put_idempotency(const IdempotencyMarker& marker,
                       const std::optional<StatementKey>& replacing,
                       const aws::CallContext& context) override {
    Json item = idempotency_key_of(marker);
    item["recordId"] = attr_s(marker.record.id);
    item["recordInvocationId"] = attr_s(marker.record.invocation_id);
    item["requestDigest"] = attr_s(marker.request_digest);
    item["TTL"] = attr_n(marker.expires_at_s);
    Json request = {{"TableName", table_}, {"Item", item}};
    if (replacing) {
      request["ConditionExpression"] = "#rid = :rid AND #rinv = :rinv";
      request["ExpressionAttributeNames"] = names_for({"#rid", "#rinv"});
      request["ExpressionAttributeValues"] = {{":rid", attr_s(replacing->id)},
                                              {":rinv", attr_s(replacing->invocation_id)}};
    } else {
      request["ConditionExpression"] = "attribute_not_exists(id)";
    }
    return write_once("PutItem", std::move(request), idempotency_key_of(marker), context).applied;
  }

  void record_failed_update(const FailedUpdate& update, const aws::CallContext& context) override {
    Json item = failed_update_key_of(update.physical_id);
    item["physicalResourceId"] = attr_s(update.physical_id);
    item["failedDigest"] = attr_s(update.failed_digest);
    item["restoredDigest"] = attr_s(update.restored_digest);
    item["TTL"] = attr_n(update.expires_at_s);
    db_->put_item({{"TableName", table_}, {"Item", item}}, context);
  }

  std::optional<FailedUpdate> failed_update(const std::string& physical_id,
                                            const aws::CallContext& context) override {
    Json response = db_->get_item({{"TableName", table_},
                                   {"Key", failed_update_key_of(physical_id)},
                                   {"ConsistentRead", true}},
                                  context);
    auto item = response.find("Item");
    if (item == response.end() || !item->is_object()) return std::nullopt;
    FailedUpdate update;
    update.physical_id = item_s(*item, "physicalResourceId").value_or("");
    update.failed_digest = item_s(*item, "failedDigest").value_or("");
    update.restored_digest = item_s(*item, "restoredDigest").value_or("");
    update.expires_at_s = item_n(*item, "TTL").value_or(0);
    // DynamoDB's TTL sweep runs late: an expired item is as good as gone.
    if (update.physical_id != physical_id || update.expires_at_s <= now_epoch_seconds()) {
      return std::nullopt;
    }
    return update;
  }

  void forget_failed_update(const std::string& physical_id,
                            const aws::CallContext& context) override {
    db_->delete_item({{"TableName", table_}, {"Key", failed_update_key_of(physical_id)}}, context);
  }

  bool keep_until(const StatementKey& key, std::int64_t expires_at_s,
                  const aws::CallContext& context) override {
    // `<=`, not `<`: a retry after a lost reply meets its own TTL and still counts as kept.
    return update_while_waiting(key, "SET #ttl = :ttl", " AND #ttl <= :ttl", names_for({"#ttl"}),
                                {{":ttl", attr_n(expires_at_s)}}, context);
  }

  bool note_reconciled(const StatementKey& key, std::int64_t at_ms, const std::string& result,
                       const aws::CallContext& context) override {
    // Setting the same values again changes nothing: a retry after a lost reply is harmless.
    return update_while_waiting(key, "SET reconciledAt = :at, reconcileResult = :result", "",
                                Json::object(),
                                {{":at", attr_n(at_ms)}, {":result", attr_s(result)}}, context);
  }

  bool acquire_lock(const SingletonLock& lock, std::int64_t now_ms,
                    const aws::CallContext& context) override {
    return write_once("PutItem",
                      {{"TableName", table_},
                       {"Item", lock_item(lock)},
                       {"ConditionExpression", "attribute_not_exists(id) OR #expires < :now"},
                       {"ExpressionAttributeNames", names_for({"#expires"})},
                       {"ExpressionAttributeValues", {{":now", attr_n(now_ms)}}}},
                      lock_key_of(lock.key), context)
        .applied;
  }

  bool steal_lock(const SingletonLock& lock, const std::string& expected_holder,
                  const aws::CallContext& context) override {
    return write_once("PutItem",
                      {{"TableName", table_},
                       {"Item", lock_item(lock)},
                       {"ConditionExpression", "#holder = :expected"},
                       {"ExpressionAttributeNames", names_for({"#holder"})},
                       {"ExpressionAttributeValues", {{":expected", attr_s(expected_holder)}}}},
                      lock_key_of(lock.key), context)
        .applied;
  }

  std::optional<SingletonLock> get_lock(const std::string& key,
                                        const aws::CallContext& context) override {
    Json response = db_->get_item(
        {{"TableName", table_}, {"Key", lock_key_of(key)}, {"ConsistentRead", true}}, context);
    auto item = response.find("Item");
    if (item == response.end() || !item->is_object()) return std::nullopt;
    return lock_from_item(*item);
  }

  void set_lock_statement(const std::string& key, const std::string& holder,
                          const std::string& statement_id,
                          const aws::CallContext& context) override {
    try {
      db_->update_item({{"TableName", table_},
                        {"Key", lock_key_of(key)},
                        {"UpdateExpression", "SET #sid = :sid"},
                        {"ConditionExpression", "#holder = :holder"},
                        {"ExpressionAttributeNames", names_for({"#sid", "#holder"})},
                        {"ExpressionAttributeValues",
                         {{":sid", attr_s(statement_id)}, {":holder", attr_s(holder)}}}},
                       context);
    } catch (const Error& e) {
      if (!services::is_condition_failure(e)) throw;
      // The lock moved on (expired and taken): nothing of ours to update.
    }
  }

  void release_lock(const std::string& key, const std::string& holder,
                    const aws::CallContext& context) override {
    try {
      db_->delete_item({{"TableName", table_},
                        {"Key", lock_key_of(key)},
                        {"ConditionExpression", "#holder = :holder"},
                        {"ExpressionAttributeNames", names_for({"#holder"})},
                        {"ExpressionAttributeValues", {{":holder", attr_s(holder)}}}},
                       context);
    } catch (const Error& e) {
      if (!services::is_condition_failure(e)) throw;
    }
  }

 private:
  // An UpdateItem applied only while the record still waits (WAITING or CLAIMED) and
  // `extra_condition` (" AND ...") holds; false when it does not (or the record is gone).
  // `names` and `values` are the update's own, beside #state, :waiting and :claimed.
  bool update_while_waiting(const StatementKey& key, const std::string& update,
                            const std::string& extra_condition, Json names, Json values,
                            const aws::CallContext& context) {
    names.update(names_for({"#state"}));
    values[":waiting"] = attr_s("WAITING");
    values[":claimed"] = attr_s("CLAIMED");
    try {
      db_->update_item(
          {{"TableName", table_},
           {"Key", key_of(key)},
           {"UpdateExpression", update},
           {"ConditionExpression",
            "attribute_exists(id) AND (#state = :waiting OR #state = :claimed)" + extra_condition},
           {"ExpressionAttributeNames", std::move(names)},
           {"ExpressionAttributeValues", std::move(values)}},
          context);
      return true;
    } catch (const Error& e) {
      if (services::is_condition_failure(e)) return false;
      throw;
    }
  }

  // Runs a conditional PutItem or UpdateItem (an UpdateExpression starting with "SET ") so that a
  // retry cannot misread it. The write stamps the item with a fresh write id. When its reply is
  // lost (a 500 after DynamoDB applied it, a reset connection), JsonClient sends it again and the
  // repeat meets ConditionalCheckFailedException against our own applied write; so a failed
  // condition is answered by a strongly consistent read, and the item carrying our write id means
  // the write was applied. Only this write can have stored that id, so the answer is exact as long
  // as nobody else has written the item since (then our write was applied and superseded: the
  // item read back says what the caller must know). Other errors are thrown.
  WriteResult write_once(std::string_view operation, Json request, const Json& key,
                         const aws::CallContext& context) {
    const std::string write_id = random_uuid();
    if (operation == "PutItem") {
      request["Item"]["writeId"] = attr_s(write_id);
    } else {
      std::string update = request.at("UpdateExpression").get<std::string>();
      if (!update.starts_with("SET ")) {
        throw Error(error_names::kInternalError, "write_once needs an update that starts with SET");
      }
      request["UpdateExpression"] = "SET #write = :write, " + update.substr(4);
      request["ExpressionAttributeNames"]["#write"] = names().at("#write");
      request["ExpressionAttributeValues"][":write"] = attr_s(write_id);
    }
    WriteResult result;
    try {
      Json response = operation == "PutItem" ? db_->put_item(request, context)
                                             : db_->update_item(request, context);
      result.applied = true;
      result.current = response.value("Attributes", Json::object());  // ALL_OLD, when asked
      return result;
    } catch (const Error& e) {
      if (!services::is_condition_failure(e)) throw;
    }
    Json response =
        db_->get_item({{"TableName", table_}, {"Key", key}, {"ConsistentRead", true}}, context);
    if (auto item = response.find("Item"); item != response.end() && item->is_object()) {
      result.current = *item;
      result.applied = item_s(*item, "writeId") == write_id;
    }
    return result;
  }

  std::shared_ptr<const services::DynamoDb> db_;
  std::string table_;
};

}  // namespace

std::string IdempotencyMarker::id() const {
  return std::string(kIdempotencyPrefix) + aws::sha256_hex(scope + '\n' + key);
}

std::optional<StatementKey> StatementKey::from_statement_name(std::string_view name) {
  auto colon = name.rfind(':');
  if (colon == std::string_view::npos || colon == 0) return std::nullopt;
  std::string_view invocation = name.substr(colon + 1);
  auto dot = invocation.find('.');
  auto digits = [](std::string_view s) {
    return !s.empty() &&
           std::all_of(s.begin(), s.end(), [](unsigned char c) { return std::isdigit(c) != 0; });
  };
  if (dot == std::string_view::npos || !digits(invocation.substr(0, dot)) ||
      invocation.size() - dot - 1 != 6 || !digits(invocation.substr(dot + 1))) {
    return std::nullopt;
  }
  return StatementKey{std::string(name.substr(0, colon)), std::string(invocation)};
}

std::string StatementKey::new_invocation_id() {
  // Strictly increasing within the process, so two statements of one execution started in the
  // same microsecond still get distinct, ordered ids.
  static std::atomic<std::int64_t> last{0};
  std::int64_t now = std::chrono::duration_cast<std::chrono::microseconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
  std::int64_t prev = last.load();
  std::int64_t next = 0;
  do {
    next = std::max(now, prev + 1);
  } while (!last.compare_exchange_weak(prev, next));
  char buf[32];
  std::snprintf(buf, sizeof buf, "%lld.%06lld", static_cast<long long>(next / 1000000),
                static_cast<long long>(next % 1000000));
  return buf;
}

std::string_view to_string(RecordState state) {
  switch (state) {
    case RecordState::kWaiting:
      return "WAITING";
    case RecordState::kClaimed:
      return "CLAIMED";
    case RecordState::kDone:
      return "DONE";
    case RecordState::kStartFailed:
      return "START_FAILED";
  }
  return "WAITING";
}

std::unique_ptr<StateTable> make_dynamodb_state_table(std::shared_ptr<const services::DynamoDb> db,
                                                      std::string table_name) {
  return std::make_unique<DynamoStateTable>(std::move(db), std::move(table_name));
}

Json state_table_definition(const std::string& table_name) {
  return {{"TableName", table_name},
          {"BillingMode", "PAY_PER_REQUEST"},
          {"AttributeDefinitions",
           {{{"AttributeName", "id"}, {"AttributeType", "S"}},
            {{"AttributeName", "invocationId"}, {"AttributeType", "S"}},
            {{"AttributeName", "waiting"}, {"AttributeType", "S"}},
            {{"AttributeName", "waitingSince"}, {"AttributeType", "N"}}}},
          {"KeySchema",
           {{{"AttributeName", "id"}, {"KeyType", "HASH"}},
            {{"AttributeName", "invocationId"}, {"KeyType", "RANGE"}}}},
          {"GlobalSecondaryIndexes",
           {{{"IndexName", kWaitingIndex},
             {"KeySchema",
              {{{"AttributeName", "waiting"}, {"KeyType", "HASH"}},
               {{"AttributeName", "waitingSince"}, {"KeyType", "RANGE"}}}},
             {"Projection", {{"ProjectionType", "ALL"}}}}}}};
}

}  // namespace rstasker::tasker
