// Redshift Data API over the JSON 1.1 protocol.
#include "rstasker/services/redshift_data.hpp"

#include <spdlog/spdlog.h>

#include "rstasker/common/error.hpp"

namespace rstasker::services {

namespace {

void add_target(Json& body, const RedshiftTarget& target) {
  if (!target.cluster_identifier.empty()) body["ClusterIdentifier"] = target.cluster_identifier;
  if (!target.workgroup_name.empty()) body["WorkgroupName"] = target.workgroup_name;
  if (!target.database.empty()) body["Database"] = target.database;
  if (!target.db_user.empty()) body["DbUser"] = target.db_user;
  if (!target.secret_arn.empty()) body["SecretArn"] = target.secret_arn;
}

class JsonRedshiftData final : public RedshiftData {
 public:
  explicit JsonRedshiftData(std::shared_ptr<const aws::JsonClient> client)
      : client_(std::move(client)) {}

  Json execute(const ExecuteRequest& request, const aws::CallContext& context) override {
    return client_->call(execute_operation(request), execute_request_body(request), context);
  }

  Json describe_statement(const std::string& id, const aws::CallContext& context) override {
    return client_->call("DescribeStatement", {{"Id", id}}, context);
  }

  // A cancel whose reply was lost is sent again, and the Data API then refuses it because the
  // statement is ABORTED already: by our own cancel, which counts as done.
  Json cancel_statement(const std::string& id, const aws::CallContext& context) override {
    aws::CallHistory history;
    try {
      return client_->call("CancelStatement", {{"Id", id}}, context, &history);
    } catch (const Error& e) {
      if (!history.maybe_applied || e.name() != "ValidationException") throw;
      Json described = describe_statement(id, context);
      if (described.value("Status", "") != "ABORTED") throw;
      spdlog::info(
          "CancelStatement {}: an attempt got no answer and its retry found the "
          "statement ABORTED; taken as cancelled",
          id);
      return {{"Status", true}};
    }
  }

  Json get_statement_result(const std::string& id, const std::string& next_token,
                            const aws::CallContext& context) override {
    Json body = {{"Id", id}};
    if (!next_token.empty()) body["NextToken"] = next_token;
    return client_->call("GetStatementResult", body, context);
  }

  Json list_statements(const ListStatementsRequest& request,
                       const aws::CallContext& context) override {
    Json body = {{"Status", request.status}, {"MaxResults", request.max_results}};
    if (!request.statement_name.empty()) body["StatementName"] = request.statement_name;
    if (!request.next_token.empty()) body["NextToken"] = request.next_token;
    if (!request.cluster_identifier.empty()) body["ClusterIdentifier"] = request.cluster_identifier;
    if (!request.workgroup_name.empty()) body["WorkgroupName"] = request.workgroup_name;
    if (!request.database.empty()) body["Database"] = request.database;
    return client_->call("ListStatements", body, context);
  }

 private:
  std::shared_ptr<const aws::JsonClient> client_;
};

}  // namespace

std::optional<std::string> find_statement_by_name(RedshiftData& redshift, const std::string& name,
                                                  const aws::CallContext& context) {
  ListStatementsRequest list;
  list.statement_name = name;
  Json found = redshift.list_statements(list, context);
  auto statements = found.find("Statements");
  if (statements == found.end() || !statements->is_array()) return std::nullopt;
  for (const auto& statement : *statements) {
    if (string_member(statement, "StatementName") == name) return string_member(statement, "Id");
  }
  return std::nullopt;
}

bool is_batch(const ExecuteRequest& request) {
  return request.batch || request.sqls.size() > 1;
}

std::string_view execute_operation(const ExecuteRequest& request) {
  return is_batch(request) ? "BatchExecuteStatement" : "ExecuteStatement";
}

Json execute_request_body(const ExecuteRequest& request) {
  Json body = Json::object();
  add_target(body, request.target);
  if (is_batch(request)) {
    body["Sqls"] = request.sqls;
  } else {
    body["Sql"] = request.sqls.empty() ? std::string() : request.sqls.front();
    if (!request.parameters.empty()) {
      Json parameters = Json::array();
      for (const auto& p : request.parameters) {
        parameters.push_back({{"name", p.name}, {"value", p.value}});
      }
      body["Parameters"] = std::move(parameters);
    }
  }
  if (!request.statement_name.empty()) body["StatementName"] = request.statement_name;
  if (request.with_event) body["WithEvent"] = true;
  if (!request.client_token.empty()) body["ClientToken"] = request.client_token;
  return body;
}

std::unique_ptr<RedshiftData> make_redshift_data(std::shared_ptr<const aws::JsonClient> client) {
  return std::make_unique<JsonRedshiftData>(std::move(client));
}

StatementStatus parse_statement_status(std::string_view status) {
  if (status == "SUBMITTED") return StatementStatus::kSubmitted;
  if (status == "PICKED") return StatementStatus::kPicked;
  if (status == "STARTED") return StatementStatus::kStarted;
  if (status == "FINISHED") return StatementStatus::kFinished;
  if (status == "FAILED") return StatementStatus::kFailed;
  if (status == "ABORTED") return StatementStatus::kAborted;
  return StatementStatus::kUnknown;
}

std::string_view to_string(StatementStatus status) {
  switch (status) {
    case StatementStatus::kSubmitted:
      return "SUBMITTED";
    case StatementStatus::kPicked:
      return "PICKED";
    case StatementStatus::kStarted:
      return "STARTED";
    case StatementStatus::kFinished:
      return "FINISHED";
    case StatementStatus::kFailed:
      return "FAILED";
    case StatementStatus::kAborted:
      return "ABORTED";
    case StatementStatus::kUnknown:
      break;
  }
  return "UNKNOWN";
}

bool is_terminal(StatementStatus status) {
  return status == StatementStatus::kFinished || status == StatementStatus::kFailed ||
         status == StatementStatus::kAborted;
}

}  // namespace rstasker::services
