// tasker-local's SigV4 check: requests signed by the project's signer (as a client signs them)
// pass; every way of getting the signature wrong is refused with the error AWS answers.
#include "local/sigv4_verify.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <string>

#include "rstasker/aws/sigv4.hpp"
#include "rstasker/common/error.hpp"

namespace rstasker::local {
namespace {

using namespace std::chrono_literals;
using std::chrono::system_clock;

const aws::Credentials kKey{"AKIDLOCALSTACK", "local-stack-secret-key/with+chars", ""};
const aws::Credentials kOtherKey{"ak", "sk", ""};
constexpr const char* kPrincipal = "arn:aws:iam::123456789012:user/local";

system_clock::time_point signing_time() {
  using namespace std::chrono;
  return sys_days{2024y / March / 5} + 10h + 20min + 30s;
}

SignatureVerifier verifier() {
  return SignatureVerifier({{kKey, kPrincipal}, {kOtherKey, "arn:aws:iam::123456789012:user/sfn"}});
}

aws::HttpRequest data_api_request() {
  aws::HttpRequest request;
  request.method = "POST";
  request.url = "http://127.0.0.1:4566/";
  request.headers = {{"Content-Type", "application/x-amz-json-1.1"},
                     {"X-Amz-Target", "RedshiftData.DescribeStatement"},
                     {"Host", "127.0.0.1:4566"},
                     {"User-Agent", "test/1.0"}};
  request.body = R"({"Id":"d9b6c0c9-0747-4bf4-b142-e8883122f766"})";
  return request;
}

aws::HttpRequest signed_request(const aws::Credentials& credentials = kKey,
                                std::string service = "redshift-data",
                                system_clock::time_point at = signing_time()) {
  aws::HttpRequest request = data_api_request();
  aws::Signer("us-east-1", std::move(service)).sign(request, credentials, at);
  return request;
}

// The name of the Error verify() throws, or "" when it accepts the request.
std::string refusal(const aws::HttpRequest& request, system_clock::time_point now = signing_time(),
                    std::string_view service = "redshift-data") {
  try {
    verifier().verify(request, service, "us-east-1", now);
    return "";
  } catch (const Error& e) {
    EXPECT_EQ(e.http_status(), 403) << e.name() << ": " << e.message();
    return e.name();
  }
}

TEST(SignatureVerifier, AcceptsARequestSignedWithAnAcceptedKey) {
  SignedCaller caller =
      verifier().verify(signed_request(), "redshift-data", "us-east-1", signing_time());
  EXPECT_EQ(caller.access_key_id, "AKIDLOCALSTACK");
  EXPECT_EQ(caller.principal_arn, kPrincipal);
}

TEST(SignatureVerifier, AcceptsEveryConfiguredKey) {
  SignedCaller caller =
      verifier().verify(signed_request(kOtherKey), "redshift-data", "us-east-1", signing_time());
  EXPECT_EQ(caller.access_key_id, "ak");
}

TEST(SignatureVerifier, AcceptsALambdaInvokeWithAnEncodedArnInThePath) {
  aws::HttpRequest request;
  request.method = "POST";
  request.url =
      "http://localhost:4566/2015-03-31/functions/"
      "arn%3Aaws%3Alambda%3Aus-east-1%3A123456789012%3Afunction%3Atasker/"
      "invocations?Qualifier=%24LATEST";
  request.headers = {{"X-Amz-Invocation-Type", "RequestResponse"}, {"Host", "localhost:4566"}};
  request.body = "{}";
  aws::Signer("us-east-1", "lambda").sign(request, kKey, signing_time());
  EXPECT_EQ(refusal(request, signing_time(), "lambda"), "");
}

TEST(SignatureVerifier, AcceptsASignedSessionTokenAndContentHash) {
  const aws::Credentials temporary{"ASIATEMPORARY", "temporary-secret", "the-session-token"};
  SignatureVerifier with_token({{temporary, "arn:aws:sts::123456789012:assumed-role/r/s"}});
  aws::HttpRequest request = data_api_request();
  aws::SigningParams params;
  params.region = "us-east-1";
  params.service = "redshift-data";
  params.time = signing_time();
  params.sign_body = true;
  aws::SigningResult result = aws::compute_signature(request, temporary, params);
  request.set_header("X-Amz-Date", result.amz_date);
  request.set_header("X-Amz-Security-Token", temporary.session_token);
  request.set_header("x-amz-content-sha256", aws::sha256_hex(request.body));
  request.set_header("Authorization", result.authorization);
  EXPECT_NO_THROW(with_token.verify(request, "redshift-data", "us-east-1", signing_time()));

  request.set_header("X-Amz-Security-Token", "another-token");
  EXPECT_THROW(with_token.verify(request, "redshift-data", "us-east-1", signing_time()), Error);
}

TEST(SignatureVerifier, IgnoresUnsignedHeadersAddedOnTheWay) {
  aws::HttpRequest request = signed_request();
  request.headers.emplace_back("X-Forwarded-For", "10.0.0.1");
  request.set_header("User-Agent", "a-proxy/2.0");
  EXPECT_EQ(refusal(request), "");
}

TEST(SignatureVerifier, RefusesAWrongSecret) {
  aws::HttpRequest request = signed_request({kKey.access_key_id, "not-the-secret", ""});
  EXPECT_EQ(refusal(request), "InvalidSignatureException");
}

TEST(SignatureVerifier, RefusesAnUnknownAccessKey) {
  aws::HttpRequest request = signed_request({"AKIDUNKNOWN", kKey.secret_access_key, ""});
  EXPECT_EQ(refusal(request), "UnrecognizedClientException");
}

TEST(SignatureVerifier, RefusesAnUnexpectedSessionToken) {
  aws::HttpRequest request = signed_request({kKey.access_key_id, kKey.secret_access_key, "tok"});
  EXPECT_EQ(refusal(request), "UnrecognizedClientException");
}

TEST(SignatureVerifier, RefusesAnAlteredBody) {
  aws::HttpRequest request = signed_request();
  request.body = R"({"Id":"00000000-0747-4bf4-b142-e8883122f766"})";
  EXPECT_EQ(refusal(request), "InvalidSignatureException");
}

TEST(SignatureVerifier, RefusesAnAlteredSignedHeader) {
  aws::HttpRequest request = signed_request();
  request.set_header("X-Amz-Target", "RedshiftData.CancelStatement");
  EXPECT_EQ(refusal(request), "InvalidSignatureException");
}

TEST(SignatureVerifier, RefusesAnAlteredPathOrQuery) {
  aws::HttpRequest request = signed_request();
  request.url = "http://127.0.0.1:4566/?x=1";
  EXPECT_EQ(refusal(request), "InvalidSignatureException");
}

TEST(SignatureVerifier, RefusesAStaleOrFutureDate) {
  aws::HttpRequest request = signed_request();
  EXPECT_EQ(refusal(request, signing_time() + 14min), "");
  EXPECT_EQ(refusal(request, signing_time() + 16min), "InvalidSignatureException");
  EXPECT_EQ(refusal(request, signing_time() - 16min), "InvalidSignatureException");
}

TEST(SignatureVerifier, RefusesAScopeForAnotherServiceOrRegion) {
  EXPECT_EQ(refusal(signed_request(kKey, "lambda")), "InvalidSignatureException");
  aws::HttpRequest request = data_api_request();
  aws::Signer("eu-west-1", "redshift-data").sign(request, kKey, signing_time());
  EXPECT_EQ(refusal(request), "InvalidSignatureException");
}

TEST(SignatureVerifier, RefusesARequestWithoutAuthorization) {
  EXPECT_EQ(refusal(data_api_request()), "MissingAuthenticationTokenException");
}

TEST(SignatureVerifier, RefusesAMissingDateHeader) {
  aws::HttpRequest request = signed_request();
  std::erase_if(request.headers, [](const auto& h) { return h.first == "X-Amz-Date"; });
  EXPECT_EQ(refusal(request), "IncompleteSignatureException");
}

TEST(SignatureVerifier, RefusesASignedHeaderTheRequestDoesNotCarry) {
  aws::HttpRequest request = signed_request();
  std::erase_if(request.headers, [](const auto& h) { return h.first == "X-Amz-Target"; });
  EXPECT_EQ(refusal(request), "IncompleteSignatureException");
}

TEST(SignatureVerifier, RefusesMalformedAuthorizationHeaders) {
  aws::HttpRequest request = signed_request();
  const std::string good = *request.header("Authorization");
  for (std::string bad :
       {std::string("Bearer abc"), std::string("AWS4-HMAC-SHA256 Signature=abc"),
        std::string("AWS4-HMAC-SHA256 Credential=AKIDLOCALSTACK/20240305/us-east-1/"
                    "redshift-data, SignedHeaders=host, Signature=00"),
        good.substr(0, good.find("SignedHeaders")) + "SignedHeaders=x-amz-date, " +
            good.substr(good.find("Signature="))}) {
    request.set_header("Authorization", bad);
    EXPECT_EQ(refusal(request), "IncompleteSignatureException") << bad;
  }
}

}  // namespace
}  // namespace rstasker::local
