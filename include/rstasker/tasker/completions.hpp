// Completion events: SQS batches of Redshift Data API "statement finished" events, turned into
// exactly one callback per statement (see the protocol in state_table.hpp). Reconcile finishes
// statements whose event never came through the same path.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string_view>

#include "rstasker/aws/json_client.hpp"
#include "rstasker/services/redshift_data.hpp"
#include "rstasker/tasker/notifier.hpp"
#include "rstasker/tasker/outcome.hpp"
#include "rstasker/tasker/state_table.hpp"

namespace rstasker::tasker {

// Called after each step of a completion ("claimed", "called_back", "finished") with the step's
// name. For tests only: a hook that throws something other than rstasker::Error simulates the
// process dying at that point (nothing after it runs, nothing is cleaned up).
using FaultHook = std::function<void(std::string_view step)>;

// Time limits. Every call a record makes respects the context's deadline; in Lambda that is the
// work deadline of CallContext::for_invocation, kInvocationReserve before Lambda stops the
// invocation, so the batch response is still returned after a record used up its time.
struct CompletionOptions {
  // A claim is held until the invocation's deadline plus this grace.
  std::chrono::milliseconds claim_grace{10000};
  // A record is not started when less than this remains; it is left for redelivery instead.
  // Covers one record's usual worst case (a claim, a DescribeStatement, a heartbeat probe, the
  // callback with a retry, the write that marks it done); a slower record is cut off by the
  // deadline and retried.
  std::chrono::milliseconds min_time_to_start{3000};
  // Kept back from a record's callback calls (DescribeStatement, the probe, the callback itself),
  // at most a quarter of the time left, so marking the record done straight after a callback
  // that ran to the deadline still has time: otherwise a CloudFormation answer would be PUT
  // again by the redelivery.
  std::chrono::milliseconds finish_reserve{500};
  // Records of one batch processed at the same time.
  std::size_t max_parallel = 10;
  FaultHook fault_hook;
};

enum class Disposition {
  kCompleted,    // this call delivered the callback (or there was no waiter) and marked it done
  kNotOurs,      // not a statement we track: acknowledge
  kAlreadyDone,  // a duplicate: acknowledge
  kRetry,        // could not finish now: the message must come back
};
std::string_view to_string(Disposition disposition);

class Completions {
 public:
  Completions(std::shared_ptr<StateTable> state, std::shared_ptr<services::RedshiftData> redshift,
              Notifier& notifier, CompletionOptions options);

  // Handles an SQS event whose records carry completion events. Returns
  // {"batchItemFailures": [{"itemIdentifier": <messageId>}...]} listing exactly the records that
  // must be retried; records that are not ours are acknowledged (and logged).
  Json handle_batch(const Json& sqs_event, const aws::CallContext& context);

  // The statement `key` ended as `outcome`: call its waiter back exactly once. When the outcome is
  // a failure without error text, DescribeStatement supplies it. A callback that fails with any
  // std::exception gives the claim back and answers kRetry; other exception types (the test
  // fault hook's) propagate untouched.
  Disposition complete(const StatementKey& key, Outcome outcome, const aws::CallContext& context);

  // Parses one SQS message body; nullopt when it is not a Data API completion event.
  static std::optional<Outcome> parse_completion_event(std::string_view body);

 private:
  void fault(std::string_view step) const;
  void release_after_failure(const StatementKey& key, const std::string& owner,
                             const aws::CallContext& context);

  std::shared_ptr<StateTable> state_;
  std::shared_ptr<services::RedshiftData> redshift_;
  Notifier& notifier_;
  CompletionOptions options_;
};

}  // namespace rstasker::tasker
