// AWS credentials and region, as the Lambda environment provides them.
#pragma once

#include <functional>
#include <optional>
#include <string>
#include <string_view>

namespace rstasker::aws {

// Reads one environment variable; tests pass their own to avoid touching the process env.
using EnvLookup = std::function<std::optional<std::string>(std::string_view name)>;
// The process environment (unset and empty variables both read as nullopt).
EnvLookup process_env();

struct Credentials {
  std::string access_key_id;
  std::string secret_access_key;
  std::string session_token;  // empty for long-term keys
};

// AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY and (optional) AWS_SESSION_TOKEN. Throws
// ConfigurationError naming what is missing.
Credentials credentials_from_env(const EnvLookup& env);

// AWS_REGION, else AWS_DEFAULT_REGION. Throws ConfigurationError when neither is set or the value
// is not a region name.
std::string region_from_env(const EnvLookup& env);

}  // namespace rstasker::aws
