// In-memory service fakes with the same contracts as the real clients.
#include "support/fakes.hpp"

#include <algorithm>
#include <tuple>

#include "rstasker/common/deadline.hpp"
#include "rstasker/common/text.hpp"

namespace rstasker::testing {

using tasker::ClaimResult;
using tasker::RecordState;
using tasker::SingletonLock;
using tasker::StatementKey;
using tasker::StatementRecord;

// ---- FakeRedshiftData ----

Json FakeRedshiftData::execute(const services::ExecuteRequest& request, const aws::CallContext&) {
  std::lock_guard lock(mutex_);
  calls_.push_back(std::string(services::execute_operation(request)) + " " +
                   request.statement_name);
  if (next_execute_error_) {
    Error e = *next_execute_error_;
    next_execute_error_.reset();
    throw e;
  }
  if (!request.client_token.empty()) {
    if (auto it = by_client_token_.find(request.client_token); it != by_client_token_.end()) {
      return {{"Id", it->second}, {"CreatedAt", 1.5}};
    }
  }
  executed_.push_back(request);
  std::string id = random_uuid();
  statements_[id] = Statement{request.statement_name, "STARTED", "", request};
  if (!request.client_token.empty()) by_client_token_[request.client_token] = id;
  Json response = {{"Id", id}, {"CreatedAt", 1.5}, {"Database", request.target.database}};
  if (!request.target.cluster_identifier.empty()) {
    response["ClusterIdentifier"] = request.target.cluster_identifier;
  }
  return response;
}

Json FakeRedshiftData::describe_statement(const std::string& id, const aws::CallContext&) {
  std::lock_guard lock(mutex_);
  calls_.push_back("DescribeStatement " + id);
  if (auto set = describe_responses_.find(id); set != describe_responses_.end()) {
    return set->second;
  }
  auto it = statements_.find(id);
  if (it == statements_.end()) {
    throw Error("ResourceNotFoundException", "Statement " + id + " not found", 400);
  }
  Json out = {{"Id", id}, {"Status", it->second.status}};
  if (!it->second.error.empty()) out["Error"] = it->second.error;
  return out;
}

Json FakeRedshiftData::cancel_statement(const std::string& id, const aws::CallContext&) {
  std::lock_guard lock(mutex_);
  calls_.push_back("CancelStatement " + id);
  auto it = statements_.find(id);
  if (it == statements_.end()) {
    throw Error("ResourceNotFoundException", "Statement " + id + " not found", 400);
  }
  it->second.status = "ABORTED";
  return {{"Status", true}};
}

Json FakeRedshiftData::get_statement_result(const std::string& id, const std::string& next_token,
                                            const aws::CallContext&) {
  std::lock_guard lock(mutex_);
  calls_.push_back("GetStatementResult " + id + (next_token.empty() ? "" : " " + next_token));
  if (!statements_.contains(id)) {
    throw Error("ResourceNotFoundException", "Statement " + id + " not found", 400);
  }
  // Two pages: the first names the token of the second.
  if (next_token.empty()) {
    return {{"Records", {{{{"longValue", 1}}}}}, {"TotalNumRows", 2}, {"NextToken", "page-2"}};
  }
  return {{"Records", {{{{"longValue", 2}}}}}, {"TotalNumRows", 2}};
}

Json FakeRedshiftData::list_statements(const services::ListStatementsRequest& request,
                                       const aws::CallContext&) {
  std::lock_guard lock(mutex_);
  calls_.push_back("ListStatements " + request.statement_name);
  Json statements = Json::array();
  for (const auto& [id, s] : statements_) {
    if (!s.name.starts_with(request.statement_name)) continue;
    if (request.status != "ALL" && s.status != request.status) continue;
    const services::RedshiftTarget& ran_on = s.request.target;
    if ((!request.cluster_identifier.empty() &&
         ran_on.cluster_identifier != request.cluster_identifier) ||
        (!request.workgroup_name.empty() && ran_on.workgroup_name != request.workgroup_name) ||
        (!request.database.empty() && ran_on.database != request.database)) {
      continue;
    }
    // As the Data API: the SQL and parameters as sent, a batch's as QueryStrings.
    Json entry = {{"Id", id},
                  {"StatementName", s.name},
                  {"Status", s.status},
                  {"IsBatchStatement", services::is_batch(s.request)}};
    if (services::is_batch(s.request)) {
      entry["QueryStrings"] = s.request.sqls;
    } else {
      entry["QueryString"] = s.request.sqls.empty() ? std::string() : s.request.sqls.front();
    }
    if (!s.request.parameters.empty()) {
      Json parameters = Json::array();
      for (const auto& p : s.request.parameters) {
        parameters.push_back({{"name", p.name}, {"value", p.value}});
      }
      entry["QueryParameters"] = std::move(parameters);
    }
    statements.push_back(std::move(entry));
  }
  return {{"Statements", statements}};
}

void FakeRedshiftData::set_status(const std::string& id, std::string status, std::string error) {
  std::lock_guard lock(mutex_);
  statements_[id].status = std::move(status);
  statements_[id].error = std::move(error);
}

void FakeRedshiftData::set_describe_response(const std::string& id, Json response) {
  std::lock_guard lock(mutex_);
  describe_responses_[id] = std::move(response);
}

void FakeRedshiftData::fail_next_execute(Error error) {
  std::lock_guard lock(mutex_);
  next_execute_error_ = std::move(error);
}

std::vector<std::string> FakeRedshiftData::calls() const {
  std::lock_guard lock(mutex_);
  return calls_;
}

std::vector<services::ExecuteRequest> FakeRedshiftData::executed() const {
  std::lock_guard lock(mutex_);
  return executed_;
}

std::size_t FakeRedshiftData::call_count() const {
  std::lock_guard lock(mutex_);
  return calls_.size();
}

// ---- MemoryStateTable ----

// Called before taking the lock, so an injected delay does not serialise concurrent callers.
void MemoryStateTable::enter(std::string_view operation, bool writes) {
  if (before_operation) before_operation(operation);
  if (writes) ++writes_;
}

bool MemoryStateTable::insert(const StatementRecord& record, const aws::CallContext&) {
  enter("insert", true);
  std::lock_guard lock(mutex_);
  auto key = std::make_pair(record.key.id, record.key.invocation_id);
  if (records_.contains(key)) return false;
  records_[key] = record;
  return true;
}

void MemoryStateTable::set_statement_id(const StatementKey& key, const std::string& statement_id,
                                        const aws::CallContext&) {
  enter("set_statement_id", true);
  std::lock_guard lock(mutex_);
  auto it = records_.find({key.id, key.invocation_id});
  if (it == records_.end()) throw Error("ConditionalCheckFailedException", "no record", 400);
  it->second.statement_id = statement_id;
}

void MemoryStateTable::mark_start_failed(const StatementKey& key, const std::string& reason,
                                         const aws::CallContext&) {
  enter("mark_start_failed", true);
  std::lock_guard lock(mutex_);
  auto it = records_.find({key.id, key.invocation_id});
  if (it == records_.end()) throw Error("ConditionalCheckFailedException", "no record", 400);
  it->second.state = RecordState::kStartFailed;
  it->second.outcome = reason;
}

bool MemoryStateTable::note_reconciled(const StatementKey& key, std::int64_t at_ms,
                                       const std::string& result, const aws::CallContext&) {
  enter("note_reconciled", true);
  std::lock_guard lock(mutex_);
  auto it = records_.find({key.id, key.invocation_id});
  if (it == records_.end() ||
      (it->second.state != RecordState::kWaiting && it->second.state != RecordState::kClaimed)) {
    return false;
  }
  it->second.reconciled_at_ms = at_ms;
  it->second.reconcile_result = result;
  return true;
}

bool MemoryStateTable::keep_until(const StatementKey& key, std::int64_t expires_at_s,
                                  const aws::CallContext&) {
  enter("keep_until", true);
  std::lock_guard lock(mutex_);
  auto it = records_.find({key.id, key.invocation_id});
  if (it == records_.end() ||
      (it->second.state != RecordState::kWaiting && it->second.state != RecordState::kClaimed) ||
      it->second.expires_at_s > expires_at_s) {
    return false;
  }
  it->second.expires_at_s = expires_at_s;
  return true;
}

void MemoryStateTable::replace(const StatementRecord& record) {
  std::lock_guard lock(mutex_);
  records_[{record.key.id, record.key.invocation_id}] = record;
}

std::optional<StatementRecord> MemoryStateTable::get(const StatementKey& key,
                                                     const aws::CallContext&) {
  enter("get", false);
  std::lock_guard lock(mutex_);
  auto it = records_.find({key.id, key.invocation_id});
  if (it == records_.end()) return std::nullopt;
  return it->second;
}

std::optional<StatementRecord> MemoryStateTable::latest(const std::string& id, bool started_only,
                                                        const aws::CallContext&) {
  enter("latest", false);
  std::lock_guard lock(mutex_);
  std::optional<StatementRecord> newest;
  for (const auto& [key, record] : records_) {  // sorted by key: the last match is the newest
    if (key.first == id && (!started_only || !record.statement_id.empty())) newest = record;
  }
  return newest;
}

tasker::Claim MemoryStateTable::claim(const StatementKey& key, const std::string& owner,
                                      std::int64_t lease_until_ms, const aws::CallContext&) {
  enter("claim", true);
  std::lock_guard lock(mutex_);
  tasker::Claim claim;
  auto it = records_.find({key.id, key.invocation_id});
  if (it == records_.end()) return claim;  // kMissing
  StatementRecord& r = it->second;
  claim.record = r;
  bool expired_claim = r.state == RecordState::kClaimed && r.claim_until_ms < now_epoch_ms();
  if (r.state == RecordState::kWaiting || expired_claim) {
    claim.result = ClaimResult::kClaimed;
    claim.taken_over = expired_claim;
    r.state = RecordState::kClaimed;
    r.claim_owner = owner;
    r.claim_until_ms = lease_until_ms;
    return claim;
  }
  claim.result =
      r.state == RecordState::kClaimed ? ClaimResult::kHeldByOther : ClaimResult::kAlreadyDone;
  return claim;
}

bool MemoryStateTable::release_claim(const StatementKey& key, const std::string& owner,
                                     const aws::CallContext&) {
  enter("release_claim", true);
  std::lock_guard lock(mutex_);
  auto it = records_.find({key.id, key.invocation_id});
  if (it == records_.end() || it->second.state != RecordState::kClaimed ||
      it->second.claim_owner != owner) {
    return false;
  }
  it->second.state = RecordState::kWaiting;
  it->second.claim_owner.clear();
  it->second.claim_until_ms = 0;
  return true;
}

bool MemoryStateTable::finish(const StatementKey& key, const std::string& owner,
                              const std::string& outcome, const aws::CallContext&) {
  enter("finish", true);
  std::lock_guard lock(mutex_);
  auto it = records_.find({key.id, key.invocation_id});
  if (it == records_.end() || it->second.state != RecordState::kClaimed ||
      it->second.claim_owner != owner) {
    return false;
  }
  it->second.state = RecordState::kDone;
  it->second.outcome = outcome;
  return true;
}

tasker::WaitingPage MemoryStateTable::waiting_before(std::int64_t cutoff_ms, std::size_t limit,
                                                     const std::string& cursor,
                                                     const aws::CallContext&) {
  enter("waiting_before", false);
  std::lock_guard lock(mutex_);
  // Ordered as the index is (by waitingSince), ties broken by the key; the cursor is the position
  // of the last record returned, as JSON [createdAt, id, invocationId].
  using Position = std::tuple<std::int64_t, std::string, std::string>;
  auto position = [](const StatementRecord& r) {
    return Position{r.created_at_ms, r.key.id, r.key.invocation_id};
  };
  std::optional<Position> after;
  if (!cursor.empty()) {
    Json parsed = Json::parse(cursor);
    after = Position{parsed.at(0).get<std::int64_t>(), parsed.at(1).get<std::string>(),
                     parsed.at(2).get<std::string>()};
  }
  std::vector<StatementRecord> matching;
  for (const auto& [key, r] : records_) {
    bool waiting =
        r.tracked() && (r.state == RecordState::kWaiting || r.state == RecordState::kClaimed);
    if (waiting && r.created_at_ms <= cutoff_ms && (!after || position(r) > *after)) {
      matching.push_back(r);
    }
  }
  std::sort(matching.begin(), matching.end(),
            [&](const auto& a, const auto& b) { return position(a) < position(b); });
  tasker::WaitingPage page;
  const std::size_t count = std::min(std::max<std::size_t>(limit, 1), matching.size());
  page.records.assign(matching.begin(), matching.begin() + static_cast<std::ptrdiff_t>(count));
  if (count < matching.size()) {
    const auto& [created, id, invocation] = position(page.records.back());
    page.next = Json::array({created, id, invocation}).dump();
  }
  return page;
}

void MemoryStateTable::record_failed_update(const tasker::FailedUpdate& update,
                                            const aws::CallContext&) {
  enter("record_failed_update", true);
  std::lock_guard lock(mutex_);
  failed_updates_[update.physical_id] = update;
}

std::optional<tasker::FailedUpdate> MemoryStateTable::failed_update(const std::string& physical_id,
                                                                    const aws::CallContext&) {
  enter("failed_update", false);
  std::lock_guard lock(mutex_);
  auto it = failed_updates_.find(physical_id);
  if (it == failed_updates_.end() || it->second.expires_at_s <= now_epoch_seconds()) {
    return std::nullopt;
  }
  return it->second;
}

bool MemoryStateTable::rebind_waiter(const StatementKey& key, const tasker::Waiter& waiter,
                                     const aws::CallContext&) {
  enter("rebind_waiter", true);
  std::lock_guard lock(mutex_);
  auto it = records_.find({key.id, key.invocation_id});
  if (it == records_.end() || it->second.state != RecordState::kWaiting) return false;
  it->second.waiter = waiter;
  return true;
}

std::optional<tasker::IdempotencyMarker> MemoryStateTable::get_idempotency(
    const std::string& scope, const std::string& key, const aws::CallContext&) {
  enter("get_idempotency", false);
  std::lock_guard lock(mutex_);
  auto it = markers_.find(tasker::IdempotencyMarker{scope, key, {}, "", 0}.id());
  if (it == markers_.end()) return std::nullopt;
  return it->second;
}

bool MemoryStateTable::put_idempotency(const tasker::IdempotencyMarker& marker,
                                       const std::optional<StatementKey>& replacing,
                                       const aws::CallContext&) {
  enter("put_idempotency", true);
  std::lock_guard lock(mutex_);
  auto it = markers_.find(marker.id());
  if (replacing ? (it == markers_.end() || it->second.record != *replacing)
                : it != markers_.end()) {
    return false;
  }
  markers_[marker.id()] = marker;
  return true;
}

void MemoryStateTable::forget_failed_update(const std::string& physical_id,
                                            const aws::CallContext&) {
  enter("forget_failed_update", true);
  std::lock_guard lock(mutex_);
  failed_updates_.erase(physical_id);
}

bool MemoryStateTable::acquire_lock(const SingletonLock& lock_value, std::int64_t now_ms,
                                    const aws::CallContext&) {
  enter("acquire_lock", true);
  std::lock_guard lock(mutex_);
  auto it = locks_.find(lock_value.key);
  if (it != locks_.end() && it->second.expires_at_ms >= now_ms) return false;
  locks_[lock_value.key] = lock_value;
  return true;
}

bool MemoryStateTable::steal_lock(const SingletonLock& lock_value,
                                  const std::string& expected_holder, const aws::CallContext&) {
  enter("steal_lock", true);
  std::lock_guard lock(mutex_);
  auto it = locks_.find(lock_value.key);
  if (it == locks_.end() || it->second.holder != expected_holder) return false;
  it->second = lock_value;
  return true;
}

std::optional<SingletonLock> MemoryStateTable::get_lock(const std::string& key,
                                                        const aws::CallContext&) {
  enter("get_lock", false);
  std::lock_guard lock(mutex_);
  auto it = locks_.find(key);
  if (it == locks_.end()) return std::nullopt;
  return it->second;
}

void MemoryStateTable::set_lock_statement(const std::string& key, const std::string& holder,
                                          const std::string& statement_id,
                                          const aws::CallContext&) {
  enter("set_lock_statement", true);
  std::lock_guard lock(mutex_);
  auto it = locks_.find(key);
  if (it != locks_.end() && it->second.holder == holder) it->second.statement_id = statement_id;
}

void MemoryStateTable::release_lock(const std::string& key, const std::string& holder,
                                    const aws::CallContext&) {
  enter("release_lock", true);
  std::lock_guard lock(mutex_);
  auto it = locks_.find(key);
  if (it != locks_.end() && it->second.holder == holder) locks_.erase(it);
}

std::vector<StatementRecord> MemoryStateTable::records() const {
  std::lock_guard lock(mutex_);
  std::vector<StatementRecord> out;
  for (const auto& [key, r] : records_) out.push_back(r);
  return out;
}

std::vector<SingletonLock> MemoryStateTable::locks() const {
  std::lock_guard lock(mutex_);
  std::vector<SingletonLock> out;
  for (const auto& [key, l] : locks_) out.push_back(l);
  return out;
}

std::vector<tasker::FailedUpdate> MemoryStateTable::failed_updates() const {
  std::lock_guard lock(mutex_);
  std::vector<tasker::FailedUpdate> out;
  for (const auto& [id, update] : failed_updates_) out.push_back(update);
  return out;
}

std::size_t MemoryStateTable::write_count() const {
  return writes_;
}

// ---- FakeStepFunctions ----

void FakeStepFunctions::record(Callback callback) {
  std::lock_guard lock(mutex_);
  if (callback.kind != "heartbeat") ++requests_[callback.task_token];
  if (auto it = failures_.find(callback.task_token); it != failures_.end()) throw it->second;
  if (closed_.contains(callback.task_token)) {
    throw Error("TaskTimedOut", "Task Timed Out: 'Provided task does not exist anymore'", 400);
  }
  if (callback.kind == "heartbeat") {
    ++heartbeats_;
    return;
  }
  closed_.insert(callback.task_token);
  callbacks_.push_back(std::move(callback));
}

void FakeStepFunctions::send_task_success(const std::string& task_token, const std::string& output,
                                          const aws::CallContext& context) {
  record({"success", task_token, output, "", "", context.deadline.epoch_ms()});
}

void FakeStepFunctions::send_task_failure(const std::string& task_token, const std::string& error,
                                          const std::string& cause,
                                          const aws::CallContext& context) {
  record({"failure", task_token, "", error, cause, context.deadline.epoch_ms()});
}

void FakeStepFunctions::send_task_heartbeat(const std::string& task_token,
                                            const aws::CallContext& context) {
  record({"heartbeat", task_token, "", "", "", context.deadline.epoch_ms()});
}

void FakeStepFunctions::fail_token(const std::string& task_token, Error error) {
  std::lock_guard lock(mutex_);
  failures_.insert_or_assign(task_token, std::move(error));
}

void FakeStepFunctions::clear_failure(const std::string& task_token) {
  std::lock_guard lock(mutex_);
  failures_.erase(task_token);
}

std::size_t FakeStepFunctions::heartbeat_count() const {
  std::lock_guard lock(mutex_);
  return heartbeats_;
}

std::size_t FakeStepFunctions::callback_requests(const std::string& task_token) const {
  std::lock_guard lock(mutex_);
  auto it = requests_.find(task_token);
  return it == requests_.end() ? 0 : it->second;
}

std::map<std::string, std::size_t> FakeStepFunctions::callback_requests() const {
  std::lock_guard lock(mutex_);
  return requests_;
}

std::vector<FakeStepFunctions::Callback> FakeStepFunctions::callbacks() const {
  std::lock_guard lock(mutex_);
  return callbacks_;
}

// ---- FakeCfnResponder ----

void FakeCfnResponder::send(const std::string& response_url, const std::string& body,
                            const aws::CallContext&) {
  std::lock_guard lock(mutex_);
  if (failures_left_ > 0) {
    --failures_left_;
    throw Error("HttpError503", "response receiver unavailable", 503, true);
  }
  responses_.push_back({response_url, Json::parse(body), body});
}

void FakeCfnResponder::fail_next(int count) {
  std::lock_guard lock(mutex_);
  failures_left_ = count;
}

std::vector<FakeCfnResponder::Response> FakeCfnResponder::responses() const {
  std::lock_guard lock(mutex_);
  return responses_;
}

tasker::Config test_config() {
  tasker::Config c;
  c.target = {"cluster-1", "", "dev", "admin", ""};
  c.table_name = "state";
  c.region = "eu-west-1";
  return c;
}

}  // namespace rstasker::testing
