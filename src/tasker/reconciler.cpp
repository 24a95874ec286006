// Finishing statements whose completion event never arrived.
#include "rstasker/tasker/reconciler.hpp"

#include <spdlog/spdlog.h>

#include "rstasker/common/error.hpp"
#include "rstasker/common/log.hpp"
#include "rstasker/common/text.hpp"
#include "rstasker/tasker/metrics.hpp"

namespace rstasker::tasker {

namespace {

// A record without a statement id this old belongs to an invocation that died before the Data
// API accepted its statement (no invocation lives longer than 15 minutes).
constexpr std::int64_t kNeverStartedAfterMs = 15LL * 60 * 1000;

// How long the Data API keeps a statement (DescribeStatement knows it for 24 hours).
constexpr std::int64_t kDataApiRetentionMs = 24LL * 60 * 60 * 1000;

// Whether DescribeStatement said it does not know the statement.
bool is_statement_not_found(const Error& e) {
  if (e.name() == "ResourceNotFoundException") return true;
  const std::string message = ascii_lower(e.message());
  return e.name() == "ValidationException" && (message.find("not found") != std::string::npos ||
                                               message.find("does not exist") != std::string::npos);
}

// The integer member `key` of a Data API answer, or `fallback` when absent, null or not an
// integer (answers are read defensively: a null must not abort the run).
std::int64_t integer_member(const Json& object, const char* key, std::int64_t fallback) {
  if (!object.is_object()) return fallback;
  auto it = object.find(key);
  return it != object.end() && it->is_number_integer() ? it->get<std::int64_t>() : fallback;
}

}  // namespace

Reconciler::Reconciler(std::shared_ptr<StateTable> state,
                       std::shared_ptr<services::RedshiftData> redshift, Completions& completions,
                       ReconcileOptions options)
    : state_(std::move(state)),
      redshift_(std::move(redshift)),
      completions_(completions),
      options_(std::move(options)) {}

Json Reconciler::synthesize_event(const Json& described, const std::string& statement_name,
                                  const std::string& region) {
  Json detail = {{"principal", ""},
                 {"statementName", statement_name},
                 {"statementId", string_member(described, "Id")},
                 {"redshiftQueryId", integer_member(described, "RedshiftQueryId", -1)},
                 {"state", string_member(described, "Status")},
                 {"rows", integer_member(described, "ResultRows", -1)},
                 {"expireAt", now_epoch_seconds() + 86400}};
  return {{"version", "0"},
          {"id", random_uuid()},
          {"detail-type", "Redshift Data Statement Status Change"},
          {"source", "aws.redshift-data"},
          {"account", ""},
          {"time", iso8601_utc(now_epoch_ms())},
          {"region", region},
          {"resources", Json::array()},
          {"detail", detail}};
}

Outcome Reconciler::outcome_of(const Json& described, const std::string& statement_name,
                               const std::string& region) {
  Outcome outcome;
  outcome.statement_name = statement_name;
  outcome.statement_id = string_member(described, "Id");
  outcome.status = services::parse_statement_status(string_member(described, "Status"));
  outcome.error = string_member(described, "Error");  // "" when absent or null
  outcome.rows = integer_member(described, "ResultRows", -1);
  outcome.event = synthesize_event(described, statement_name, region);
  return outcome;
}

Json Reconciler::run(std::chrono::seconds older_than, const aws::CallContext& context) {
  const std::int64_t now = now_epoch_ms();
  const std::int64_t cutoff = now - std::chrono::milliseconds(older_than).count();
  int examined = 0, completed = 0, running = 0, never_started = 0, done = 0, retry = 0, unknown = 0;
  bool more = false;

  // Page through the whole index while time allows: statements still running (they may run
  // 24 hours) stay at its head, and stopping after a fixed number would starve those behind.
  std::string cursor;
  do {
    if (context.deadline.remaining() < options_.min_time_left) {
      more = true;
      break;
    }
    WaitingPage page = state_->waiting_before(cutoff, options_.page_size, cursor, context);
    cursor = page.next;
    for (const StatementRecord& record : page.records) {
      if (context.deadline.remaining() < options_.min_time_left) {
        more = true;
        break;
      }
      ++examined;
      const Examined result = examine(record, now, context);
      after_visit(record, result, now, context);
      switch (result) {
        case Examined::kCompleted:
          ++completed;
          break;
        case Examined::kRunning:
          ++running;
          break;
        case Examined::kNeverStarted:
          ++never_started;
          break;
        case Examined::kAlreadyDone:
          ++done;
          break;
        case Examined::kOutcomeUnknown:
          ++unknown;
          break;
        case Examined::kRetryLater:
          ++retry;
          break;
      }
    }
  } while (!more && !cursor.empty());

  Json summary = {{"examined", examined},    {"completed", completed},
                  {"stillRunning", running}, {"neverStarted", never_started},
                  {"alreadyDone", done},     {"outcomeUnknown", unknown},
                  {"retryLater", retry},     {"more", more}};
  spdlog::info("reconcile: {}", dump_json(summary));
  metrics::count(metric::kReconcileCompleted, {}, completed);
  metrics::count(metric::kReconcileOutcomeUnknown, {}, unknown);
  return summary;
}

void Reconciler::record_found_id(const StatementRecord& record, const std::string& statement_id,
                                 const aws::CallContext& context) {
  try {
    state_->set_statement_id(record.key, statement_id, context);
    spdlog::info("reconcile: recorded statement {} of {}", statement_id,
                 record.key.statement_name());
  } catch (const Error& e) {
    // Only precision is lost: LATEST and reconcile look the name up again next time.
    spdlog::warn("reconcile: could not record statement {} of {}: {}", statement_id,
                 record.key.statement_name(), e.what());
  }
}

Reconciler::Examined Reconciler::answer_never_started(const StatementRecord& record,
                                                      const aws::CallContext& context) {
  // CloudFormation retries nothing after a failed invocation and would wait an hour for an
  // answer: it is told FAILED now. The record ends DONE, so a late retry of the same request
  // resumes into it and runs nothing (Launcher::start), rather than running SQL after the
  // answer was given.
  Outcome outcome;
  outcome.status = services::StatementStatus::kFailed;
  outcome.statement_name = record.key.statement_name();
  outcome.error =
      "the statement never started: the invocation that was to start it ended first (found by "
      "reconcile); no SQL ran";
  spdlog::warn("statement {} never started; answering CloudFormation FAILED",
               outcome.statement_name);
  return after_completion(completions_.complete(record.key, std::move(outcome), context),
                          Examined::kNeverStarted);
}

void Reconciler::after_visit(const StatementRecord& record, Examined examined, std::int64_t now,
                             const aws::CallContext& context) {
  if (examined != Examined::kRunning && examined != Examined::kRetryLater) return;
  try {
    state_->note_reconciled(
        record.key, now, examined == Examined::kRunning ? "stillRunning" : "retryLater", context);
  } catch (const std::exception& e) {
    spdlog::warn("reconcile: could not note its visit of {}: {}", record.key.statement_name(),
                 e.what());
  }
  const std::int64_t now_s = now_epoch_seconds();
  if (record.expires_at_s - now_s >= kMinWaitingRecordSeconds / 2) return;
  try {
    if (state_->keep_until(record.key, now_s + kMinWaitingRecordSeconds, context)) {
      spdlog::info("reconcile: {} still waits; kept for {} more seconds",
                   record.key.statement_name(), kMinWaitingRecordSeconds);
    }
  } catch (const std::exception& e) {
    spdlog::warn("reconcile: could not keep {} alive: {}", record.key.statement_name(), e.what());
  }
}

Reconciler::Examined Reconciler::after_completion(Disposition disposition, Examined completed) {
  switch (disposition) {
    case Disposition::kCompleted:
      return completed;
    case Disposition::kRetry:
      return Examined::kRetryLater;
    case Disposition::kNotOurs:
    case Disposition::kAlreadyDone:
      return Examined::kAlreadyDone;
  }
  return Examined::kRetryLater;
}

Reconciler::Examined Reconciler::examine(const StatementRecord& record, std::int64_t now,
                                         const aws::CallContext& context) {
  const std::string name = record.key.statement_name();
  log::ScopedFields fields{{"statementName", name}, {"statementId", record.statement_id}};
  try {
    std::string id = record.statement_id;
    if (id.empty()) {
      id = services::find_statement_by_name(*redshift_, name, context).value_or("");
      if (!id.empty()) record_found_id(record, id, context);
    }
    Outcome outcome;
    outcome.statement_name = name;
    outcome.statement_id = id;
    if (id.empty()) {
      // its invocation may still be starting it
      if (now - record.created_at_ms < kNeverStartedAfterMs) return Examined::kRunning;
      if (record.waiter.kind == WaiterKind::kCloudFormation)
        return answer_never_started(record, context);
      // A Step Functions caller saw its invocation fail (the task failed with it): nobody waits
      // for a result that was never produced. Finish the record without a callback.
      spdlog::warn("statement {} never started; marking it done without a callback", name);
      Claim claim = state_->claim(record.key, random_uuid(), context.deadline.epoch_ms(), context);
      if (claim.result == ClaimResult::kClaimed) {
        state_->mark_start_failed(record.key, "never started (found by reconcile)", context);
        if (!record.lock_key.empty()) state_->release_lock(record.lock_key, name, context);
      }
      return Examined::kNeverStarted;
    }

    Json described;
    try {
      described = redshift_->describe_statement(id, context);
    } catch (const Error& e) {
      if (!is_statement_not_found(e) || now - record.created_at_ms <= kDataApiRetentionMs) throw;
      // The Data API keeps statements for 24 hours: past that, asking again can never succeed.
      // The waiter is told the outcome is unknown rather than left waiting for ever.
      spdlog::warn("reconcile: the Data API no longer knows statement {} ({}: {})", name, e.name(),
                   e.message());
      outcome.status = services::StatementStatus::kFailed;
      outcome.error =
          "the outcome is unknown: the Redshift Data API no longer knows statement " + id +
          " (it keeps statements for 24 hours, and its completion event never arrived); check "
          "the database before running the SQL again";
      return after_completion(completions_.complete(record.key, std::move(outcome), context),
                              Examined::kOutcomeUnknown);
    }

    outcome = outcome_of(described, name, options_.region);
    if (outcome.statement_id.empty()) outcome.statement_id = id;
    if (!services::is_terminal(outcome.status)) return Examined::kRunning;
    spdlog::info("reconcile: statement {} is {} but was never completed", name,
                 services::to_string(outcome.status));
    return after_completion(completions_.complete(record.key, std::move(outcome), context),
                            Examined::kCompleted);
  } catch (const std::exception& e) {
    // One statement's trouble (a service error, an answer of an unexpected shape) must not
    // stop the run for the others.
    spdlog::warn("reconcile: could not examine {}: {}", name, e.what());
    return Examined::kRetryLater;
  }
}

}  // namespace rstasker::tasker
