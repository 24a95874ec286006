// In-memory stand-ins for the services the tasker uses, for unit tests of the domain layer.
// They keep the contracts of the real implementations (conditional writes, claims, locks), count
// every call, and can be told to fail.
#pragma once

#include <atomic>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "rstasker/common/error.hpp"
#include "rstasker/services/cfn_response.hpp"
#include "rstasker/services/redshift_data.hpp"
#include "rstasker/services/step_functions.hpp"
#include "rstasker/tasker/config.hpp"
#include "rstasker/tasker/state_table.hpp"

namespace rstasker::testing {

// The configuration the domain tests run with: cluster-1, database dev as admin, table "state",
// region eu-west-1.
tasker::Config test_config();

class FakeRedshiftData : public services::RedshiftData {
 public:
  Json execute(const services::ExecuteRequest& request, const aws::CallContext& context) override;
  Json describe_statement(const std::string& id, const aws::CallContext& context) override;
  Json cancel_statement(const std::string& id, const aws::CallContext& context) override;
  Json get_statement_result(const std::string& id, const std::string& next_token,
                            const aws::CallContext& context) override;
  Json list_statements(const services::ListStatementsRequest& request,
                       const aws::CallContext& context) override;

  // Sets a statement's status (and error text) as DescribeStatement will report it.
  void set_status(const std::string& id, std::string status, std::string error = {});
  // DescribeStatement of `id` answers exactly `response` from now on (odd shapes: nulls, ...).
  void set_describe_response(const std::string& id, Json response);
  // The next execute() throws this instead of starting anything.
  void fail_next_execute(Error error);
  // Every call, in order: "<Operation> <argument>".
  std::vector<std::string> calls() const;
  std::vector<services::ExecuteRequest> executed() const;
  std::size_t call_count() const;

 private:
  struct Statement {
    std::string name;
    std::string status = "STARTED";
    std::string error;
    services::ExecuteRequest request;  // what started it (SQL, parameters, target)
  };
  mutable std::mutex mutex_;
  std::map<std::string, Statement> statements_;     // by id
  std::map<std::string, Json> describe_responses_;  // by id
  std::map<std::string, std::string> by_client_token_;
  std::vector<std::string> calls_;
  std::vector<services::ExecuteRequest> executed_;
  std::optional<Error> next_execute_error_;
};

class MemoryStateTable : public tasker::StateTable {
 public:
  bool insert(const tasker::StatementRecord& record, const aws::CallContext& context) override;
  void set_statement_id(const tasker::StatementKey& key, const std::string& statement_id,
                        const aws::CallContext& context) override;
  void mark_start_failed(const tasker::StatementKey& key, const std::string& reason,
                         const aws::CallContext& context) override;
  std::optional<tasker::StatementRecord> get(const tasker::StatementKey& key,
                                             const aws::CallContext& context) override;
  std::optional<tasker::StatementRecord> latest(const std::string& id, bool started_only,
                                                const aws::CallContext& context) override;
  tasker::Claim claim(const tasker::StatementKey& key, const std::string& owner,
                      std::int64_t lease_until_ms, const aws::CallContext& context) override;
  bool release_claim(const tasker::StatementKey& key, const std::string& owner,
                     const aws::CallContext& context) override;
  bool finish(const tasker::StatementKey& key, const std::string& owner, const std::string& outcome,
              const aws::CallContext& context) override;
  tasker::WaitingPage waiting_before(std::int64_t cutoff_ms, std::size_t limit,
                                     const std::string& cursor,
                                     const aws::CallContext& context) override;
  bool rebind_waiter(const tasker::StatementKey& key, const tasker::Waiter& waiter,
                     const aws::CallContext& context) override;
  std::optional<tasker::IdempotencyMarker> get_idempotency(
      const std::string& scope, const std::string& key, const aws::CallContext& context) override;
  bool put_idempotency(const tasker::IdempotencyMarker& marker,
                       const std::optional<tasker::StatementKey>& replacing,
                       const aws::CallContext& context) override;
  void record_failed_update(const tasker::FailedUpdate& update,
                            const aws::CallContext& context) override;
  std::optional<tasker::FailedUpdate> failed_update(const std::string& physical_id,
                                                    const aws::CallContext& context) override;
  void forget_failed_update(const std::string& physical_id,
                            const aws::CallContext& context) override;
  bool acquire_lock(const tasker::SingletonLock& lock, std::int64_t now_ms,
                    const aws::CallContext& context) override;
  bool steal_lock(const tasker::SingletonLock& lock, const std::string& expected_holder,
                  const aws::CallContext& context) override;
  std::optional<tasker::SingletonLock> get_lock(const std::string& key,
                                                const aws::CallContext& context) override;
  void set_lock_statement(const std::string& key, const std::string& holder,
                          const std::string& statement_id,
                          const aws::CallContext& context) override;
  void release_lock(const std::string& key, const std::string& holder,
                    const aws::CallContext& context) override;
  bool keep_until(const tasker::StatementKey& key, std::int64_t expires_at_s,
                  const aws::CallContext& context) override;
  bool note_reconciled(const tasker::StatementKey& key, std::int64_t at_ms,
                       const std::string& result, const aws::CallContext& context) override;

