// Reconcile: EventBridge delivers completion events on a best-effort basis, so a scheduled
// `{"action":"reconcile"}` looks at statements waiting longer than a threshold (the sparse index,
// not a scan) and finishes the terminal ones exactly as their completion event would have.
#pragma once

#include <chrono>
#include <memory>

#include "rstasker/aws/json_client.hpp"
#include "rstasker/services/redshift_data.hpp"
#include "rstasker/tasker/completions.hpp"
#include "rstasker/tasker/state_table.hpp"

namespace rstasker::tasker {

struct ReconcileOptions {
  std::size_t page_size = 200;                    // records read from the index per query
  std::chrono::milliseconds min_time_left{5000};  // stop examining when less remains
  std::string region;                             // for the events it builds
};

class Reconciler {
 public:
  Reconciler(std::shared_ptr<StateTable> state, std::shared_ptr<services::RedshiftData> redshift,
             Completions& completions, ReconcileOptions options);

  // Examines records waiting since before now - `older_than`, oldest first, paging through the
  // whole waiting index until it ends or less than min_time_left remains. A statement older
  // than the Data API's 24-hour retention that DescribeStatement no longer knows is finished
  // with a FAILED callback whose cause says its outcome is unknown. Returns counts:
  // {"examined", "completed", "stillRunning", "neverStarted", "alreadyDone", "outcomeUnknown",
  //  "retryLater", "more": whether records were left for the next run}.
  Json run(std::chrono::seconds older_than, const aws::CallContext& context);

  // The completion event a statement would have produced, from its DescribeStatement response.
  static Json synthesize_event(const Json& described, const std::string& statement_name,
                               const std::string& region);
  // How a statement ended, from its DescribeStatement response (status, error, rows, and the
  // synthesized event); the status is kUnknown or not terminal while it runs.
  static Outcome outcome_of(const Json& described, const std::string& statement_name,
                            const std::string& region);

 private:
  enum class Examined {
    kCompleted,
    kRunning,
    kNeverStarted,
    kAlreadyDone,
    kOutcomeUnknown,
    kRetryLater
  };
  Examined examine(const StatementRecord& record, std::int64_t now,
                   const aws::CallContext& context);
  // A CloudFormation request whose statement never started: answered FAILED, the record DONE.
  Examined answer_never_started(const StatementRecord& record, const aws::CallContext& context);
  // A record that still waits after this visit (`examined` says how it went) gets the visit
  // noted (listWaiting shows it), and one with less than half of kMinWaitingRecordSeconds to
  // live is given kMinWaitingRecordSeconds from now, so it is never forgotten before it is
  // answered. A failure is only logged (the next run tries again).
  void after_visit(const StatementRecord& record, Examined examined, std::int64_t now,
                   const aws::CallContext& context);
  // What a completion's disposition counts as; `completed` when this run completed it.
  static Examined after_completion(Disposition disposition, Examined completed);
  // Writes the statement id found by name into a record whose start could not write it (for
  // LATEST and the next run); a failure is only logged.
  void record_found_id(const StatementRecord& record, const std::string& statement_id,
                       const aws::CallContext& context);

  std::shared_ptr<StateTable> state_;
  std::shared_ptr<services::RedshiftData> redshift_;
  Completions& completions_;
  ReconcileOptions options_;
};

}  // namespace rstasker::tasker
