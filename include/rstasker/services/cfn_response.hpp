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

class CfnResponder {
 public:
  virtual ~CfnResponder() = default;
  // PUTs `body` (JSON text, at most kMaxCfnResponseBytes) to `response_url` with an empty
  // Content-Type. Network errors and 5xx are retried within the deadline; throws Error when the
  // response could not be delivered (retryable() tells whether trying later may help).
  virtual void send(const std::string& response_url, const std::string& body,
                    const aws::CallContext& context) = 0;
};

std::unique_ptr<CfnResponder> make_cfn_responder(std::shared_ptr<aws::HttpTransport> transport,
                                                 aws::RetryPolicy retry = {});

}  // namespace rstasker::services