  // Stores `record` as it is, replacing any with its key (a test setting up an old record).
  void replace(const tasker::StatementRecord& record);
  std::vector<tasker::StatementRecord> records() const;
  std::vector<tasker::SingletonLock> locks() const;
  std::vector<tasker::FailedUpdate> failed_updates() const;
  // Number of calls that write (insert, updates, claims, locks).
  std::size_t write_count() const;
  // Called at the start of every operation with its name; may throw to inject a failure.
  std::function<void(std::string_view operation)> before_operation;

 private:
  void enter(std::string_view operation, bool writes);
  mutable std::mutex mutex_;
  std::map<std::pair<std::string, std::string>, tasker::StatementRecord> records_;
  std::map<std::string, tasker::SingletonLock> locks_;
  std::map<std::string, tasker::FailedUpdate> failed_updates_;  // by physical id
  std::map<std::string, tasker::IdempotencyMarker> markers_;    // by IdempotencyMarker::id()
  std::atomic<std::size_t> writes_{0};
};

class FakeStepFunctions : public services::StepFunctions {
 public:
  struct Callback {
    std::string kind;  // "success" | "failure" | "heartbeat"
    std::string task_token;
    std::string output;  // success
    std::string error;   // failure
    std::string cause;   // failure
    // The deadline of the call's context (milliseconds since the epoch).
    std::int64_t deadline_epoch_ms = 0;
  };
  void send_task_success(const std::string& task_token, const std::string& output,
                         const aws::CallContext& context) override;
  void send_task_failure(const std::string& task_token, const std::string& error,
                         const std::string& cause, const aws::CallContext& context) override;
  void send_task_heartbeat(const std::string& task_token, const aws::CallContext& context) override;

  // Calls for this token throw `error` (e.g. TaskTimedOut, or a retryable 503).
  void fail_token(const std::string& task_token, Error error);
  void clear_failure(const std::string& task_token);
  // Successes and failures accepted (heartbeats are not callbacks and are not listed).
  std::vector<Callback> callbacks() const;
  // SendTaskSuccess / SendTaskFailure requests received for `task_token`, accepted or refused
  // (a closed task's TaskTimedOut, an injected failure): what exactly-once tests must count, as
  // Step Functions refusing a second callback would hide a second send.
  std::size_t callback_requests(const std::string& task_token) const;
  // The same for every token that received at least one.
  std::map<std::string, std::size_t> callback_requests() const;
  std::size_t heartbeat_count() const;

 private:
  // As Step Functions does: a token whose task has closed answers TaskTimedOut.
  void record(Callback callback);
  mutable std::mutex mutex_;
  std::vector<Callback> callbacks_;
  std::map<std::string, std::size_t> requests_;
  std::map<std::string, Error> failures_;
  std::set<std::string> closed_;
  std::size_t heartbeats_ = 0;
};

class FakeCfnResponder : public services::CfnResponder {
 public:
  struct Response {
    std::string url;
    Json body;
    std::string text;  // the body as sent, byte for byte
  };
  void send(const std::string& response_url, const std::string& body,
            const aws::CallContext& context) override;
  // The next `count` sends throw a retryable error.
  void fail_next(int count);
  std::vector<Response> responses() const;

 private:
  mutable std::mutex mutex_;
  std::vector<Response> responses_;
  int failures_left_ = 0;
};

}  // namespace rstasker::testing
