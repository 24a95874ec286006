// Endpoint resolution: explicit overrides first, then the standard regional host.
#include "rstasker/aws/endpoints.hpp"

#include "rstasker/aws/http.hpp"
#include "rstasker/common/error.hpp"

namespace rstasker::aws {

namespace {

std::string normalise_explicit(const std::string& variable, const std::string& value) {
  if (!(value.starts_with("http://") || value.starts_with("https://"))) {
    throw configuration_error(variable + "=" + value + " is not an http:// or https:// URL");
  }
  UrlParts parts;
  try {
    parts = split_url(value);
  } catch (const Error&) {
    throw configuration_error(variable + "=" + value + " has no host");
  }
  if (parts.path != "/" || !parts.query.empty()) {
    throw configuration_error(variable + "=" + value +
                              " must be scheme://host[:port] without a path or query");
  }
  return parts.scheme + "://" + parts.authority;
}

}  // namespace

Endpoint resolve_endpoint(const ServiceSpec& spec, std::string_view region, const EnvLookup& env) {
  Endpoint endpoint{{}, std::string(region), std::string(spec.signing_name)};
  std::string specific = "AWS_ENDPOINT_URL_" + std::string(spec.env_suffix);
  if (auto url = env(specific)) {
    endpoint.url = normalise_explicit(specific, *url);
  } else if (auto global = env("AWS_ENDPOINT_URL")) {
    endpoint.url = normalise_explicit("AWS_ENDPOINT_URL", *global);
  } else {
    std::string_view suffix = region.starts_with("cn-") ? "amazonaws.com.cn" : "amazonaws.com";
    endpoint.url = "https://" + std::string(spec.host_prefix) + "." + std::string(region) + "." +
                   std::string(suffix);
  }
  return endpoint;
}

}  // namespace rstasker::aws
