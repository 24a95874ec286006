// DynamoDB item operations and attribute-value helpers.
#include "rstasker/services/dynamodb.hpp"

#include <charconv>

namespace rstasker::services {

DynamoDb::DynamoDb(std::shared_ptr<const aws::JsonClient> client) : client_(std::move(client)) {}

Json DynamoDb::put_item(const Json& request, const aws::CallContext& context) const {
  return client_->call("PutItem", request, context);
}
Json DynamoDb::get_item(const Json& request, const aws::CallContext& context) const {
  return client_->call("GetItem", request, context);
}
Json DynamoDb::update_item(const Json& request, const aws::CallContext& context) const {
  return client_->call("UpdateItem", request, context);
}
Json DynamoDb::delete_item(const Json& request, const aws::CallContext& context) const {
  return client_->call("DeleteItem", request, context);
}
Json DynamoDb::query(const Json& request, const aws::CallContext& context) const {
  return client_->call("Query", request, context);
}
Json DynamoDb::create_table(const Json& request, const aws::CallContext& context) const {
  return client_->call("CreateTable", request, context);
}
Json DynamoDb::describe_table(const std::string& table, const aws::CallContext& context) const {
  return client_->call("DescribeTable", {{"TableName", table}}, context);
}
Json DynamoDb::update_time_to_live(const Json& request, const aws::CallContext& context) const {
  return client_->call("UpdateTimeToLive", request, context);
}

bool is_condition_failure(const std::exception& error) {
  const auto* e = dynamic_cast<const Error*>(&error);
  return e != nullptr && e->name() == kConditionalCheckFailed;
}

Json attr_s(std::string_view value) {
  return {{"S", value}};
}
Json attr_n(std::int64_t value) {
  return {{"N", std::to_string(value)}};
}
Json attr_bool(bool value) {
  return {{"BOOL", value}};
}

std::optional<std::string> item_s(const Json& item, std::string_view name) {
  auto it = item.find(name);
  if (it == item.end() || !it->is_object()) return std::nullopt;
  auto s = it->find("S");
  if (s == it->end() || !s->is_string()) return std::nullopt;
  return s->get<std::string>();
}

std::optional<std::int64_t> item_n(const Json& item, std::string_view name) {
  auto it = item.find(name);
  if (it == item.end() || !it->is_object()) return std::nullopt;
  auto n = it->find("N");
  if (n == it->end() || !n->is_string()) return std::nullopt;
  const auto& text = n->get_ref<const std::string&>();
  std::int64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size()) return std::nullopt;
  return value;
}

std::optional<bool> item_bool(const Json& item, std::string_view name) {
  auto it = item.find(name);
  if (it == item.end() || !it->is_object()) return std::nullopt;
  auto b = it->find("BOOL");
  if (b == it->end() || !b->is_boolean()) return std::nullopt;
  return b->get<bool>();
}

}  // namespace rstasker::services
