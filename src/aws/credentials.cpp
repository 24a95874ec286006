// Credentials and region from the environment (what Lambda gives every function).
#include "rstasker/aws/credentials.hpp"

#include <cctype>
#include <cstdlib>

#include "rstasker/common/error.hpp"

namespace rstasker::aws {

EnvLookup process_env() {
  return [](std::string_view name) -> std::optional<std::string> {
    const char* value = std::getenv(std::string(name).c_str());
    if (value == nullptr || *value == '\0') return std::nullopt;
    return std::string(value);
  };
}

Credentials credentials_from_env(const EnvLookup& env) {
  auto key = env("AWS_ACCESS_KEY_ID");
  auto secret = env("AWS_SECRET_ACCESS_KEY");
  if (!key || !secret) {
    throw configuration_error(std::string("no AWS credentials: ") +
                              (!key ? "AWS_ACCESS_KEY_ID" : "AWS_SECRET_ACCESS_KEY") +
                              " is not set (Lambda sets both; from a shell, export them or use "
                              "`eval \"$(aws configure export-credentials --format env)\"`)");
  }
  return Credentials{*key, *secret, env("AWS_SESSION_TOKEN").value_or("")};
}

std::string region_from_env(const EnvLookup& env) {
  auto region = env("AWS_REGION");
  if (!region) region = env("AWS_DEFAULT_REGION");
  if (!region) throw configuration_error("AWS_REGION is not set");
  for (char c : *region) {
    if (!(std::islower(static_cast<unsigned char>(c)) ||
          std::isdigit(static_cast<unsigned char>(c)) || c == '-')) {
      throw configuration_error("AWS_REGION=" + *region + " is not a region name");
    }
  }
  return *region;
}

}  // namespace rstasker::aws
