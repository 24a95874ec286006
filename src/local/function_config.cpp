// Reading GetFunction answers.
#include "local/function_config.hpp"

#include <algorithm>
#include <charconv>
#include <optional>

#include "rstasker/common/error.hpp"
#include "rstasker/common/json.hpp"

namespace rstasker::local {
namespace {

// A number, or a string holding one: moto keeps CloudFormation's string parameters as given
// (a Timeout of "60" from `!Ref FunctionTimeout`), where Lambda would convert them.
std::optional<int> int_field(const Json& object, const char* name) {
  auto it = object.find(name);
  if (it == object.end()) return std::nullopt;
  if (it->is_number()) return it->get<int>();
  if (it->is_string()) {
    const std::string text = it->get<std::string>();
    int value = 0;
    auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
    if (ec == std::errc() && end == text.data() + text.size()) return value;
  }
  return std::nullopt;
}

}  // namespace

FunctionConfig FunctionConfig::from_get_function(const Json& answer) {
  const Json empty = Json::object();
  const Json& configuration =
      answer.contains("Configuration") && answer["Configuration"].is_object()
          ? answer["Configuration"]
          : empty;
  FunctionConfig config;
  config.name = string_member(configuration, "FunctionName");
  config.arn = string_member(configuration, "FunctionArn");
  if (config.name.empty() || config.arn.empty()) {
    throw Error(error_names::kInternalError,
                "GetFunction answered without FunctionName or FunctionArn: " +
                    dump_json(answer).substr(0, 500));
  }
  if (auto version = string_member(configuration, "Version"); !version.empty()) {
    config.version = version;
  }
  config.runtime = string_member(configuration, "Runtime");
  config.handler = string_member(configuration, "Handler");
  config.role = string_member(configuration, "Role");
  if (auto type = string_member(configuration, "PackageType"); !type.empty()) {
    config.package_type = type;
  }
  if (auto timeout = int_field(configuration, "Timeout")) {
    config.timeout_seconds = std::max(1, *timeout);
  }
  if (auto memory = int_field(configuration, "MemorySize")) config.memory_mb = *memory;
  if (auto env = configuration.find("Environment");
      env != configuration.end() && env->is_object()) {
    if (auto vars = env->find("Variables"); vars != env->end() && vars->is_object()) {
      for (const auto& [name, value] : vars->items()) {
        config.environment[name] = value.is_string() ? value.get<std::string>() : value.dump();
      }
    }
  }
  config.code_sha256 = string_member(configuration, "CodeSha256");
  config.last_modified = string_member(configuration, "LastModified");
  if (auto code = answer.find("Code"); code != answer.end() && code->is_object()) {
    config.code_location = string_member(*code, "Location");
  }
  if (auto concurrency = answer.find("Concurrency");
      concurrency != answer.end() && concurrency->is_object()) {
    config.reserved_concurrency = int_field(*concurrency, "ReservedConcurrentExecutions");
  }
  return config;
}

std::string FunctionConfig::revision() const {
  // Everything an instance is started with; LastModified alone is not trusted to change.
  Json state = {{"code", code_sha256}, {"modified", last_modified},  {"runtime", runtime},
                {"handler", handler},  {"timeout", timeout_seconds}, {"memory", memory_mb},
                {"env", environment}};
  return dump_json(state);
}

bool FunctionConfig::runs_locally() const {
  return package_type == "Zip" && (runtime == "provided" || runtime.starts_with("provided."));
}

}  // namespace rstasker::local
