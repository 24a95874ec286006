// Checks the SigV4 signature of a request that reached tasker-local, the way an AWS front door
// does, so a client that signs wrongly fails here as it would against AWS.
#pragma once

#include <chrono>
#include <string>
#include <string_view>
#include <vector>

#include "rstasker/aws/credentials.hpp"
#include "rstasker/aws/http.hpp"

namespace rstasker::local {

// A key pair tasker-local accepts, and the IAM principal that signing with it stands for (the
// Data API's caller ARN: it scopes ClientToken and ListStatements, and is an event's principal).
struct AcceptedKey {
  aws::Credentials credentials;  // a session token, when set, must come with the request
  std::string principal_arn;
};

// Who signed a request that verified.
struct SignedCaller {
  std::string access_key_id;
  std::string principal_arn;
};

// The error names AWS answers signature problems with (all HTTP 403).
namespace auth_errors {
inline constexpr std::string_view kMissingToken = "MissingAuthenticationTokenException";
inline constexpr std::string_view kIncompleteSignature = "IncompleteSignatureException";
inline constexpr std::string_view kUnrecognizedClient = "UnrecognizedClientException";
inline constexpr std::string_view kInvalidSignature = "InvalidSignatureException";
}  // namespace auth_errors

class SignatureVerifier {
 public:
  // `max_skew`: how far X-Amz-Date may be from the server's clock, either way (AWS: 15 minutes).
  explicit SignatureVerifier(std::vector<AcceptedKey> keys,
                             std::chrono::seconds max_skew = std::chrono::minutes(15));

  // Verifies `request` (method, url = scheme://<Host header>/<raw target>, headers as received,
  // body) as a call to `service` in `region`. The signature is recomputed with the project's
  // signer over exactly the headers named in SignedHeaders (which must include host) and compared
  // in constant time. Returns the caller; throws rstasker::Error with HTTP status 403 named:
  //  - MissingAuthenticationTokenException: no Authorization header;
  //  - IncompleteSignatureException: an Authorization header that is not AWS4-HMAC-SHA256 with
  //    Credential, SignedHeaders and Signature, a malformed credential scope, no X-Amz-Date, or a
  //    signed header the request does not carry;
  //  - UnrecognizedClientException: an access key (or session token) it does not accept;
  //  - InvalidSignatureException: a scope for another date, region or service, an X-Amz-Date
  //    more than max_skew away from `now`, or a signature that does not match.
  //
  // Limitation: the signer never signs User-Agent, X-Amzn-Trace-Id, Expect, Connection or
  // Upgrade, so a client that signs one of those is refused (no AWS SDK does).
  SignedCaller verify(const aws::HttpRequest& request, std::string_view service,
                      std::string_view region, std::chrono::system_clock::time_point now) const;

 private:
  std::vector<AcceptedKey> keys_;
  std::chrono::seconds max_skew_;
};

}  // namespace rstasker::local
