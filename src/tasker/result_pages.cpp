// Splitting GetStatementResult pages that exceed the Lambda response limit.
#include "tasker/result_pages.hpp"

#include "rstasker/common/error.hpp"
#include "rstasker/common/text.hpp"
#include "rstasker/lambda/runtime.hpp"

namespace rstasker::tasker {

namespace {

struct Position {
  std::string data_api_token;  // the page's token at the Data API ("" for the first page)
  std::size_t skip = 0;        // records of that page already returned
};

std::string encode(const Position& position) {
  return std::string(kSplitPageTokenPrefix) +
         base64_encode(dump_json({{"t", position.data_api_token}, {"s", position.skip}}));
}

// The caller's token comes from outside: decoded with the same care as any input.
Position decode(const std::string& token) {
  if (!token.starts_with(kSplitPageTokenPrefix)) return {token, 0};
  auto bytes = base64_decode(std::string_view(token).substr(kSplitPageTokenPrefix.size()));
  std::optional<Json> json = bytes ? try_parse_json(*bytes) : std::nullopt;
  if (!json || !json->is_object() || !(*json)["t"].is_string() ||
      !(*json)["s"].is_number_unsigned()) {
    throw invalid_request("nextToken is not a page token this function gave out");
  }
  return {(*json)["t"].get<std::string>(), (*json)["s"].get<std::size_t>()};
}

}  // namespace

Json result_page(services::RedshiftData& redshift, const std::string& id,
                 const std::string& next_token, std::size_t max_bytes,
                 const aws::CallContext& context) {
  const Position at = decode(next_token);
  Json page = redshift.get_statement_result(id, at.data_api_token, context);
  auto records_member = page.is_object() ? page.find("Records") : page.end();
  if (records_member == page.end() || !records_member->is_array()) {
    if (at.skip != 0) throw invalid_request("nextToken points into a page without records");
    return page;
  }
  Json records = std::move(*records_member);
  page.erase("Records");
  if (at.skip > records.size()) throw invalid_request("nextToken points past the end of its page");
  Json data_api_next;
  if (auto next = page.find("NextToken"); next != page.end()) {
    data_api_next = std::move(*next);
    page.erase("NextToken");
  }

  // What the page takes besides its records, with the longest NextToken it may get.
  const std::size_t longest_token = std::max(encode({at.data_api_token, records.size()}).size() * 2,
                                             dump_json(data_api_next).size());
  const std::size_t fixed = dump_json(page).size() + std::string_view(R"(,"Records":[])").size() +
                            std::string_view(R"(,"NextToken":)").size() + longest_token;
  const std::size_t room = max_bytes > fixed ? max_bytes - fixed : 0;
  std::size_t used = 0;
  std::size_t end = at.skip;
  for (; end < records.size(); ++end) {
    const std::size_t size = dump_json(records[end]).size() + (end > at.skip ? 1 : 0);
    if (used + size > room) break;
    used += size;
  }
  if (end == at.skip && end < records.size()) {
    throw Error(lambda::kResponseTooLarge,
                "record " + std::to_string(end) + " of a GetStatementResult page of statement " +
                    excerpt(id) + " alone exceeds the response limit of " +
                    std::to_string(max_bytes) + " bytes");
  }
  Json kept = Json::array();
  for (std::size_t i = at.skip; i < end; ++i) kept.push_back(std::move(records[i]));
  page["Records"] = std::move(kept);
  if (end < records.size()) {
    page["NextToken"] = encode({at.data_api_token, end});
  } else if (!data_api_next.is_null()) {
    page["NextToken"] = std::move(data_api_next);
  }
  return page;
}

}  // namespace rstasker::tasker
