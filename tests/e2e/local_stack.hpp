// The whole local stack for an end-to-end test binary, driven the way a user drives it:
// `scripts/local-stack up` and `deploy` (PostgreSQL, moto, tasker-local, cfn/tasker.yaml), further
// templates with `deploy-stack`, and clients that talk to the edge port like any AWS client.
#pragma once

#include <chrono>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "rstasker/aws/credentials.hpp"
#include "rstasker/aws/http.hpp"
#include "rstasker/aws/json_client.hpp"
#include "rstasker/common/json.hpp"

namespace rstasker::testing {

class LocalStack {
 public:
  // Why the stack cannot run here (no moto, PostgreSQL, zip or curl), or nullopt.
  static std::optional<std::string> unavailable_reason();

  // `scripts/local-stack up` + `deploy` with the state directory `dir` (cleared first), the build
  // directory's tasker-local and redshift-tasker as they are (RSTASKER_LOCAL_STACK_PREBUILT), the
  // build's redshift-tasker as every function's bootstrap (so a sanitizer build runs a sanitizer
  // function), and this process as the stack's owner: should the test binary die before down(),
  // the script's watchdog takes the stack down. Throws std::runtime_error with the script's output
  // when a step fails (after taking down whatever started).
  explicit LocalStack(std::filesystem::path dir);
  // down()
  ~LocalStack();
  LocalStack(const LocalStack&) = delete;
  LocalStack& operator=(const LocalStack&) = delete;

  // `scripts/local-stack down`: every process the stack started is gone when it returns. Returns
  // the script's exit status. Idempotent.
  int down();

  // `scripts/local-stack deploy-stack name template Key=Value...`; the stack's outputs by their
  // SNAKE_CASE names (e.g. SINGLE_SUCCESS_ARN). Throws std::runtime_error when it fails.
  std::map<std::string, std::string> deploy_stack(
      const std::string& name, const std::filesystem::path& template_file,
      const std::map<std::string, std::string>& parameters);

  // A value of the environment file (.local-stack/env: AWS_*, TASKER_*, PG*); throws
  // std::runtime_error when absent.
  const std::string& env(const std::string& name) const;
  const std::filesystem::path& dir() const { return dir_; }
  const aws::Credentials& credentials() const { return credentials_; }

  // Clients for the edge, signed with the stack's key.
  const aws::JsonClient& step_functions() const { return *step_functions_; }
  const aws::JsonClient& sqs() const { return *sqs_; }
  const aws::JsonClient& data_api() const { return *data_api_; }

  // Lambda's Invoke API at the edge: POST /2015-03-31/functions/<function>/invocations with
  // X-Amz-Invocation-Type `type`. Returns the HTTP response as it came.
  aws::HttpResponse invoke(const std::string& function, const std::string& payload,
                           const std::string& type = "RequestResponse") const;
  // The deployed tasker function invoked synchronously with `event`; its response, parsed.
  // Throws std::runtime_error when the invocation fails or the function reports an error.
  Json invoke_tasker(const Json& event) const;

  // Everything the tasker function's instances have written so far (one file per instance).
  std::string function_logs() const;

  // Runs scripts/local-stack with `args` on this stack (its state directory and settings, as the
  // constructor does); its exit status, its output in `output`.
  int run_script(const std::vector<std::string>& args, std::string& output,
                 std::chrono::seconds timeout = std::chrono::seconds(120)) const;

  // The processes the state directory records, by name: "watchdog", "moto", "tasker-local" (their
  // pid files) and "postgres" (the postmaster, from PostgreSQL's postmaster.pid).
  std::map<std::string, int> recorded_pids() const;

 private:
  void read_env_file();

  std::filesystem::path dir_;
  std::map<std::string, std::string> env_;
  aws::Credentials credentials_;
  std::shared_ptr<aws::HttpTransport> transport_;
  std::unique_ptr<aws::JsonClient> step_functions_;
  std::unique_ptr<aws::JsonClient> sqs_;
  std::unique_ptr<aws::JsonClient> data_api_;
  bool up_ = false;
  mutable int script_runs_ = 0;
};

// Step Functions executions, observed through the API (moto offers nothing to wait on).
struct Execution {
  std::string arn;
  std::string status;  // RUNNING, SUCCEEDED, FAILED, TIMED_OUT, ABORTED
  Json output;         // parsed; null when absent
  Json described;      // the whole DescribeExecution answer
  // The states entered, in order (from GetExecutionHistory's *StateEntered events).
  std::vector<std::string> path;
  // Every GetExecutionHistory event, oldest first.
  Json history = Json::array();
};

// StartExecution of `machine_arn` named `name` with `input`; the execution's ARN.
std::string start_execution(const aws::JsonClient& sfn, const std::string& machine_arn,
                            const std::string& name, const Json& input = Json::object());

// Polls DescribeExecution (every 100 ms) until the execution leaves RUNNING or `timeout`
// passes, then reads its history. The result's status is RUNNING after a timeout.
Execution await_execution(const aws::JsonClient& sfn, const std::string& execution_arn,
                          std::chrono::seconds timeout);

// Runs `sql` through the Data API at the edge and waits for it (bounded). Returns
// GetStatementResult's answer for a statement with a result set, else {} ; throws
// std::runtime_error when the statement fails.
Json run_sql(const LocalStack& stack, const std::string& sql);
// The first column of the first row of `sql`'s result as text ("" for NULL or no rows).
std::string sql_value(const LocalStack& stack, const std::string& sql);

// Polls `check` every `interval` until it returns true or `timeout` passes; whether it did.
bool eventually(const std::function<bool()>& check, std::chrono::milliseconds timeout,
                std::chrono::milliseconds interval = std::chrono::milliseconds(100));

}  // namespace rstasker::testing
