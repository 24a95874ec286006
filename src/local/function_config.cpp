// Reading GetFunction answers.
#include "local/function_config.hpp"

#include "rstasker/common/error.hpp"

namespace rstasker::local {
namespace {

std::string string_field(const Json& object, const char* name) {
  auto it = object.find(name);
  return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
}

}  // namespace

FunctionConfig FunctionConfig::from_get_function(const Json& answer) {
  const Json empty = Json::object();
  const Json& configuration =
      answer.contains("Configuration") && answer["Configuration"].is_object()
          ? answer["Configuration"]
          : empty;
  FunctionConfig config;
  config.name = string_field(configuration, "FunctionName");
  config.arn = string_field(configuration, "FunctionArn");
  if (config.name.empty() || config.arn.empty()) {
    throw Error(error_names::kInternalError,
                "GetFunction answered without FunctionName or FunctionArn: " +
                    dump_json(answer).substr(0, 500));
  }
  if (auto version = string_field(configuration, "Version"); !version.empty()) {
    config.version = version;
  }
  config.runtime = string_field(configuration, "Runtime");
  config.handler = string_field(configuration, "Handler");
  config.role = string_field(configuration, "Role");
  if (auto type = string_field(configuration, "PackageType"); !type.empty()) {
    config.package_type = type;
  }
  if (auto it = configuration.find("Timeout"); it != configuration.end() && it->is_number()) {
    config.timeout_seconds = std::max(1, it->get<int>());
  }
  if (auto it = configuration.find("MemorySize"); it != configuration.end() && it->is_number()) {
    config.memory_mb = it->get<int>();
  }
  if (auto env = configuration.find("Environment");
      env != configuration.end() && env->is_object()) {
    if (auto vars = env->find("Variables"); vars != env->end() && vars->is_object()) {
      for (const auto& [name, value] : vars->items()) {
        config.environment[name] = value.is_string() ? value.get<std::string>() : value.dump();
      }
    }
  }
  config.code_sha256 = string_field(configuration, "CodeSha256");
  config.last_modified = string_field(configuration, "LastModified");
  if (auto code = answer.find("Code"); code != answer.end() && code->is_object()) {
    config.code_location = string_field(*code, "Location");
  }
  if (auto concurrency = answer.find("Concurrency");
      concurrency != answer.end() && concurrency->is_object()) {
    if (auto reserved = concurrency->find("ReservedConcurrentExecutions");
        reserved != concurrency->end() && reserved->is_number()) {
      config.reserved_concurrency = reserved->get<int>();
    }
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
