// Statement start-up: record, lock, start, and undo on failure.
#include "rstasker/tasker/launcher.hpp"

#include <spdlog/spdlog.h>

#include "rstasker/aws/sigv4.hpp"
#include "rstasker/common/error.hpp"
#include "rstasker/common/log.hpp"
#include "rstasker/common/text.hpp"
#include "rstasker/tasker/metrics.hpp"

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
                               const std::vector<std::string>& sqls) {
  std::string material =
      target.cluster_identifier + '\n' + target.workgroup_name + '\n' + target.database;
  for (const auto& sql : sqls) material += '\n' + sql;
  return "lock#" + aws::sha256_hex(material);
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

void Launcher::acquire_singleton(const std::string& key, const std::string& holder,
                                 const aws::CallContext& context) {
  for (int attempt = 0; attempt < kLockAttempts; ++attempt) {
    std::int64_t now = now_epoch_ms();
    SingletonLock mine{key, holder, "", now, now + kLockLifetimeMs};
    if (state_->acquire_lock(mine, now, context)) return;

    auto current = state_->get_lock(key, context);
    if (!current) continue;  // released between our write and our read: try again

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

StartResult Launcher::resume(const StatementRecord& earlier, const StartRequest& request,
                             const aws::CallContext& context) {
  const std::string name = earlier.key.statement_name();
  if (earlier.state == RecordState::kDone) {
    spdlog::info("{} already ran as statement {}; not starting it again", request.caller_id, name);
    return StartResult{earlier.key, {{"Id", earlier.statement_id}}};
  }
  // The earlier attempt may or may not have reached the Data API: the same statement name and
  // client token make the repeated call return the statement it started, or start it now.
  Json response = execute(earlier.key, request, earlier.tracked(), context);
  const std::string statement_id = response.value("Id", "");
  spdlog::info("resumed {}: statement {}", name, statement_id);
  if (earlier.statement_id.empty()) state_->set_statement_id(earlier.key, statement_id, context);
  return StartResult{earlier.key, std::move(response)};
}

StartResult Launcher::start(const StartRequest& request, const aws::CallContext& context) {
  if (request.resume && !request.caller_id.empty()) {
    auto earlier = state_->latest(request.caller_id, /*started_only=*/false, context);
    // A start that failed is started afresh; anything else is the same statement.
    if (earlier && earlier->state != RecordState::kStartFailed) {
      return resume(*earlier, request, context);
    }
  }
  std::int64_t now = now_epoch_ms();
  StatementRecord record;
  record.key.id = request.caller_id.empty() ? "adhoc:" + random_uuid() : request.caller_id;
  record.waiter = request.waiter;
  record.created_at_ms = now;
  record.expires_at_s = now / 1000 + static_cast<std::int64_t>(config_.ttl_days) * 86400;
  if (request.singleton) record.lock_key = lock_key(request.target, request.sqls);

  // A record is kept when someone may ask about the statement later: a waiter, a lock, or an
  // execution that may say "LATEST".
  const bool keep_record = record.tracked() || !request.caller_id.empty();
  bool inserted = !keep_record;
  for (int attempt = 0; attempt < kInsertAttempts && !inserted; ++attempt) {
    record.key.invocation_id = StatementKey::new_invocation_id();
    // The lock comes first, so a refused singleton writes nothing but the lock check.
    if (request.singleton) acquire_singleton(record.lock_key, record.key.statement_name(), context);
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
  if (!keep_record) record.key.invocation_id = StatementKey::new_invocation_id();
  const std::string name = record.key.statement_name();
  log::ScopedFields fields{{"statementName", name},
                           {"waiter", metric::waiter_name(record.waiter.kind)}};

  // What follows a failed or late start must happen even when the work deadline has passed (it
  // may be the failure): it gets the cleanup budget, or a lock would stay taken for nothing.
  Json response;
  try {
    response = execute(record.key, request, record.tracked(), context);
  } catch (const Error& e) {
    const aws::CallContext cleanup = context.for_cleanup();
    std::optional<std::string> started;
    if (may_have_started(e)) {
      // No answer is not a refusal: the request may have reached the Data API, and undoing a
      // statement that runs would free its singleton lock for a second copy.
      // Half of the cleanup time at most: the undo below must still get its turn.
      const aws::CallContext lookup{cleanup.deadline.capped(cleanup.deadline.remaining() / 2),
                                    cleanup.trace_id, cleanup.hard_deadline};
      try {
        started = services::find_statement_by_name(*redshift_, name, lookup);
      } catch (const std::exception& e) {
        spdlog::warn("could not learn whether {} started: {}", name, e.what());
      }
    }
    if (!started || started->empty()) {
      spdlog::warn("statement {} did not start: {}: {}", name, e.name(), e.message());
      metric::count_for(metric::kStartFailures, record.waiter.kind);
      undo_start(record, keep_record, e, cleanup);
      throw;
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
  return StartResult{record.key, std::move(response)};
}

}  // namespace rstasker::tasker
