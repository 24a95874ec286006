// Statement start-up: record, lock, start, and undo on failure.
#include "rstasker/tasker/launcher.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <thread>

#include "rstasker/aws/sigv4.hpp"
#include "rstasker/common/error.hpp"
#include "rstasker/common/json.hpp"
#include "rstasker/common/log.hpp"
#include "rstasker/common/text.hpp"
#include "rstasker/tasker/metrics.hpp"
#include "tasker/running_statements.hpp"

namespace rstasker::tasker {

namespace {

// Redshift statements may run for 24 hours; a lock outlives that by an hour so it never expires
// under a statement that is still running.
constexpr std::int64_t kLockLifetimeMs = 25LL * 3600 * 1000;
// No Lambda invocation lives longer; a lock without a statement id older than this was left by
// an invocation that died before starting its statement.
constexpr std::int64_t kAbandonedStartMs = 15LL * 60 * 1000;
constexpr int kInsertAttempts = 5;
constexpr int kLockAttempts = 4;
// When the state table may forget `record` (its TTL): TtlDays after its creation, and never
// before its waiter can have been answered.
std::int64_t record_expiry_s(const StatementRecord& record, int ttl_days) {
  const std::int64_t created_s = record.created_at_ms / 1000;
  std::int64_t ttl = static_cast<std::int64_t>(ttl_days) * 86400;
  if (record.tracked()) ttl = std::max(ttl, kMinWaitingRecordSeconds);
  return created_s + ttl;
}
// An ambiguous start is sent again (same ClientToken) while at least this much work time is left.
constexpr std::chrono::milliseconds kMinTimeToResend{300};
constexpr std::chrono::milliseconds kResendPause{200};

// Whether a failed call may still have reached the Data API: no HTTP answer came (a timeout, a
// broken connection) or a server error did. A 4xx answer is a refusal.
bool may_have_started(const Error& e) {
  return e.http_status() == 0 || e.http_status() >= 500;
}

Error concurrent_execution(const std::string& detail) {
  metrics::count(metric::kSingletonRefused);
  return Error(error_names::kConcurrentExecution,
               "the same SQL is already running on this target: " + detail);
}

}  // namespace

Launcher::Launcher(const Config& config, std::shared_ptr<services::RedshiftData> redshift,
                   std::shared_ptr<StateTable> state)
    : config_(config), redshift_(std::move(redshift)), state_(std::move(state)) {}

std::string Launcher::lock_key(const services::RedshiftTarget& target,
                               const std::vector<std::string>& sqls,
                               const std::vector<services::SqlParameter>& parameters) {
  // Canonical JSON: no separator inside a SQL text can make two requests collide.
  Json material = {{"cluster", target.cluster_identifier},
                   {"workgroup", target.workgroup_name},
                   {"database", target.database},
                   {"sqls", sqls},
                   {"parameters", canonical_parameters(parameters)}};
  return "lock#" + aws::sha256_hex(dump_json(material));
}

void Launcher::release_quietly(const std::string& lock_key, const std::string& holder,
                               const aws::CallContext& context) {
  try {
    state_->release_lock(lock_key, holder, context);
  } catch (const Error& e) {
    // Left in place, the lock is taken over once its holder is seen to be finished or absent.
    spdlog::error("could not release singleton lock {}: {}", lock_key, e.what());
  }
}

void Launcher::undo_start(const StatementRecord& record, bool keep_record, const Error& failure,
                          const aws::CallContext& cleanup) {
  const std::string name = record.key.statement_name();
  try {
    if (keep_record) {
      state_->mark_start_failed(record.key, failure.name() + ": " + failure.message(), cleanup);
    }
  } catch (const Error& e) {
    // The record still carries its TTL and reconcile will find it; report the real failure.
    spdlog::error("could not record the failed start of {}: {}", name, e.what());
  }
  if (!record.lock_key.empty()) release_quietly(record.lock_key, name, cleanup);
}

void Launcher::refuse_if_running_elsewhere(const StartRequest& request, const std::string& key,
                                           const std::string& holder,
                                           const aws::CallContext& context) {
  std::optional<std::string> twin;
  try {
    twin = find_running_twin(*redshift_, request.target, request.sqls, request.parameters, holder,
                             context);
  } catch (const Error&) {
    release_quietly(key, holder, context.for_cleanup());
    throw;
  }
  if (!twin) return;
  release_quietly(key, holder, context.for_cleanup());
  throw concurrent_execution("statement " + *twin + " runs it (started outside this lock)");
}

void Launcher::acquire_singleton(const std::string& key, const std::string& holder,
                                 const aws::CallContext& context) {
  for (int attempt = 0; attempt < kLockAttempts; ++attempt) {
    std::int64_t now = now_epoch_ms();
    SingletonLock mine{key, holder, "", now, now + kLockLifetimeMs};
    if (state_->acquire_lock(mine, now, context)) return;

    auto current = state_->get_lock(key, context);
    if (!current) continue;  // released between our write and our read: try again
    // Our own lock: the write was applied but its answer was lost. It is ours to hold.
    if (current->holder == holder) return;

    bool holder_finished = false;
    std::string holder_statement = current->statement_id;
    if (holder_statement.empty() && now - current->acquired_at_ms > kAbandonedStartMs) {
      // The holder never recorded its statement: find it by name, if it ever started.
      if (auto found = services::find_statement_by_name(*redshift_, current->holder, context)) {
        holder_statement = *found;
      } else {
        holder_finished = true;  // it never started
      }
    }
    if (!holder_finished && holder_statement.empty()) {
      throw concurrent_execution("another invocation is starting it (" + current->holder + ")");
    }
    if (!holder_finished) {
      Json described = redshift_->describe_statement(holder_statement, context);
      auto status = services::parse_statement_status(described.value("Status", ""));
      if (!services::is_terminal(status)) {
        throw concurrent_execution("statement " + holder_statement + " is " +
                                   std::string(services::to_string(status)));
      }
    }
    // The holder is done (its completion event may still be on its way): take the lock over.
    if (state_->steal_lock(mine, current->holder, context)) {
      spdlog::info("singleton lock {} taken over from finished holder {}", key, current->holder);
      return;
    }
  }
  throw concurrent_execution("the lock kept changing hands; try again");
}

Json Launcher::execute(const StatementKey& key, const StartRequest& request, bool with_event,
                       const aws::CallContext& context) {
  services::ExecuteRequest execute;
  execute.target = request.target;
  execute.sqls = request.sqls;
  execute.batch = request.batch;
  execute.parameters = request.parameters;
  execute.statement_name = key.statement_name();
  execute.with_event = with_event;
  // The same token on every retry of this start: the Data API runs the SQL at most once.
  execute.client_token = aws::sha256_hex(execute.statement_name).substr(0, 64);
  return redshift_->execute(execute, context);
}

Json Launcher::execute_surely(const StatementKey& key, const StartRequest& request, bool with_event,
                              const aws::CallContext& context) {
  for (;;) {
    try {
      return execute(key, request, with_event, context);
    } catch (const Error& e) {
      // An answer that did not come is not a refusal: the same call, with the same ClientToken,
      // returns the statement the first one started, or starts it now; never a second copy.
      if (!may_have_started(e) || context.deadline.remaining() < kMinTimeToResend) throw;
      spdlog::warn("the start of {} got no answer ({}: {}); asking again with the same token",
                   key.statement_name(), e.name(), e.message());
      std::this_thread::sleep_for(kResendPause);
    }
  }
}

StartResult Launcher::resume(const StatementRecord& earlier, const StartRequest& request,
                             const aws::CallContext& context) {
  const std::string name = earlier.key.statement_name();
  if (earlier.statement_id.empty() && earlier.state == RecordState::kClaimed) {
    // A record claimed without a statement id is being answered: by reconcile, that the
    // statement never started (then a statement started now would have its completion
    // ignored), or by the completion of a start that could not record its id. The retry finds
    // the record DONE and runs nothing.
    throw Error(error_names::kConcurrentExecution, name + " is being answered already; try again",
                0, /*retryable=*/true);
  }
  if (earlier.state == RecordState::kDone) {
    spdlog::info("{} already ran as statement {}; not starting it again", request.caller_id, name);
    return StartResult{earlier.key, {{"Id", earlier.statement_id}}, std::nullopt};
  }
  // The earlier attempt may or may not have reached the Data API: the same statement name and
  // client token make the repeated call return the statement it started, or start it now.
  Json response = execute_surely(earlier.key, request, earlier.tracked(), context);
  const std::string statement_id = response.value("Id", "");
  spdlog::info("resumed {}: statement {}", name, statement_id);
  if (earlier.statement_id.empty()) state_->set_statement_id(earlier.key, statement_id, context);
  return StartResult{earlier.key, std::move(response), std::nullopt};
}

StatementRecord Launcher::new_record(const StartRequest& request) const {
  std::int64_t now = now_epoch_ms();
  StatementRecord record;
  record.key.id = request.caller_id.empty() ? "adhoc:" + random_uuid() : request.caller_id;
  record.key.invocation_id = StatementKey::new_invocation_id();
  record.waiter = request.waiter;
  record.created_at_ms = now;
  if (request.singleton) {
    record.lock_key = lock_key(request.target, request.sqls, request.parameters);
  }
  record.expires_at_s = record_expiry_s(record, config_.ttl_days);
  return record;
}

std::string Launcher::request_digest(const StartRequest& request) {
  const services::RedshiftTarget& t = request.target;
  Json parameters = Json::array();
  for (const auto& p : request.parameters) parameters.push_back({p.name, p.value});
  Json what = {
      {"target", {t.cluster_identifier, t.workgroup_name, t.database, t.db_user, t.secret_arn}},
      {"sqls", request.sqls},
      {"batch", request.batch},
      {"parameters", parameters},
      {"singleton", request.singleton},
      {"waiter", static_cast<int>(request.waiter.kind)}};
  return aws::sha256_hex(dump_json(what));
}

StartResult Launcher::start(const StartRequest& request, const aws::CallContext& context) {
  if (!request.idempotency_key.empty()) return start_keyed(request, context);
  if (request.resume && !request.caller_id.empty()) {
    auto earlier = state_->latest(request.caller_id, /*started_only=*/false, context);
    // A start that failed is started afresh; anything else is the same statement.
    if (earlier && earlier->state != RecordState::kStartFailed) {
      return resume(*earlier, request, context);
    }
  }
  StatementRecord record = new_record(request);
  // A record is kept when someone may ask about the statement later: a waiter, a lock, or an
  // execution that may say "LATEST".
  const bool keep_record = record.tracked() || !request.caller_id.empty();
  bool inserted = !keep_record;
  for (int attempt = 0; attempt < kInsertAttempts && !inserted; ++attempt) {
    if (attempt > 0) record.key.invocation_id = StatementKey::new_invocation_id();
    // The lock comes first, so a refused singleton writes nothing but the lock check.
    if (request.singleton) {
      acquire_singleton(record.lock_key, record.key.statement_name(), context);
      refuse_if_running_elsewhere(request, record.lock_key, record.key.statement_name(), context);
    }
    try {
      inserted = state_->insert(record, context);
    } catch (const Error&) {
      if (request.singleton) {
        release_quietly(record.lock_key, record.key.statement_name(), context.for_cleanup());
      }
      throw;
    }
    // Another sandbox used the same invocation id for this caller in the same microsecond.
    if (!inserted && request.singleton) {
      release_quietly(record.lock_key, record.key.statement_name(), context.for_cleanup());
    }
  }
  if (!inserted) {
    throw Error(error_names::kInternalError,
                "could not allocate a unique invocation id for " + record.key.id);
  }
  return launch(record, keep_record, request, context);
}

StartResult Launcher::start_keyed(const StartRequest& request, const aws::CallContext& context) {
  const std::string digest = request_digest(request);
  for (int attempt = 0; attempt < kInsertAttempts; ++attempt) {
    auto marker = state_->get_idempotency(request.caller_id, request.idempotency_key, context);
    if (marker && marker->request_digest != digest) {
      throw invalid_request(
          "this idempotencyKey was first used for a different request (other SQL, parameters, "
          "target, action or waiter); a key stands for one request");
    }
    std::optional<StatementRecord> earlier;
    if (marker) earlier = state_->get(marker->record, context);
    StatementRecord record = new_record(request);
    IdempotencyMarker mine{request.caller_id, request.idempotency_key, record.key, digest,
                           record.expires_at_s};
    record.idempotency_id = mine.id();
    if (earlier && earlier->idempotency_id == record.idempotency_id &&
        earlier->state != RecordState::kStartFailed) {
      return repeat(*earlier, request, context);
    }
    if (marker && !earlier) {
      // The first start with this key has not recorded its statement: it is still starting it,
      // or it died. Start it under the same name, so that between the two only one statement
      // can run (same name, same ClientToken) and only one record be inserted.
      record.key = marker->record;
    } else if (!state_->put_idempotency(mine, marker ? std::optional(marker->record) : std::nullopt,
                                        context)) {
      continue;  // another start with this key got there first: follow it
    }
    if (request.singleton) {
      acquire_singleton(record.lock_key, record.key.statement_name(), context);
      refuse_if_running_elsewhere(request, record.lock_key, record.key.statement_name(), context);
    }
    // A failed insert leaves the lock to be taken over later: another start with this key may
    // hold the same lock under the same name.
    if (!state_->insert(record, context)) continue;  // another start recorded it: follow it
    return launch(record, /*keep_record=*/true, request, context);
  }
  throw Error(error_names::kInternalError,
              "starts with the same idempotencyKey kept changing its record; try again", 0, true);
}

StartResult Launcher::repeat(const StatementRecord& earlier, const StartRequest& request,
                             const aws::CallContext& context) {
  const std::string name = earlier.key.statement_name();
  StartResult result{earlier.key, {{"Id", earlier.statement_id}}, std::nullopt};
  if (earlier.statement_id.empty() && earlier.state != RecordState::kDone) {
    // The first start may be starting it now, or have died before (or while) calling the Data
    // API: the same name and ClientToken return its statement, or start it once.
    result.response = execute_surely(earlier.key, request, earlier.tracked(), context);
    const std::string statement_id = result.response.value("Id", "");
    state_->set_statement_id(earlier.key, statement_id, context);
    if (!earlier.lock_key.empty()) {
      state_->set_lock_statement(earlier.lock_key, name, statement_id, context);
    }
  }
  spdlog::info("{} repeats the start of statement {} (same idempotency key); not starting it again",
               request.caller_id.empty() ? "a caller" : request.caller_id, name);
  if (request.waiter.kind == WaiterKind::kNone) return result;

  // The new waiter replaces the old one (whose attempt failed) while the record waits. A claim
  // in progress is answering the old waiter: wait for it to end, then answer the new one.
  for (;;) {
    if (state_->rebind_waiter(earlier.key, request.waiter, context)) return result;
    auto now = state_->get(earlier.key, context);
    if (!now) {
      throw Error(error_names::kInternalError, "the record of statement " + name + " vanished");
    }
    if (now->state == RecordState::kDone) {
      if (result.response.value("Id", "").empty()) result.response["Id"] = now->statement_id;
      result.finished = *now;
      return result;
    }
    if (now->state == RecordState::kStartFailed) {
      throw Error(error_names::kInternalError,
                  "the start of statement " + name + " failed meanwhile; try again", 0, true);
    }
    if (context.deadline.remaining() < kMinTimeToResend) {
      throw Error(error_names::kDeadlineExceeded,
                  "statement " + name + " is being completed; try again", 0, true);
    }
    std::this_thread::sleep_for(kResendPause);
  }
}

StartResult Launcher::launch(const StatementRecord& record, bool keep_record,
                             const StartRequest& request, const aws::CallContext& context) {
  const std::string name = record.key.statement_name();
  log::ScopedFields fields{{"statementName", name},
                           {"waiter", metric::waiter_name(record.waiter.kind)}};

  // What follows a failed or late start must happen even when the work deadline has passed (it
  // may be the failure): it gets the cleanup budget, or a lock would stay taken for nothing.
  Json response;
  try {
    response = execute_surely(record.key, request, record.tracked(), context);
  } catch (const Error& e) {
    const aws::CallContext cleanup = context.for_cleanup();
    if (!may_have_started(e)) {
      spdlog::warn("statement {} did not start: {}: {}", name, e.name(), e.message());
      metric::count_for(metric::kStartFailures, record.waiter.kind);
      undo_start(record, keep_record, e, cleanup);
      throw;
    }
    // Still no answer and no time to ask again. The statement may run (ListStatements may not
    // show it yet), so nothing is undone: the record stays waiting with its lock, and the
    // completion event or reconcile finishes it. A name that is listed settles it at once.
    // Half of the cleanup time at most: the rest is kept for reporting.
    const aws::CallContext lookup{cleanup.deadline.capped(cleanup.deadline.remaining() / 2),
                                  cleanup.trace_id, cleanup.hard_deadline};
    std::optional<std::string> started;
    try {
      started = services::find_statement_by_name(*redshift_, name, lookup);
    } catch (const std::exception& lookup_error) {
      spdlog::warn("could not learn whether {} started: {}", name, lookup_error.what());
    }
    if (!started || started->empty()) {
      spdlog::warn(
          "whether statement {} started is unknown ({}: {}); its record is left waiting for the "
          "completion event or reconcile",
          name, e.name(), e.message());
      throw Error(e.name(),
                  "the start of statement " + name + " got no answer (" + e.message() +
                      "); it may be running, and is left to its completion event or reconcile",
                  e.http_status(), e.retryable());
    }
    spdlog::warn("statement {} started although its start failed ({}: {})", name, e.name(),
                 e.message());
    response = {{"Id", *started}};
  }

  const std::string statement_id = response.value("Id", "");
  spdlog::info("started statement {} as {}", statement_id, name);
  metric::count_for(metric::kStatementsStarted, record.waiter.kind);
  const aws::CallContext cleanup = context.for_cleanup();
  try {
    if (keep_record) state_->set_statement_id(record.key, statement_id, cleanup);
    if (request.singleton) state_->set_lock_statement(record.lock_key, name, statement_id, cleanup);
  } catch (const Error& e) {
    // The statement runs and its completion event names the record, so the callback still
    // happens; only LATEST and lock take-over lose precision until reconcile looks it up.
    spdlog::warn("statement {} started but its id was not recorded: {}", statement_id, e.what());
  }
  return StartResult{record.key, std::move(response), std::nullopt};
}

}  // namespace rstasker::tasker
