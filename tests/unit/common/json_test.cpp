// Bounded JSON parsing and the text helpers (case folding, UTF-8, base64, UUIDs).
#include "rstasker/common/json.hpp"

#include <gtest/gtest.h>

#include "rstasker/common/error.hpp"
#include "rstasker/common/text.hpp"

namespace rstasker {
namespace {

Error parse_error(std::string_view text) {
  try {
    parse_json(text, "the event", error_names::kInvalidRequest);
  } catch (const Error& e) {
    return e;
  }
  ADD_FAILURE() << "no error for " << text;
  return Error("none", "");
}

TEST(ParseJson, AcceptsDocumentsWithinTheLimits) {
  Json value = parse_json(R"({"a":[1,2,{"b":"ü"}]})", "x", error_names::kInvalidRequest);
  EXPECT_EQ(value["a"][2]["b"], "ü");
  std::string nested(kMaxJsonDepth - 1, '[');
  nested += std::string(kMaxJsonDepth - 1, ']');
  EXPECT_NO_THROW(parse_json(nested, "x", error_names::kInvalidRequest));
}

TEST(ParseJson, RejectsTruncatedDocumentsByName) {
  Error e = parse_error("[1,2");
  EXPECT_EQ(e.name(), "InvalidRequest");
  EXPECT_NE(e.message().find("the event is not valid JSON"), std::string::npos) << e.message();
}

TEST(ParseJson, RejectsAbsurdNestingWithoutRecursing) {
  std::string deep(200000, '[');
  Error e = parse_error(deep);
  EXPECT_EQ(e.name(), "InvalidRequest");
  EXPECT_NE(e.message().find("nested deeper than"), std::string::npos) << e.message();
  std::string objects;
  for (int i = 0; i < 100; ++i) objects += R"({"a":)";
  EXPECT_NE(parse_error(objects).message().find("nested deeper"), std::string::npos);
}

// 500,000 empty objects (1.5 MB): nlohmann's depth callback rescanned the parent array at every
// closing bracket, so this ran past the test's timeout (160,000 took 21 s in a release build); a
// linear parse takes seconds even under the sanitizers. bench/parse_bench measures the speed.
TEST(ParseJson, AcceptsAWideDocumentOfManyEmptyObjects) {
  constexpr std::size_t kObjects = 500'000;
  std::string wide = "[";
  wide.reserve(kObjects * 3 + 2);
  for (std::size_t i = 0; i < kObjects; ++i) wide += i == 0 ? "{}" : ",{}";
  wide += "]";
  Json value = parse_json(wide, "the event", error_names::kInvalidRequest);
  ASSERT_TRUE(value.is_array());
  EXPECT_EQ(value.size(), kObjects);
  EXPECT_TRUE(value.back().is_object());
}

TEST(TryParseJson, IsTheDocumentOrNothing) {
  EXPECT_EQ(try_parse_json(R"({"a":[1]})"), (Json{{"a", {1}}}));
  EXPECT_EQ(try_parse_json("{\"a\":"), std::nullopt);
  EXPECT_EQ(try_parse_json(""), std::nullopt);
  std::string deep(100000, '[');
  deep += std::string(100000, ']');
  EXPECT_EQ(try_parse_json(deep), std::nullopt);
  std::string limit(kMaxJsonDepth, '[');
  limit += std::string(kMaxJsonDepth, ']');
  EXPECT_TRUE(try_parse_json(limit).has_value());
  EXPECT_EQ(try_parse_json("[" + limit + "]"), std::nullopt);
}

TEST(ParseJson, RejectsInvalidUtf8) {
  Error e = parse_error("{\"sqlStatement\":\"select '\xff\xfe'\"}");
  EXPECT_EQ(e.name(), "InvalidRequest");
  EXPECT_NE(e.message().find("UTF-8"), std::string::npos) << e.message();
}

TEST(ParseJson, RejectsEmptyInput) {
  EXPECT_EQ(parse_error("").name(), "InvalidRequest");
}

// The runtime logs an invalid event's error before any task token in it is known as a secret, so
// the message must say where and what is wrong without quoting the input.
TEST(ParseJson, ErrorsSayWhereAndWhatWithoutQuotingTheInput) {
  const std::string token = "AAAAKgAAAAIAAAAAAAAAAQSECRETxTOKENzzz";
  struct Case {
    std::string text;
    std::string_view says;
  };
  const Case cases[] = {
      {R"({"taskToken": ")" + token, "missing closing quote"},          // unterminated string
      {R"({"taskToken": ")" + token + R"(\q"})", "invalid string"},     // bad escape
      {R"({"taskToken": ")" + token + "\x01\"}", "control character"},  // unescaped control
      {R"({"taskToken": ")" + token + "\xff\"}", "UTF-8"},              // invalid UTF-8
      {R"({"taskToken": )" + token + "}", "invalid literal"},           // unquoted
      {R"({"taskToken": ")" + token + R"(" "x": 1})", "expected '}'"},  // missing comma
      {R"({"taskToken": -)" + token + "}", "invalid number"},
      // Input that mimics nlohmann's own message must not smuggle text through it.
      {R"({"taskToken": ")" + token + "'; expected " + token, "missing closing quote"},
  };
  for (const auto& c : cases) {
    Error e = parse_error(c.text);
    EXPECT_EQ(e.name(), "InvalidRequest");
    EXPECT_EQ(e.message().find("SECRET"), std::string::npos) << e.message();
    EXPECT_EQ(e.message().find("last read"), std::string::npos) << e.message();
    EXPECT_NE(e.message().find("the event is not valid JSON at byte "), std::string::npos)
        << e.message();
    EXPECT_NE(e.message().find(c.says), std::string::npos) << e.message();
  }
}

