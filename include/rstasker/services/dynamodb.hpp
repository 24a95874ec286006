// DynamoDB over JSON 1.0: the item operations the state table uses, and attribute-value helpers.
// Requests and responses are DynamoDB's own JSON; the state table builds the expressions.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "rstasker/aws/json_client.hpp"
#include "rstasker/common/json.hpp"

namespace rstasker::services {

// The error DynamoDB returns when a ConditionExpression is false.
inline constexpr std::string_view kConditionalCheckFailed = "ConditionalCheckFailedException";

class DynamoDb {
 public:
  explicit DynamoDb(std::shared_ptr<const aws::JsonClient> client);

  // Each takes the operation's request body (with TableName) and returns its response.
  Json put_item(const Json& request, const aws::CallContext& context) const;
  Json get_item(const Json& request, const aws::CallContext& context) const;
  Json update_item(const Json& request, const aws::CallContext& context) const;
  Json delete_item(const Json& request, const aws::CallContext& context) const;
  Json query(const Json& request, const aws::CallContext& context) const;
  // Table administration, for deployment-less set-ups and tests.
  Json create_table(const Json& request, const aws::CallContext& context) const;
  Json describe_table(const std::string& table, const aws::CallContext& context) const;
  Json update_time_to_live(const Json& request, const aws::CallContext& context) const;

 private:
  std::shared_ptr<const aws::JsonClient> client_;
};

// Whether `error` is a failed ConditionExpression.
bool is_condition_failure(const std::exception& error);

// Attribute values: {"S": "..."}, {"N": "..."}, {"BOOL": ...}.
Json attr_s(std::string_view value);
Json attr_n(std::int64_t value);
Json attr_bool(bool value);
// An item's attribute, when present with that type.
std::optional<std::string> item_s(const Json& item, std::string_view name);
std::optional<std::int64_t> item_n(const Json& item, std::string_view name);
std::optional<bool> item_bool(const Json& item, std::string_view name);

}  // namespace rstasker::services
