// Starting SQL: records who waits, takes the singleton lock when asked, starts the statement with
// a completion event, and leaves nothing half-done when a step fails. Shared by action events,
// CloudFormation custom resources and the query runner.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "rstasker/common/error.hpp"
#include "rstasker/services/redshift_data.hpp"
#include "rstasker/tasker/config.hpp"
#include "rstasker/tasker/state_table.hpp"

namespace rstasker::tasker {

struct StartRequest {
  std::string caller_id;  // the state table partition (an execution ARN); "" → a generated id
  services::RedshiftTarget target;
  std::vector<std::string> sqls;  // several: one transaction (BatchExecuteStatement)
  bool batch = false;             // BatchExecuteStatement even for one statement
  std::vector<services::SqlParameter> parameters;
  Waiter waiter;
  // Refuse (ConcurrentExecution) while a statement with the same SQL and parameters runs on the
  // target, whoever started it.
  bool singleton = false;
  // The caller id names one statement (e.g. a CloudFormation request): a repeated start, as a
  // retried invocation makes, resumes the earlier attempt instead of running the SQL twice.
  bool resume = false;
  // The caller's name for this start, scoped to caller_id: the first start with a key records
  // it (race-free, through a conditional write); a repeat with the same key never starts the
  // SQL again. It resumes the first start's statement (same name and ClientToken when it may not
  // have started yet), binds its own waiter in place of the earlier one while the statement
  // runs, or reports it finished (StartResult::finished) so the caller answers the new waiter.
  // A key whose first start was refused (START_FAILED) starts afresh. A key reused for another
  // request is an InvalidRequest.
  std::string idempotency_key;
};

struct StartResult {
  StatementKey key;
  Json response;  // the Data API's ExecuteStatement / BatchExecuteStatement response
  // A repeat (same idempotency key) of a start whose statement has already been completed: its
  // record. The new waiter was not bound and is to be answered now.
  std::optional<StatementRecord> finished;
};

class Launcher {
 public:
  Launcher(const Config& config, std::shared_ptr<services::RedshiftData> redshift,
           std::shared_ptr<StateTable> state);

  // Starts the statement. Throws ConcurrentExecution when a singleton's SQL is already running,
  // the Data API's error when it refuses the statement (the record is then marked START_FAILED
  // and any lock released), and state table errors before anything started. A start that got no
  // answer or a server error is sent again with the same ClientToken while the work deadline
  // allows (the Data API then returns the statement the first call started, or starts it once).
  // Still unanswered at the deadline, it is looked up by its statement name: if listed, start()
  // returns it ({"Id"} only); if not, it may still be running, so nothing is undone: the record
  // stays WAITING with its lock for the completion event or reconcile, and the error is thrown.
  // The undoing and recording after the start use context.for_cleanup(), so they happen even
  // when the work deadline has passed.
  StartResult start(const StartRequest& request, const aws::CallContext& context);

  // The singleton lock key for this SQL with these parameters (in any order) on this target.
  static std::string lock_key(const services::RedshiftTarget& target,
                              const std::vector<std::string>& sqls,
                              const std::vector<services::SqlParameter>& parameters);

 private:
  StartResult resume(const StatementRecord& earlier, const StartRequest& request,
                     const aws::CallContext& context);
  StartResult start_keyed(const StartRequest& request, const aws::CallContext& context);
  StartResult repeat(const StatementRecord& earlier, const StartRequest& request,
                     const aws::CallContext& context);
  // Starts the statement of an inserted record (or of none, without keep_record) and records
  // its id; undoes the record and lock when the Data API refuses it.
  StartResult launch(const StatementRecord& record, bool keep_record, const StartRequest& request,
                     const aws::CallContext& context);
  StatementRecord new_record(const StartRequest& request) const;
  // What a key's first start asked for: a repeat must ask for the same.
  static std::string request_digest(const StartRequest& request);
  Json execute(const StatementKey& key, const StartRequest& request, bool with_event,
               const aws::CallContext& context);
  // execute(), sent again with the same ClientToken after an ambiguous failure (no answer, a
  // server error) while the work deadline allows; throws the last error.
  Json execute_surely(const StatementKey& key, const StartRequest& request, bool with_event,
                      const aws::CallContext& context);
  // After a start that failed: marks the record START_FAILED (when one is kept) and releases the
  // record's lock (when it has one), logging rather than throwing what fails.
  void undo_start(const StatementRecord& record, bool keep_record, const Error& failure,
                  const aws::CallContext& cleanup);
  void acquire_singleton(const std::string& lock_key, const std::string& holder,
                         const aws::CallContext& context);
  void release_quietly(const std::string& lock_key, const std::string& holder,
                       const aws::CallContext& context);
  // With the lock held: throws ConcurrentExecution (releasing the lock first) when a statement
  // with the request's SQL and parameters runs on its target, started by anyone but `holder`
  // (the statement name this start runs under: an earlier attempt with the same
  // idempotencyKey may already run it, and holds the same lock under the same name).
  void refuse_if_running_elsewhere(const StartRequest& request, const std::string& lock_key,
                                   const std::string& holder, const aws::CallContext& context);

  const Config& config_;
  std::shared_ptr<services::RedshiftData> redshift_;
  std::shared_ptr<StateTable> state_;
};

}  // namespace rstasker::tasker