TEST(ParseJson, ErrorsGiveTheBytePositionAndLine) {
  Error e = parse_error("{\n  \"a\": tru }");
  EXPECT_NE(e.message().find("at byte 13 (line 2, column "), std::string::npos) << e.message();
}

TEST(DumpJson, ReplacesInvalidUtf8InsteadOfThrowing) {
  Json value = std::string("bad \xff byte");
  EXPECT_EQ(dump_json(value), "\"bad \xEF\xBF\xBD byte\"");
}

TEST(Truncate, KeepsShortTextAndCutsOnCodePointBoundaries) {
  EXPECT_EQ(truncate_utf8_chars("abc", 3), "abc");
  EXPECT_EQ(truncate_utf8_chars("abcdef", 5), "ab...");
  // Four two-byte characters; a byte limit of 6 must not split the third.
  std::string umlauts = "äöüß";
  std::string cut = truncate_utf8_bytes(umlauts, 6, "");
  EXPECT_EQ(cut, "äöü");
  std::string cut_marker = truncate_utf8_bytes(umlauts, 7, "..");
  EXPECT_EQ(cut_marker, "äö..");
  EXPECT_TRUE(is_valid_utf8(cut_marker));
  EXPECT_EQ(truncate_utf8_chars(umlauts, 3, "…"), "äö…");
}

TEST(Excerpt, QuotesShortValuesWholeAndCutsLongOnesVisibly) {
  EXPECT_EQ(excerpt("executeStatement"), "executeStatement");
  std::string at_limit(kMaxExcerptChars, 'a');
  EXPECT_EQ(excerpt(at_limit), at_limit);
  std::string huge = std::string(300000, 'x');
  std::string cut = excerpt(huge);
  EXPECT_EQ(cut, std::string(kMaxExcerptChars, 'x') + " ... [cut, 300000 characters in all]");
  // Code points, not bytes: a multi-byte sequence is never split.
  std::string umlauts;
  for (int i = 0; i < 300; ++i) umlauts += "ü";
  std::string cut_umlauts = excerpt(umlauts);
  EXPECT_TRUE(is_valid_utf8(cut_umlauts));
  EXPECT_TRUE(cut_umlauts.starts_with(umlauts.substr(0, 2 * kMaxExcerptChars) + " ... [cut, 300"));
}

