// CloudFormation custom-resource responses: an HTTPS PUT of a JSON body to the pre-signed
// ResponseURL of the request.
#pragma once

#include <memory>
#include <string>

#include "rstasker/aws/http.hpp"
#include "rstasker/aws/json_client.hpp"

namespace rstasker::services {

// CloudFormation rejects response bodies larger than this.
inline constexpr std::size_t kMaxCfnResponseBytes = 4096;

// Which ResponseURLs are answered. CloudFormation's are pre-signed S3 URLs over https; a request
// naming another host would make the function PUT wherever its sender likes (an address inside
// the VPC, say), so anything else is answered only under kAnyHttpUrl, which the local stack
// sets: its receivers listen on plain http on the loopback interface.
enum class ResponseUrlPolicy { kS3Https, kAnyHttpUrl };

// From CFN_RESPONSE_URLS: unset, empty or `s3` -> kS3Https; `any` -> kAnyHttpUrl; anything else
// is a ConfigurationError.
ResponseUrlPolicy response_url_policy_from_env(const aws::EnvLookup& env);

// Why `url` may not be answered under `policy`, or "" when it may. Never quotes the URL (its
// query is a credential). Under kS3Https: https, no user or port other than 443, and a host of
// S3 (`<bucket>.s3.amazonaws.com`, `<bucket>.s3[.-]<region>.amazonaws.com[.cn]`, and the
// dualstack, fips and path-style forms).
std::string response_url_problem(std::string_view url, ResponseUrlPolicy policy);

class CfnResponder {
 public:
  virtual ~CfnResponder() = default;
  // PUTs `body` (JSON text, at most kMaxCfnResponseBytes) to `response_url` with an empty
  // Content-Type. Network errors and 5xx are retried within the deadline; throws Error when the
  // response could not be delivered (retryable() tells whether trying later may help).
  virtual void send(const std::string& response_url, const std::string& body,
                    const aws::CallContext& context) = 0;

  // Why `response_url` will not be answered (response_url_problem under the responder's policy),
  // or "" when it will; checked before any work is done for a request. Fakes that send nothing
  // accept every URL.
  virtual std::string url_problem(const std::string& /*response_url*/) const { return {}; }
};

// Transient refusals (HTTP 429 and 5xx, S3's RequestTimeout and SlowDown) and network failures
// are retried within the deadline; a URL refused by `policy` is never sent to.
std::unique_ptr<CfnResponder> make_cfn_responder(
    std::shared_ptr<aws::HttpTransport> transport, aws::RetryPolicy retry = {},
    ResponseUrlPolicy policy = ResponseUrlPolicy::kS3Https);

}  // namespace rstasker::services
