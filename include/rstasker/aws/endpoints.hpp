// Which URL a service is reached at, and under which name requests to it are signed.
#pragma once

#include <string>
#include <string_view>

#include "rstasker/aws/credentials.hpp"

namespace rstasker::aws {

// What identifies a service for endpoint resolution and signing.
struct ServiceSpec {
  std::string_view env_suffix;    // AWS_ENDPOINT_URL_<env_suffix>, e.g. "REDSHIFT_DATA"
  std::string_view host_prefix;   // <host_prefix>.<region>.amazonaws.com
  std::string_view signing_name;  // SigV4 service name
};

namespace service {
inline constexpr ServiceSpec kRedshiftData{"REDSHIFT_DATA", "redshift-data", "redshift-data"};
inline constexpr ServiceSpec kDynamoDb{"DYNAMODB", "dynamodb", "dynamodb"};
inline constexpr ServiceSpec kStepFunctions{"SFN", "states", "states"};
inline constexpr ServiceSpec kEventBridge{"EVENTBRIDGE", "events", "events"};
inline constexpr ServiceSpec kSqs{"SQS", "sqs", "sqs"};
inline constexpr ServiceSpec kLambda{"LAMBDA", "lambda", "lambda"};
inline constexpr ServiceSpec kCloudFormation{"CLOUDFORMATION", "cloudformation", "cloudformation"};
inline constexpr ServiceSpec kIam{"IAM", "iam", "iam"};
}  // namespace service

struct Endpoint {
  std::string url;  // scheme://host[:port], no trailing slash
  std::string region;
  std::string signing_name;
};

// AWS_ENDPOINT_URL_<SERVICE>, else AWS_ENDPOINT_URL, else https://<prefix>.<region>.amazonaws.com
// (amazonaws.com.cn in China regions). Plain http is accepted only for an explicit endpoint.
// Throws ConfigurationError for an endpoint that is not an http(s) URL.
Endpoint resolve_endpoint(const ServiceSpec& spec, std::string_view region, const EnvLookup& env);

}  // namespace rstasker::aws
