// SQS completion batches and the exactly-once completion of one statement.
#include "rstasker/tasker/completions.hpp"

#include <spdlog/spdlog.h>

#include <atomic>
#include <map>
#include <mutex>
#include <thread>

#include "rstasker/common/error.hpp"
#include "rstasker/common/json.hpp"
#include "rstasker/common/log.hpp"
#include "rstasker/common/text.hpp"
#include "rstasker/tasker/metrics.hpp"

namespace rstasker::tasker {

namespace {

constexpr std::string_view kSource = "aws.redshift-data";
constexpr std::string_view kDetailType = "Redshift Data Statement Status Change";

struct Item {
  std::string message_id;
  std::optional<Outcome> outcome;
  std::optional<StatementKey> key;
  Disposition result = Disposition::kRetry;
};

}  // namespace

std::string_view to_string(Disposition disposition) {
  switch (disposition) {
    case Disposition::kCompleted:
      return "completed";
    case Disposition::kNotOurs:
      return "not ours";
    case Disposition::kAlreadyDone:
      return "already done";
    case Disposition::kRetry:
      return "retry";
  }
  return "retry";
}

Completions::Completions(std::shared_ptr<StateTable> state,
                         std::shared_ptr<services::RedshiftData> redshift, Notifier& notifier,
                         CompletionOptions options)
    : state_(std::move(state)),
      redshift_(std::move(redshift)),
      notifier_(notifier),
      options_(std::move(options)) {}

std::optional<Outcome> Completions::parse_completion_event(std::string_view body) {
  Json event = Json::parse(body.begin(), body.end(), nullptr, /*allow_exceptions=*/false);
  if (!event.is_object() || string_member(event, "source") != kSource ||
      string_member(event, "detail-type") != kDetailType) {
    return std::nullopt;
  }
  auto detail = event.find("detail");
  if (detail == event.end() || !detail->is_object()) return std::nullopt;
  Outcome outcome;
  outcome.statement_name = string_member(*detail, "statementName");
  outcome.statement_id = string_member(*detail, "statementId");
  outcome.status = services::parse_statement_status(string_member(*detail, "state"));
  if (outcome.statement_name.empty() || !services::is_terminal(outcome.status)) {
    return std::nullopt;
  }
  if (auto rows = detail->find("rows"); rows != detail->end() && rows->is_number_integer()) {
    outcome.rows = rows->get<std::int64_t>();
  }
  outcome.event = std::move(event);
  return outcome;
}

void Completions::fault(std::string_view step) const {
  if (options_.fault_hook) options_.fault_hook(step);
}

void Completions::release_after_failure(const StatementKey& key, const std::string& owner,
                                        const aws::CallContext& context) {
  // Within the work deadline, not context.for_cleanup(): the time after it is kept for returning
  // the batch response, and a claim left behind only delays the redelivery until its lease ends.
  try {
    state_->release_claim(key, owner, context);
  } catch (const std::exception& e) {
    // The claim's lease runs out on its own; the redelivery takes it over then.
    spdlog::warn("could not release the claim on {}: {}", key.statement_name(), e.what());
  }
}

Disposition Completions::complete(const StatementKey& key, Outcome outcome,
                                  const aws::CallContext& context) {
  const std::string name = key.statement_name();
  const std::string owner = random_uuid();
  log::ScopedFields fields{{"statementName", name}, {"statementId", outcome.statement_id}};
  const std::int64_t lease_until = context.deadline.epoch_ms() + options_.claim_grace.count();

  Claim claim = state_->claim(key, owner, lease_until, context);
  switch (claim.result) {
    case ClaimResult::kMissing:
      spdlog::info("statement {} has no record in the state table: not ours, acknowledged", name);
      metrics::count(metric::kForeignEvents);
      return Disposition::kNotOurs;
    case ClaimResult::kAlreadyDone:
      spdlog::info("statement {} was already completed ({}): duplicate acknowledged", name,
                   to_string(claim.record.state));
      metrics::count(metric::kDuplicateEvents);
      return Disposition::kAlreadyDone;
    case ClaimResult::kHeldByOther:
      spdlog::info("statement {} is being completed by another invocation; will retry", name);
      return Disposition::kRetry;
    case ClaimResult::kClaimed:
      break;
  }
  fault("claimed");
  const StatementRecord& record = claim.record;
  log::ScopedFields waiter_field{{"waiter", metric::waiter_name(record.waiter.kind)}};
  // Whichever attempt answers (this event, a redelivery, reconcile), a CloudFormation answer is
  // built from the same stable inputs, so a repeated PUT stores the same bytes again.
  if (outcome.statement_id.empty()) outcome.statement_id = record.statement_id;

  // The callback's calls stop finish_reserve early, so finish() below still has time.
  const aws::CallContext callback_context{context.deadline.with_reserve(options_.finish_reserve),
                                          context.trace_id, context.hard_deadline};
  try {
    bool deliver = record.waiter.kind != WaiterKind::kNone;
    if (deliver && claim.taken_over && !notifier_.still_waiting(record.waiter, callback_context)) {
      spdlog::info("statement {}: an earlier attempt already called back; not calling again", name);
      deliver = false;
    }
    if (deliver) {
      if (!outcome.succeeded() && outcome.error.empty() && !outcome.statement_id.empty()) {
        Json described = redshift_->describe_statement(outcome.statement_id, callback_context);
        outcome.error = string_member(described, "Error");  // "" when absent or null
      }
      notifier_.notify(record.waiter, outcome, callback_context);
    }
  } catch (const Error& e) {
    spdlog::warn("could not call back for statement {} ({}: {}); it will be retried", name,
                 e.name(), e.message());
    metric::count_for(metric::kCallbackFailures, record.waiter.kind);
    release_after_failure(key, owner, context);
    return Disposition::kRetry;
  } catch (const std::exception& e) {
    // Not a service error (an answer of an unexpected shape, a bug): still give the claim back,
    // or every redelivery would find it held until its lease runs out.
    spdlog::error("calling back for statement {} failed unexpectedly ({}); it will be retried",
                  name, e.what());
    metric::count_for(metric::kCallbackFailures, record.waiter.kind);
    release_after_failure(key, owner, context);
    return Disposition::kRetry;
  }
  fault("called_back");

  // Marked done straight after the callback, before anything else: a crash in between leaves a
  // claim that a redelivery (or reconcile) takes over once its lease runs out, and the shorter
  // that window the rarer the case where the waiter is called again (see below).
  try {
    if (!state_->finish(key, owner, std::string(services::to_string(outcome.status)), context)) {
      spdlog::warn("statement {}: the claim expired before it was marked done", name);
    }
  } catch (const std::exception& e) {
    // The callback is delivered but the record stays claimed (and in the waiting index). Once
    // the lease runs out, reconcile or a redelivery takes the claim over: for Step Functions the
    // heartbeat probe finds the task closed and the record is only marked done; a CloudFormation
    // response URL cannot be asked, so the same response body is PUT again (S3 stores the same
    // object again; CloudFormation has already read it or reads the identical one).
    spdlog::error("statement {} was called back but not marked done: {}", name, e.what());
  }
  fault("finished");

  if (!record.lock_key.empty()) {
    try {
      state_->release_lock(record.lock_key, name, context);
    } catch (const std::exception& e) {
      // Left in place, the lock is taken over once its holder is seen to be finished.
      spdlog::warn("could not release singleton lock {} of {}: {}", record.lock_key, name,
                   e.what());
    }
  }
  spdlog::info("statement {} ({}) {}: completed", name, outcome.statement_id,
               services::to_string(outcome.status));
  metric::record_completion(record.waiter.kind, outcome, record.created_at_ms);
  return Disposition::kCompleted;
}

Json Completions::handle_batch(const Json& sqs_event, const aws::CallContext& context) {
  const Json& records = sqs_event.at("Records");
  std::vector<Item> items(records.size());
  std::map<std::string, std::vector<std::size_t>> by_statement;
  for (std::size_t i = 0; i < records.size(); ++i) {
    Item& item = items[i];
    item.message_id = string_member(records[i], "messageId");
    item.outcome = parse_completion_event(string_member(records[i], "body"));
    if (!item.outcome) {
      spdlog::info("SQS message {} is not a Redshift Data API completion event: acknowledged",
                   item.message_id);
      metrics::count(metric::kForeignEvents);
      item.result = Disposition::kNotOurs;
      continue;
    }
    item.key = StatementKey::from_statement_name(item.outcome->statement_name);
    if (!item.key) {
      spdlog::info("statement {} was not started by redshift-tasker: acknowledged",
                   item.outcome->statement_name);
      metrics::count(metric::kForeignEvents);
      item.result = Disposition::kNotOurs;
      continue;
    }
    // The same completion twice in one batch is completed once; the copies share its result.
    by_statement[item.outcome->statement_name].push_back(i);
  }

  std::vector<const std::vector<std::size_t>*> groups;
  for (const auto& [name, indices] : by_statement) groups.push_back(&indices);
  std::atomic<std::size_t> next{0};
  std::exception_ptr crash;
  std::mutex crash_mutex;
  std::atomic<bool> crashed{false};
  auto work = [&] {
    for (std::size_t g = next++; g < groups.size() && !crashed; g = next++) {
      const auto& indices = *groups[g];
      Item& lead = items[indices.front()];
      Disposition result = Disposition::kRetry;
      if (context.deadline.remaining() < options_.min_time_to_start) {
        spdlog::warn("too little time left to complete {}; left for redelivery",
                     lead.outcome->statement_name);
      } else {
        try {
          result = complete(*lead.key, *lead.outcome, context);
        } catch (const std::exception& e) {
          spdlog::error("completing {} failed: {}; will retry", lead.outcome->statement_name,
                        e.what());
        } catch (...) {
          std::lock_guard lock(crash_mutex);
          crash = std::current_exception();
          crashed = true;
          return;
        }
      }
      if (result != Disposition::kRetry && indices.size() > 1) {
        metrics::count(metric::kDuplicateEvents, {}, static_cast<double>(indices.size() - 1));
      }
      for (std::size_t i : indices) {
        items[i].result = (i == indices.front() || result == Disposition::kRetry)
                              ? result
                              : Disposition::kAlreadyDone;
      }
    }
  };
  std::size_t workers = std::min(options_.max_parallel, groups.size());
  if (workers <= 1) {
    work();
  } else {
    std::vector<std::thread> threads;
    threads.reserve(workers);
    for (std::size_t i = 0; i < workers; ++i) threads.emplace_back(work);
    for (auto& t : threads) t.join();
  }
  if (crash) std::rethrow_exception(crash);

  Json failures = Json::array();
  for (const Item& item : items) {
    if (item.result != Disposition::kRetry) continue;
    if (item.message_id.empty()) {
      // Without an id the record cannot be named for retry: fail the whole batch instead.
      throw Error(error_names::kInternalError,
                  "an SQS record without a messageId must be retried; failing the batch");
    }
    failures.push_back({{"itemIdentifier", item.message_id}});
  }
  return {{"batchItemFailures", failures}};
}

}  // namespace rstasker::tasker
