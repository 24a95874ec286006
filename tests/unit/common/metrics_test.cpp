// The EMF recorder: what it aggregates, the documents it writes, and that they meet CloudWatch's
// Embedded Metric Format specification and its limits.
#include "rstasker/common/metrics.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <string>

#include "support/emf.hpp"

namespace rstasker::metrics {
namespace {

using rstasker::testing::emf_problem;
using rstasker::testing::emf_totals;
using rstasker::testing::emf_values;

class Metrics : public ::testing::Test {
 protected:
  void SetUp() override { init({true, "TestSpace", "fn-1", nullptr}); }
  void TearDown() override { init({}); }
};

TEST_F(Metrics, NothingIsRecordedWhileDisabled) {
  init({});
  count("A");
  EXPECT_TRUE(take_documents(1).empty());
}

TEST_F(Metrics, CountsAddUpAndDurationsStaySeparate) {
  count("Started");
  count("Started");
  count("Started", {}, 3);
  put("Latency", Unit::kMilliseconds, 5);
  put("Latency", Unit::kMilliseconds, 7);
  auto docs = take_documents(1700000000123);
  ASSERT_EQ(docs.size(), 1u);
  const Json& doc = docs[0];
  EXPECT_EQ(emf_problem(doc), "") << doc.dump();
  EXPECT_EQ(doc["_aws"]["Timestamp"], 1700000000123);
  const Json& directive = doc["_aws"]["CloudWatchMetrics"][0];
  EXPECT_EQ(directive["Namespace"], "TestSpace");
  EXPECT_EQ(directive["Dimensions"], Json::parse(R"([["FunctionName"]])"));
  EXPECT_EQ(doc["FunctionName"], "fn-1");
  EXPECT_EQ(doc["level"], "INFO") << "Lambda's log-level filter must let it through";
  EXPECT_EQ(doc["Started"], 5.0);
  EXPECT_EQ(doc["Latency"], Json::parse("[5.0, 7.0]"));
  EXPECT_EQ(directive["Metrics"], Json::parse(R"([{"Name":"Latency","Unit":"Milliseconds"},
                            {"Name":"Started","Unit":"Count"}])"));
  EXPECT_TRUE(take_documents(2).empty()) << "taken values are forgotten";
}

TEST_F(Metrics, EachCombinationOfDimensionValuesIsADocumentRolledUpToTheFunction) {
  count("Sent", {{"Waiter", "StepFunctions"}, {"Outcome", "FINISHED"}});
  count("Sent", {{"Waiter", "StepFunctions"}, {"Outcome", "FAILED"}});
  count("Sent", {{"Waiter", "StepFunctions"}, {"Outcome", "FINISHED"}});
  count("Cold");
  auto docs = take_documents(1);
  ASSERT_EQ(docs.size(), 3u);
  for (const Json& doc : docs) {
    EXPECT_EQ(emf_problem(doc), "") << doc.dump();
    const Json& sets = doc["_aws"]["CloudWatchMetrics"][0]["Dimensions"];
    if (doc.contains("Waiter")) {
      EXPECT_EQ(sets, Json::parse(R"([["FunctionName","Waiter","Outcome"],["FunctionName"]])"));
    }
  }
  auto totals = emf_totals(docs);
  EXPECT_EQ(totals["Sent|Waiter=StepFunctions|Outcome=FINISHED"], 2);
  EXPECT_EQ(totals["Sent|Waiter=StepFunctions|Outcome=FAILED"], 1);
  EXPECT_EQ(totals["Cold"], 1);
}

TEST_F(Metrics, DocumentsStayWithinTheSpecificationsLimits) {
  for (int i = 0; i < 150; ++i) count("M" + std::to_string(i));
  for (int i = 0; i < 250; ++i) put("Latency", Unit::kMilliseconds, i);
  auto docs = take_documents(1);
  std::size_t definitions = 0;
  for (const Json& doc : docs) {
    EXPECT_EQ(emf_problem(doc), "");
    definitions += doc["_aws"]["CloudWatchMetrics"][0]["Metrics"].size();
  }
  // 151 metrics, Latency's 250 values in three documents: 151 + 2 definitions.
  EXPECT_EQ(definitions, 153u);
  auto latency = emf_values(docs, "Latency");
  ASSERT_EQ(latency.size(), 250u);
  EXPECT_EQ(latency.front(), 0);
  EXPECT_EQ(latency.back(), 249);
  EXPECT_EQ(emf_totals(docs)["M149"], 1);
}

TEST_F(Metrics, TooManyDimensionsAreRefusedRatherThanWrittenInvalid) {
  count("Wide",
        {{"D1", "a"},  {"D2", "a"},  {"D3", "a"},  {"D4", "a"},  {"D5", "a"},  {"D6", "a"},
         {"D7", "a"},  {"D8", "a"},  {"D9", "a"},  {"D10", "a"}, {"D11", "a"}, {"D12", "a"},
         {"D13", "a"}, {"D14", "a"}, {"D15", "a"}, {"D16", "a"}, {"D17", "a"}, {"D18", "a"},
         {"D19", "a"}, {"D20", "a"}, {"D21", "a"}, {"D22", "a"}, {"D23", "a"}, {"D24", "a"},
         {"D25", "a"}, {"D26", "a"}, {"D27", "a"}, {"D28", "a"}, {"D29", "a"}, {"D30", "a"}});
  EXPECT_TRUE(take_documents(1).empty());
}

TEST_F(Metrics, FlushWritesOneLinePerDocumentAndNothingWhenIdle) {
  std::FILE* out = std::tmpfile();
  ASSERT_NE(out, nullptr);
  init({true, "TestSpace", "", out});
  count("A");
  count("B", {{"Waiter", "None"}});
  flush();
  flush();
  std::rewind(out);
  std::string text;
  for (int c; (c = std::fgetc(out)) != EOF;) text.push_back(static_cast<char>(c));
  std::fclose(out);
  init({});
  std::vector<Json> docs;
  std::size_t from = 0;
  for (std::size_t nl; (nl = text.find('\n', from)) != std::string::npos; from = nl + 1) {
    docs.push_back(Json::parse(text.substr(from, nl - from)));
  }
  EXPECT_EQ(from, text.size()) << "every document ends its line";
  ASSERT_EQ(docs.size(), 2u);
  for (const Json& doc : docs) {
    EXPECT_EQ(emf_problem(doc), "");
    EXPECT_EQ(doc["FunctionName"], "redshift-tasker") << "the default when none is given";
  }
}

TEST(EmfChecker, FindsWhatBreaksTheSpecification) {
  Json good = Json::parse(R"({"_aws":{"Timestamp":1,"CloudWatchMetrics":[{"Namespace":"N",
      "Dimensions":[["F"]],"Metrics":[{"Name":"M","Unit":"Count"}]}]},"F":"f","M":1})");
  EXPECT_EQ(emf_problem(good), "");
  Json no_value = good;
  no_value.erase("M");
  EXPECT_NE(emf_problem(no_value), "");
  Json no_dimension = good;
  no_dimension.erase("F");
  EXPECT_NE(emf_problem(no_dimension), "");
  Json bad_unit = good;
  bad_unit["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"] = "ms";
  EXPECT_NE(emf_problem(bad_unit), "");
  Json no_timestamp = good;
  no_timestamp["_aws"].erase("Timestamp");
  EXPECT_NE(emf_problem(no_timestamp), "");
  Json string_value = good;
  string_value["M"] = "1";
  EXPECT_NE(emf_problem(string_value), "");
}

}  // namespace
}  // namespace rstasker::metrics
