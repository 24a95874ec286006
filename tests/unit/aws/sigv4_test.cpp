// SigV4 signer: each canonicalization rule on its own, the hashing primitives, the signing-key
// cache and Signer's use from several threads. The AWS suite itself runs in sigv4_conformance.
#include "rstasker/aws/sigv4.hpp"

#include <gtest/gtest.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include <atomic>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "rstasker/common/error.hpp"

namespace rstasker::aws {
namespace {

using std::chrono::system_clock;
using namespace std::chrono_literals;

constexpr std::string_view kSecret = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
constexpr std::string_view kEmptySha256 =
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

// 2015-08-30T12:36:00Z, the suite's signing time.
system_clock::time_point suite_time() {
  using namespace std::chrono;
  return sys_days{2015y / August / 30} + 12h + 36min;
}

Credentials example_credentials(std::string token = "") {
  return {"AKIDEXAMPLE", std::string(kSecret), std::move(token)};
}

SigningParams suite_params() {
  SigningParams params;
  params.region = "us-east-1";
  params.service = "service";
  params.time = suite_time();
  return params;
}

HttpRequest get(std::string url, Headers headers = {}) {
  HttpRequest request;
  request.method = "GET";
  request.url = std::move(url);
  request.headers = std::move(headers);
  return request;
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> lines;
  std::size_t start = 0;
  while (true) {
    const std::size_t end = text.find('\n', start);
    lines.push_back(text.substr(start, end - start));
    if (end == std::string::npos) return lines;
    start = end + 1;
  }
}

// Line 2 of the canonical request: the canonical URI.
std::string canonical_uri(const std::string& url, bool normalize = true) {
  SigningParams params = suite_params();
  params.normalize_path = normalize;
  return lines_of(compute_signature(get(url), example_credentials(), params).canonical_request)[1];
}

// Line 3: the canonical query string.
std::string canonical_query(const std::string& url) {
  return lines_of(
      compute_signature(get(url), example_credentials(), suite_params()).canonical_request)[2];
}

// The canonical header lines, up to the blank line.
std::vector<std::string> canonical_headers(const HttpRequest& request,
                                           const Credentials& credentials = example_credentials(),
                                           const SigningParams& params = suite_params()) {
  const auto lines = lines_of(compute_signature(request, credentials, params).canonical_request);
  std::vector<std::string> headers;
  for (std::size_t i = 3; i < lines.size() && !lines[i].empty(); ++i) headers.push_back(lines[i]);
  return headers;
}

std::string signed_headers(const HttpRequest& request,
                           const Credentials& credentials = example_credentials(),
                           const SigningParams& params = suite_params()) {
  const auto lines = lines_of(compute_signature(request, credentials, params).canonical_request);
  return lines[lines.size() - 2];
}

// --- Primitives --------------------------------------------------------------------------------

TEST(Sha256Hex, MatchesKnownDigests) {
  EXPECT_EQ(sha256_hex(""), kEmptySha256);
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(sha256_hex(std::string(1000, 'a')),
            "41edece42d63e8d9bf515a9ba6932e1c20cbc9f5a5d134645adb5db1b9737ea3");
}

TEST(HexEncode, IsLowercaseTwoDigitsPerByte) {
  EXPECT_EQ(hex_encode(std::string("\x00\x0f\xa0\xff", 4)), "000fa0ff");
  EXPECT_EQ(hex_encode(""), "");
}

std::string openssl_hmac(std::string_view key, std::string_view data) {
  unsigned char out[EVP_MAX_MD_SIZE];
  unsigned int size = 0;
  HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
       reinterpret_cast<const unsigned char*>(data.data()), data.size(), out, &size);
  return std::string(reinterpret_cast<const char*>(out), size);
}

TEST(HmacSha256, MatchesRfc4231) {
  // Test cases 2 and 6 of RFC 4231 (a short key, and a key longer than the block).
  EXPECT_EQ(hex_encode(hmac_sha256("Jefe", "what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  EXPECT_EQ(hex_encode(hmac_sha256(std::string(131, '\xaa'),
                                   "Test Using Larger Than Block-Size Key - Hash Key First")),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54");
}

TEST(HmacSha256, AgreesWithOpenSslForEveryKeyLength) {
  const std::string data = "AWS4-HMAC-SHA256\n20150830T123600Z\nscope\nhash";
  for (std::size_t length = 0; length <= 130; ++length) {
    const std::string key(length, static_cast<char>('k' + length % 7));
    EXPECT_EQ(hmac_sha256(key, data), openssl_hmac(key, data)) << "key length " << length;
  }
}

TEST(DeriveSigningKey, IsTheHmacChain) {
  const std::string key = derive_signing_key(kSecret, "20150830", "us-east-1", "service");
  EXPECT_EQ(hex_encode(key), "938127b5336810ddb6a5d6af445fcac9e371f9ed418ed386b022aed82901be75");
  const std::string chained = openssl_hmac(
      openssl_hmac(
          openssl_hmac(openssl_hmac("AWS4" + std::string(kSecret), "20150830"), "us-east-1"),
          "service"),
      "aws4_request");
  EXPECT_EQ(key, chained);
}

// --- Canonical URI -----------------------------------------------------------------------------

TEST(CanonicalUri, EmptyPathIsSlash) {
  EXPECT_EQ(canonical_uri("https://example.amazonaws.com"), "/");
  EXPECT_EQ(canonical_uri("https://example.amazonaws.com?a=b"), "/");
  EXPECT_EQ(canonical_uri("https://example.amazonaws.com", false), "/");
}

TEST(CanonicalUri, NormalizingRemovesDotSegmentsAndRepeatedSlashes) {
  EXPECT_EQ(canonical_uri("https://h/a/./b/../c"), "/a/c");
  EXPECT_EQ(canonical_uri("https://h//a//b//"), "/a/b/");
  EXPECT_EQ(canonical_uri("https://h/a/.."), "/");
  EXPECT_EQ(canonical_uri("https://h/../../a"), "/a");
  EXPECT_EQ(canonical_uri("https://h/./"), "/");
  EXPECT_EQ(canonical_uri("https://h/a/b/"), "/a/b/");
  EXPECT_EQ(canonical_uri("https://h/a/..b/.c"), "/a/..b/.c");  // only whole "." / ".." segments
}

TEST(CanonicalUri, NormalizedPathIsEncodedOnceMore) {
  EXPECT_EQ(canonical_uri("https://h/a b/\xe1\x88\xb4"), "/a%20b/%E1%88%B4");
  // What is already an escape on the wire is encoded again (AWS's "double encoding").
  EXPECT_EQ(canonical_uri("https://h/a%20b/c%2Fd"), "/a%2520b/c%252Fd");
  EXPECT_EQ(canonical_uri("https://h/-._~AZaz09!*'()$"), "/-._~AZaz09%21%2A%27%28%29%24");
}

TEST(CanonicalUri, UnnormalizedPathIsKeptAsSent) {
  EXPECT_EQ(canonical_uri("https://h//a/./b/../", false), "//a/./b/../");
  EXPECT_EQ(canonical_uri("https://h/a b", false), "/a%20b");
  // S3 signs the path encoded once: escapes stay (hex uppercased), a stray '%' is encoded.
  EXPECT_EQ(canonical_uri("https://h/key%2fwith%20space/100%", false),
            "/key%2Fwith%20space/100%25");
}

TEST(CanonicalUri, FragmentIsNotSigned) {
  EXPECT_EQ(canonical_uri("https://h/a#frag"), "/a");
  EXPECT_EQ(canonical_query("https://h/a?x=1#frag"), "x=1");
}

// --- Canonical query ---------------------------------------------------------------------------

TEST(CanonicalQuery, SortsByEncodedNameThenValue) {
  EXPECT_EQ(canonical_query("https://h/?b=2&a=3&a=1&A=0"), "A=0&a=1&a=3&b=2");
  // "Param" sorts before "Param-3" (name first, then value), and an escape before a letter.
  EXPECT_EQ(canonical_query("https://h/?Param-3=Value3&Param=Value2&%E1%88%B4=Value1"),
            "%E1%88%B4=Value1&Param=Value2&Param-3=Value3");
}

TEST(CanonicalQuery, MissingValueIsEmpty) {
  EXPECT_EQ(canonical_query("https://h/?flag&a=1"), "a=1&flag=");
  EXPECT_EQ(canonical_query("https://h/?a="), "a=");
  EXPECT_EQ(canonical_query("https://h/?=v"), "=v");
  EXPECT_EQ(canonical_query("https://h/?"), "");
  EXPECT_EQ(canonical_query("https://h/?a=1&&b=2&"), "a=1&b=2");
}

TEST(CanonicalQuery, SplitsOnTheFirstEqualsSign) {
  EXPECT_EQ(canonical_query("https://h/?a=b=c"), "a=b%3Dc");
}

TEST(CanonicalQuery, DecodesThenEncodesOnce) {
  EXPECT_EQ(canonical_query("https://h/?%7E%61=%2f"), "~a=%2F");  // escapes of unreserved decoded
  EXPECT_EQ(canonical_query("https://h/?\xe1\x88\xb4=bar"), "%E1%88%B4=bar");  // raw UTF-8
  EXPECT_EQ(canonical_query("https://h/?a=x y"), "a=x%20y");
  EXPECT_EQ(canonical_query("https://h/?c+d"), "c%2Bd=");  // '+' is a plus, not a space
  EXPECT_EQ(canonical_query("https://h/?a=100%&b=%zz"), "a=100%25&b=%25zz");  // stray '%'
}

// --- Canonical headers -------------------------------------------------------------------------

TEST(CanonicalHeaders, LowercasedSortedAndTrimmed) {
  const auto request = get("https://example.amazonaws.com/",
                           {{"Zeta", "z"}, {"My-Header1", "  value1  "}, {"ALPHA", "\tA\t"}});
  EXPECT_EQ(canonical_headers(request),
            (std::vector<std::string>{"alpha:A", "host:example.amazonaws.com", "my-header1:value1",
                                      "x-amz-date:20150830T123600Z", "zeta:z"}));
  EXPECT_EQ(signed_headers(request), "alpha;host;my-header1;x-amz-date;zeta");
}

TEST(CanonicalHeaders, InnerWhitespaceRunsBecomeOneSpaceEvenInQuotes) {
  const auto request =
      get("https://h/", {{"My-Header2", "\"a   b \t c\""}, {"My-Header3", "value1\n  value2\n "}});
  const auto headers = canonical_headers(request);
  EXPECT_EQ(headers[1], "my-header2:\"a b c\"");
  EXPECT_EQ(headers[2], "my-header3:value1 value2");  // a folded (multi-line) value
}

TEST(CanonicalHeaders, LongValuesKeepEveryByte) {
  std::string token;
  for (int i = 0; i < 300; ++i) token += static_cast<char>('A' + i % 26);
  token += "  tail";
  const auto headers = canonical_headers(get("https://h/", {{"X-Long", "  " + token + "  "}}));
  EXPECT_EQ(headers[2], "x-long:" + token.substr(0, 300) + " tail");
}

TEST(CanonicalHeaders, RepeatedHeadersJoinInRequestOrder) {
  const auto request = get("https://h/", {{"My-Header1", "value4"},
                                          {"Other", "o"},
                                          {"my-header1", " value1 "},
                                          {"MY-HEADER1", "value3"}});
  const auto headers = canonical_headers(request);
  EXPECT_EQ(headers[1], "my-header1:value4,value1,value3");
  EXPECT_EQ(signed_headers(request), "host;my-header1;other;x-amz-date");
}

TEST(CanonicalHeaders, EmptyValueIsSigned) {
  EXPECT_EQ(canonical_headers(get("https://h/", {{"X-Empty", "   "}}))[2], "x-empty:");
}

TEST(CanonicalHeaders, HostComesFromTheUrlWhenAbsent) {
  EXPECT_EQ(canonical_headers(get("https://example.com:443/"))[0], "host:example.com");
  EXPECT_EQ(canonical_headers(get("http://example.com:80/"))[0], "host:example.com");
  EXPECT_EQ(canonical_headers(get("http://localhost:5000/"))[0], "host:localhost:5000");
  EXPECT_EQ(canonical_headers(get("https://example.com:80/"))[0], "host:example.com:80");
  EXPECT_EQ(canonical_headers(get("https://user:pw@example.com/"))[0], "host:example.com");
  EXPECT_EQ(canonical_headers(get("http://[::1]:8080/"))[0], "host:[::1]:8080");
  EXPECT_EQ(canonical_headers(get("https://[::1]/"))[0], "host:[::1]");
  // A Host header on the request wins.
  EXPECT_EQ(canonical_headers(get("https://a.example/", {{"Host", "b.example"}}))[0],
            "host:b.example");
}

TEST(CanonicalHeaders, UnsignedHeadersAreLeftOut) {
  const auto request = get("https://h/", {{"User-Agent", "tasker/1"},
                                          {"X-Amzn-Trace-Id", "Root=1-abc"},
                                          {"Authorization", "stale"},
                                          {"Expect", ""},
                                          {"Connection", "keep-alive"},
                                          {"X-Amz-Target", "RedshiftData.ExecuteStatement"}});
  EXPECT_EQ(signed_headers(request), "host;x-amz-date;x-amz-target");
}

TEST(CanonicalHeaders, SigningHeadersReplaceTheRequestsOwn) {
  const auto request = get("https://h/", {{"X-Amz-Date", "19990101T000000Z"},
                                          {"X-Amz-Security-Token", "old"},
                                          {"x-amz-content-sha256", "stale"}});
  SigningParams params = suite_params();
  params.sign_body = true;
  EXPECT_EQ(canonical_headers(request, example_credentials("new"), params),
            (std::vector<std::string>{"host:h", "x-amz-content-sha256:" + std::string(kEmptySha256),
                                      "x-amz-date:20150830T123600Z", "x-amz-security-token:new"}));
}

TEST(CanonicalHeaders, SessionTokenIsSignedUnlessOmitted) {
  const auto request = get("https://h/");
  EXPECT_EQ(signed_headers(request, example_credentials("tok")),
            "host;x-amz-date;x-amz-security-token");
  SigningParams params = suite_params();
  params.omit_session_token = true;
  EXPECT_EQ(signed_headers(request, example_credentials("tok"), params), "host;x-amz-date");
  // Without a token in the credentials a token header on the request is an ordinary header.
  EXPECT_EQ(signed_headers(get("https://h/", {{"X-Amz-Security-Token", "t"}})),
            "host;x-amz-date;x-amz-security-token");
}

// --- Payload and the whole signature ------------------------------------------------------------

TEST(Payload, IsTheBodyHashOrTheGivenValue) {
  HttpRequest request = get("https://h/");
  request.method = "POST";
  request.body = "Param1=value1";
  SigningParams params = suite_params();
  auto lines =
      lines_of(compute_signature(request, example_credentials(), params).canonical_request);
  EXPECT_EQ(lines.back(), sha256_hex("Param1=value1"));

  params.sign_body = true;
  params.signed_body_value = "UNSIGNED-PAYLOAD";
  lines = lines_of(compute_signature(request, example_credentials(), params).canonical_request);
  EXPECT_EQ(lines.back(), "UNSIGNED-PAYLOAD");
  EXPECT_EQ(canonical_headers(request, example_credentials(), params)[1],
            "x-amz-content-sha256:UNSIGNED-PAYLOAD");

  params.signed_body_value = "STREAMING-AWS4-HMAC-SHA256-PAYLOAD-" + std::string(40, 'X');
  lines = lines_of(compute_signature(request, example_credentials(), params).canonical_request);
  EXPECT_EQ(lines.back(), params.signed_body_value);  // any length, kept whole
}

TEST(ComputeSignature, MatchesTheSuitesVanillaCase) {
  const auto result = compute_signature(get("https://example.amazonaws.com/"),
                                        example_credentials(), suite_params());
  EXPECT_EQ(
      result.canonical_request,
      "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\n" +
          std::string(kEmptySha256));
  EXPECT_EQ(result.string_to_sign,
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\n" +
                sha256_hex(result.canonical_request));
  EXPECT_EQ(result.signature, "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
  EXPECT_EQ(result.authorization,
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, "
            "SignedHeaders=host;x-amz-date, "
            "Signature=5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31");
  EXPECT_EQ(result.amz_date, "20150830T123600Z");
}

TEST(ComputeSignature, AGivenSigningKeyGivesTheSameSignature) {
  const auto request = get("https://example.amazonaws.com/?a=1");
  const std::string key = derive_signing_key(kSecret, "20150830", "us-east-1", "service");
  EXPECT_EQ(compute_signature(request, example_credentials(), suite_params(), key).signature,
            compute_signature(request, example_credentials(), suite_params()).signature);
}

TEST(ComputeSignature, DateIsUtcAndTruncatedToTheSecond) {
  SigningParams params = suite_params();
  params.time = suite_time() + 999ms;
  EXPECT_EQ(compute_signature(get("https://h/"), example_credentials(), params).amz_date,
            "20150830T123600Z");
  params.time = system_clock::time_point{} + 86399s;  // 1970-01-01T23:59:59Z
  EXPECT_EQ(compute_signature(get("https://h/"), example_credentials(), params).amz_date,
            "19700101T235959Z");
}

TEST(ComputeSignature, RejectsAUrlWithoutSchemeOrHost) {
  EXPECT_THROW(compute_signature(get("example.com/"), example_credentials(), suite_params()),
               Error);
  EXPECT_THROW(compute_signature(get("https:///path"), example_credentials(), suite_params()),
               Error);
}

TEST(ComputeSignature, LeavesTheRequestUnchanged) {
  const HttpRequest request = get("https://h/", {{"A", "b"}});
  const HttpRequest copy = request;
  compute_signature(request, example_credentials("tok"), suite_params());
  EXPECT_EQ(request.headers, copy.headers);
}

// --- Signer ------------------------------------------------------------------------------------

SigningParams params_for(const Signer& signer, system_clock::time_point now) {
  SigningParams params;
  params.region = signer.region();
  params.service = signer.service();
  params.time = now;
  if (signer.service() == "s3") {
    params.normalize_path = false;
    params.sign_body = true;
  }
  return params;
}

HttpRequest execute_statement() {
  HttpRequest request;
  request.url = "https://redshift-data.us-east-1.amazonaws.com/";
  request.headers = {{"Content-Type", "application/x-amz-json-1.1"},
                     {"X-Amz-Target", "RedshiftData.ExecuteStatement"}};
  request.body = R"({"ClusterIdentifier":"c1","Database":"dev","Sql":"select 1"})";
  return request;
}

TEST(Signer, AddsDateTokenAndAuthorizationButNotHost) {
  const Signer signer("us-east-1", "redshift-data");
  HttpRequest request = execute_statement();
  const auto credentials = example_credentials("session-token");
  const auto expected = compute_signature(request, credentials, params_for(signer, suite_time()));
  signer.sign(request, credentials, suite_time());
  ASSERT_NE(request.header("x-amz-date"), nullptr);
  EXPECT_EQ(*request.header("x-amz-date"), "20150830T123600Z");
  ASSERT_NE(request.header("x-amz-security-token"), nullptr);
  EXPECT_EQ(*request.header("x-amz-security-token"), "session-token");
  ASSERT_NE(request.header("authorization"), nullptr);
  EXPECT_EQ(*request.header("authorization"), expected.authorization);
  EXPECT_EQ(request.header("host"), nullptr);
  EXPECT_EQ(request.headers.size(), 5u);
}

TEST(Signer, NoTokenHeaderForLongTermKeys) {
  HttpRequest request = execute_statement();
  Signer("us-east-1", "redshift-data").sign(request, example_credentials(), suite_time());
  EXPECT_EQ(request.header("x-amz-security-token"), nullptr);
  EXPECT_NE(request.header("authorization")
                ->find("SignedHeaders=content-type;host;x-amz-date;"
                       "x-amz-target,"),
            std::string::npos);
}

TEST(Signer, SigningAgainReplacesTheHeaders) {
  const Signer signer("us-east-1", "redshift-data");
  HttpRequest request = execute_statement();
  const auto credentials = example_credentials("tok");
  signer.sign(request, credentials, suite_time());
  const auto later = suite_time() + 5s;
  const HttpRequest unsigned_request = execute_statement();
  const auto expected = compute_signature(unsigned_request, credentials, params_for(signer, later));
  signer.sign(request, credentials, later);
  EXPECT_EQ(request.headers.size(), 5u);
  EXPECT_EQ(*request.header("x-amz-date"), "20150830T123605Z");
  EXPECT_EQ(*request.header("authorization"), expected.authorization);
}

TEST(Signer, S3IsSignedTheS3Way) {
  const Signer signer("us-east-1", "s3");
  HttpRequest request = get("https://bucket.s3.amazonaws.com/a//b/../my%20key");
  const auto expected =
      compute_signature(request, example_credentials(), params_for(signer, suite_time()));
  EXPECT_EQ(lines_of(expected.canonical_request)[1], "/a//b/../my%20key");
  signer.sign(request, example_credentials(), suite_time());
  EXPECT_EQ(*request.header("x-amz-content-sha256"), kEmptySha256);
  EXPECT_EQ(*request.header("authorization"), expected.authorization);
}

TEST(Signer, CachedKeyFollowsSecretAndDate) {
  const Signer signer("eu-west-1", "states");
  const Credentials a{"AKIDA", "secret-a", ""};
  const Credentials b{"AKIDB", "secret-b", ""};
  const auto day1 = suite_time();
  const auto day1_late = day1 + 11h + 23min + 59s;  // 23:59:59, same date
  const auto day2 = day1_late + 1s;                 // midnight: a new date, a new key
  for (const auto& [credentials, when] :
       std::vector<std::pair<Credentials, system_clock::time_point>>{
           {a, day1}, {a, day1_late}, {b, day1}, {a, day1}, {a, day2}, {b, day2}, {a, day1}}) {
    HttpRequest request = execute_statement();
    signer.sign(request, credentials, when);
    const auto expected = compute_signature(execute_statement(), credentials,
                                            params_for(signer, when));  // key derived afresh
    EXPECT_EQ(*request.header("authorization"), expected.authorization);
  }
}

TEST(Signer, IsSafeToShareBetweenThreads) {
  const Signer signer("us-east-1", "redshift-data");
  const std::vector<Credentials> credentials = {{"AKID1", "secret-1", "token-1"},
                                                {"AKID2", "secret-2", ""}};
  const std::vector<system_clock::time_point> times = {suite_time(), suite_time() + 24h};
  std::vector<std::string> expected;
  for (const auto& c : credentials) {
    for (const auto& t : times) {
      expected.push_back(
          compute_signature(execute_statement(), c, params_for(signer, t)).authorization);
    }
  }
  std::atomic<int> mismatches{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < 500; ++i) {
        const std::size_t which = static_cast<std::size_t>((i + t) % 4);
        HttpRequest request = execute_statement();
        signer.sign(request, credentials[which / 2], times[which % 2]);
        if (*request.header("authorization") != expected[which]) ++mismatches;
      }
    });
  }
  for (auto& thread : threads) thread.join();
  EXPECT_EQ(mismatches.load(), 0);
}

}  // namespace
}  // namespace rstasker::aws
