// GetStatementResult pages larger than a Lambda response: cut, resumed by our own token, and
// every record delivered once, in order.
#include "tasker/result_pages.hpp"

#include <gtest/gtest.h>

#include "rstasker/common/error.hpp"
#include "rstasker/common/text.hpp"
#include "support/fakes.hpp"

namespace rstasker::tasker {
namespace {

// Two Data API pages of records of about 1 KB: ten, then five.
class BigPages : public rstasker::testing::FakeRedshiftData {
 public:
  Json get_statement_result(const std::string& id, const std::string& next_token,
                            const aws::CallContext&) override {
    tokens.push_back(next_token);
    if (id != "big") throw Error("ResourceNotFoundException", "no such statement", 400);
    Json page = {{"TotalNumRows", 15}, {"ColumnMetadata", {{{"name", "v"}}}}};
    const int first = next_token.empty() ? 0 : 10;
    const int count = next_token.empty() ? 10 : 5;
    for (int i = first; i < first + count; ++i) page["Records"].push_back(record(i));
    if (next_token.empty()) page["NextToken"] = "data-api-page-2";
    return page;
  }

  static Json record(int i) {
    return Json::array({{{"stringValue", std::to_string(i) + std::string(1000, 'r')}}});
  }

  std::vector<std::string> tokens;
};

aws::CallContext page_call_context() {
  return {Deadline::after(std::chrono::seconds(30)), {}};
}

std::string error_name(BigPages& redshift, const std::string& token) {
  try {
    result_page(redshift, "big", token, 3500, page_call_context());
  } catch (const Error& e) {
    return e.name();
  }
  return "none";
}

TEST(ResultPages, APageThatFitsComesBackAsTheDataApiGaveIt) {
  BigPages redshift;
  Json page = result_page(redshift, "big", "", 1'000'000, page_call_context());
  EXPECT_EQ(page["Records"].size(), 10u);
  EXPECT_EQ(page["NextToken"], "data-api-page-2");
}

TEST(ResultPages, ALargePageIsSplitAndEveryRecordComesOnceInOrder) {
  BigPages redshift;
  constexpr std::size_t kLimit = 3500;
  std::vector<Json> records;
  std::string token;
  int pages = 0;
  do {
    Json page = result_page(redshift, "big", token, kLimit, page_call_context());
    EXPECT_LE(dump_json(page).size(), kLimit);
    EXPECT_EQ(page["TotalNumRows"], 15);
    for (const Json& r : page["Records"]) records.push_back(r);
    token = page.value("NextToken", "");
    ASSERT_LT(++pages, 20) << "paging does not end";
  } while (!token.empty());
  ASSERT_EQ(records.size(), 15u);
  for (int i = 0; i < 15; ++i) EXPECT_EQ(records[static_cast<std::size_t>(i)], BigPages::record(i));
  EXPECT_GT(pages, 2);
  // The Data API's own token was used for its second page.
  EXPECT_NE(std::find(redshift.tokens.begin(), redshift.tokens.end(), "data-api-page-2"),
            redshift.tokens.end());
}

TEST(ResultPages, ForeignOrBrokenTokensOfOursAreRefusedByName) {
  BigPages redshift;
  const std::string prefix(kSplitPageTokenPrefix);
  EXPECT_EQ(error_name(redshift, prefix + "!!!"), "InvalidRequest");
  EXPECT_EQ(error_name(redshift, prefix + base64_encode("[1]")), "InvalidRequest");
  EXPECT_EQ(error_name(redshift, prefix + base64_encode(R"({"t":"","s":-1})")), "InvalidRequest");
  EXPECT_EQ(error_name(redshift, prefix + base64_encode(R"({"t":"","s":11})")), "InvalidRequest");
  std::string deep = std::string(100000, '[') + std::string(100000, ']');
  EXPECT_EQ(error_name(redshift, prefix + base64_encode(deep)), "InvalidRequest");
}

TEST(ResultPages, ARecordLargerThanTheLimitIsResponseTooLarge) {
  BigPages redshift;
  try {
    result_page(redshift, "big", "", 900, page_call_context());
    ADD_FAILURE() << "no error";
  } catch (const Error& e) {
    EXPECT_EQ(e.name(), "ResponseTooLarge");
  }
}

}  // namespace
}  // namespace rstasker::tasker
