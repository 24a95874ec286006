// Typed client for the Redshift Data API: requests are typed, responses are the API's own JSON
// (callers return them to users as they are), with typed views where the domain needs them.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "rstasker/aws/json_client.hpp"
#include "rstasker/common/json.hpp"

namespace rstasker::services {

// Where SQL runs and as whom. Exactly one of cluster_identifier / workgroup_name is set; with a
// cluster, exactly one of db_user / secret_arn (a workgroup may use neither: IAM identity).
struct RedshiftTarget {
  std::string cluster_identifier;
  std::string workgroup_name;
  std::string database;
  std::string db_user;
  std::string secret_arn;

  bool operator==(const RedshiftTarget&) const = default;
};

struct SqlParameter {
  std::string name;
  std::string value;
};

struct ExecuteRequest {
  RedshiftTarget target;
  // One statement → ExecuteStatement; several, or `batch` → BatchExecuteStatement (one
  // transaction, sub-statement ids "<Id>:1", ...).
  std::vector<std::string> sqls;
  bool batch = false;  // BatchExecuteStatement even for one statement (the caller asked for it)
  std::vector<SqlParameter> parameters;  // ExecuteStatement only
  std::string statement_name;            // empty: none
  bool with_event = false;
  std::string client_token;  // empty: none
};

struct ListStatementsRequest {
  std::string statement_name;  // case-sensitive prefix; empty: any
  std::string status = "ALL";
  // Only statements that ran on this cluster or workgroup and database; empty: any.
  std::string cluster_identifier;
  std::string workgroup_name;
  std::string database;
  int max_results = 100;
  std::string next_token;
};

// Data API limits the service enforces; checked locally for clearer messages.
inline constexpr std::size_t kMaxSqlLength = 100000;
inline constexpr std::size_t kMaxStatementNameLength = 500;
inline constexpr std::size_t kMaxBatchStatements = 40;

class RedshiftData {
 public:
  virtual ~RedshiftData() = default;
  // ExecuteStatement, or BatchExecuteStatement when is_batch(request). Returns the API response
  // (`Id`, `CreatedAt`, the target echo, ...).
  virtual Json execute(const ExecuteRequest& request, const aws::CallContext& context) = 0;
  virtual Json describe_statement(const std::string& id, const aws::CallContext& context) = 0;
  virtual Json cancel_statement(const std::string& id, const aws::CallContext& context) = 0;
  // `next_token` empty: the first page.
  virtual Json get_statement_result(const std::string& id, const std::string& next_token,
                                    const aws::CallContext& context) = 0;
  virtual Json list_statements(const ListStatementsRequest& request,
                               const aws::CallContext& context) = 0;
};

std::unique_ptr<RedshiftData> make_redshift_data(std::shared_ptr<const aws::JsonClient> client);

// The id of the statement named exactly `name` (ListStatements matches a prefix), or nullopt when
// the Data API knows none. Members of the answer that are missing or null are read as absent.
std::optional<std::string> find_statement_by_name(RedshiftData& redshift, const std::string& name,
                                                  const aws::CallContext& context);

// Whether `request` is sent as BatchExecuteStatement: it asks for a batch, or holds several SQLs.
bool is_batch(const ExecuteRequest& request);

// The operation execute() calls for `request` and its body (exposed for tests and tasker-local):
// "BatchExecuteStatement" with `Sqls`, or "ExecuteStatement" with `Sql` and `Parameters`.
std::string_view execute_operation(const ExecuteRequest& request);
Json execute_request_body(const ExecuteRequest& request);

// Statement statuses of DescribeStatement / ListStatements and completion events.
enum class StatementStatus {
  kSubmitted,
  kPicked,
  kStarted,
  kFinished,
  kFailed,
  kAborted,
  kUnknown
};
StatementStatus parse_statement_status(std::string_view status);
std::string_view to_string(StatementStatus status);
bool is_terminal(StatementStatus status);

}  // namespace rstasker::services
