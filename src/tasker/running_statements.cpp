// Finding a running statement with the same SQL and parameters through ListStatements.
#include "tasker/running_statements.hpp"

#include <algorithm>
#include <utility>

#include "rstasker/common/json.hpp"

namespace rstasker::tasker {

namespace {

// The statuses of a statement that has not ended; ListStatements filters by one at a time.
constexpr const char* kRunningStatuses[] = {"SUBMITTED", "PICKED", "STARTED"};
// Bounds the pages read per status: running statements of one role are few (the Data API allows
// 500 active statements per account), so this is only a guard against an endless NextToken chain.
constexpr int kMaxPages = 10;

using NameValues = std::vector<std::pair<std::string, std::string>>;

// The QueryParameters of a ListStatements entry; entries of an unexpected shape read as absent.
NameValues parameters_of(const Json& entry) {
  NameValues out;
  auto it = entry.find("QueryParameters");
  if (it == entry.end() || !it->is_array()) return out;
  for (const auto& p : *it) out.emplace_back(string_member(p, "name"), string_member(p, "value"));
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> sqls_of(const Json& entry) {
  if (auto it = entry.find("QueryStrings"); it != entry.end() && it->is_array()) {
    std::vector<std::string> out;
    for (const auto& sql : *it) out.push_back(sql.is_string() ? sql.get<std::string>() : "");
    return out;
  }
  return {string_member(entry, "QueryString")};
}

}  // namespace

NameValues canonical_parameters(const std::vector<services::SqlParameter>& parameters) {
  NameValues out;
  for (const auto& p : parameters) out.emplace_back(p.name, p.value);
  std::sort(out.begin(), out.end());
  return out;
}

std::optional<std::string> find_running_twin(services::RedshiftData& redshift,
                                             const services::RedshiftTarget& target,
                                             const std::vector<std::string>& sqls,
                                             const std::vector<services::SqlParameter>& parameters,
                                             const std::string& own_name,
                                             const aws::CallContext& context) {
  const NameValues wanted = canonical_parameters(parameters);
  for (const char* status : kRunningStatuses) {
    services::ListStatementsRequest list;
    list.status = status;
    list.cluster_identifier = target.cluster_identifier;
    list.workgroup_name = target.workgroup_name;
    list.database = target.database;
    for (int page = 0; page < kMaxPages; ++page) {
      Json found = redshift.list_statements(list, context);
      if (auto statements = found.find("Statements");
          statements != found.end() && statements->is_array()) {
        for (const auto& entry : *statements) {
          if (sqls_of(entry) == sqls && parameters_of(entry) == wanted &&
              string_member(entry, "StatementName") != own_name) {
            return string_member(entry, "Id");
          }
        }
      }
      list.next_token = string_member(found, "NextToken");
      if (list.next_token.empty()) break;
    }
  }
  return std::nullopt;
}

}  // namespace rstasker::tasker
