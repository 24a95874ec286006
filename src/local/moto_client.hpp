// tasker-local's own calls to moto: Lambda's REST API (function configurations, event-source
// mappings), S3 reads for function code, and JSON-protocol clients (SQS, EventBridge). Signed
// like any client's, so they also work against a moto that checks signatures.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "rstasker/aws/credentials.hpp"
#include "rstasker/aws/endpoints.hpp"
#include "rstasker/aws/http.hpp"
#include "rstasker/aws/json_client.hpp"
#include "rstasker/common/deadline.hpp"
#include "rstasker/common/json.hpp"

namespace rstasker::local {

class MotoClient {
 public:
  // `url`: moto's own address ("http://127.0.0.1:5000"), never the edge (whose Lambda routes
  // tasker-local serves itself).
  MotoClient(std::string url, std::string region, aws::Credentials credentials,
             std::shared_ptr<aws::HttpTransport> transport);

  // Sends `method` `path_and_query` (already percent-encoded) to moto, signed for
  // `signing_name`; returns the response whatever its status. Throws Error(NetworkError) when
  // moto does not answer.
  aws::HttpResponse send(std::string_view method, std::string_view signing_name,
                         std::string_view path_and_query, std::string body,
                         const Deadline& deadline) const;

  // A REST-JSON call (Lambda): the parsed 2xx body ({} when empty), or the service's error thrown
  // as rstasker::Error (name from x-amzn-ErrorType or the body, HTTP status kept).
  Json rest_json(std::string_view method, std::string_view path_and_query, const Json* body,
                 const Deadline& deadline) const;

  // A JSON-protocol client (SQS, EventBridge, ...) for moto.
  std::shared_ptr<aws::JsonClient> json_client(aws::JsonProtocol protocol,
                                               const aws::ServiceSpec& service) const;

  const std::string& url() const { return url_; }
  const std::string& region() const { return region_; }
  const std::shared_ptr<aws::HttpTransport>& transport() const { return transport_; }

 private:
  std::string url_;
  std::string region_;
  aws::Credentials credentials_;
  std::shared_ptr<aws::HttpTransport> transport_;
};

// Percent-encodes one path segment (everything but A-Za-z0-9-_.~), e.g. a function ARN.
std::string encode_path_segment(std::string_view text);
// Decodes %XX escapes (a '+' stays a '+').
std::string decode_percent(std::string_view text);

}  // namespace rstasker::local