TEST(Utf8, ValidatesSequences) {
  EXPECT_TRUE(is_valid_utf8("plain ascii"));
  EXPECT_TRUE(is_valid_utf8("ሴ 😀"));
  EXPECT_FALSE(is_valid_utf8("\xC0\xAF"));      // overlong '/'
  EXPECT_FALSE(is_valid_utf8("\xED\xA0\x80"));  // surrogate
  EXPECT_FALSE(is_valid_utf8("\xE1\x88"));      // truncated
  EXPECT_FALSE(is_valid_utf8("\xFF"));
}

TEST(StringMember, IsTheStringOrEmpty) {
  const Json event = Json::parse(R"({"source": "aws.redshift-data", "rows": 3, "none": null})");
  EXPECT_EQ(string_member(event, "source"), "aws.redshift-data");
  EXPECT_EQ(string_member(event, "rows"), "") << "a number is not a string";
  EXPECT_EQ(string_member(event, "none"), "");
  EXPECT_EQ(string_member(event, "absent"), "");
  EXPECT_EQ(string_member(Json::array({"source"}), "source"), "") << "not an object";
}

TEST(Ascii, FoldsCaseOfAsciiLettersOnly) {
  EXPECT_TRUE(iequals("Content-Type", "content-type"));
  EXPECT_TRUE(iequals("", ""));
  EXPECT_FALSE(iequals("Content-Type", "content-typ"));
  EXPECT_FALSE(iequals("Ä", "ä")) << "bytes beyond ASCII compare exactly";
  EXPECT_EQ(ascii_lower("ExecuteStatement Ä-1"), "executestatement Ä-1");
}

TEST(Text, BlankAndLength) {
  EXPECT_TRUE(is_blank(""));
  EXPECT_TRUE(is_blank(" \t\r\n\f\v"));
  EXPECT_FALSE(is_blank("  ;  "));
  EXPECT_EQ(utf8_length(""), 0u);
  EXPECT_EQ(utf8_length("select 1"), 8u);
  EXPECT_EQ(utf8_length("äö😀"), 3u);
}

TEST(Base64, RoundTripsEveryPaddingLength) {
  EXPECT_EQ(base64_encode(""), "");
  EXPECT_EQ(base64_encode("f"), "Zg==");
  EXPECT_EQ(base64_encode("fo"), "Zm8=");
  EXPECT_EQ(base64_encode("foo"), "Zm9v");
  EXPECT_EQ(base64_encode("foobar"), "Zm9vYmFy");
  std::string bytes;
  for (int i = 0; i < 256; ++i) bytes.push_back(static_cast<char>(i));
  for (std::size_t n = 0; n <= bytes.size(); n += 37) {
    const std::string part = bytes.substr(0, n);
    EXPECT_EQ(base64_decode(base64_encode(part)), part) << n << " bytes";
  }
}

TEST(Base64, RefusesWhatIsNotPaddedBase64) {
  EXPECT_EQ(base64_decode("Zm9"), std::nullopt) << "length not a multiple of 4";
  EXPECT_EQ(base64_decode("Zm9*"), std::nullopt) << "not in the alphabet";
  EXPECT_EQ(base64_decode("Z=9v"), std::nullopt) << "padding in the middle";
  EXPECT_EQ(base64_decode("Zg=A"), std::nullopt) << "data after padding";
  EXPECT_EQ(base64_decode("Zm 9"), std::nullopt) << "whitespace is not base64";
  EXPECT_EQ(base64_decode("Zg=="), "f");
}

TEST(Uuid, IsVersion4AndUnique) {
  std::string a = random_uuid();
  std::string b = random_uuid();
  ASSERT_EQ(a.size(), 36u);
  EXPECT_EQ(a[14], '4');
  EXPECT_NE(std::string("89ab").find(a[19]), std::string::npos);
  EXPECT_NE(a, b);
}

}  // namespace
}  // namespace rstasker
