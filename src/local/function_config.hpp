// A Lambda function as moto describes it (GetFunction), reduced to what running it needs.
#pragma once

#include <map>
#include <optional>
#include <string>

#include "rstasker/common/json.hpp"

namespace rstasker::local {

struct FunctionConfig {
  std::string name;
  std::string arn;  // unqualified for $LATEST, ":<version>" for a published version
  std::string version = "$LATEST";
  std::string runtime;  // e.g. "provided.al2023"
  std::string handler;
  std::string role;
  std::string package_type = "Zip";
  int timeout_seconds = 3;
  int memory_mb = 128;
  std::map<std::string, std::string> environment;
  std::optional<int> reserved_concurrency;
  std::string code_sha256;    // base64, as Lambda reports it
  std::string code_location;  // Code.Location
  std::string last_modified;

  // From a GetFunction answer ({"Configuration": {...}, "Code": {...}, "Concurrency": {...}}).
  // Throws Error(InternalError) when it lacks FunctionName or FunctionArn.
  static FunctionConfig from_get_function(const Json& answer);

  // Changes whenever code or configuration change: instances of another revision are retired.
  std::string revision() const;

  // Whether tasker-local can run it: a custom runtime ("provided", "provided.al2", ...) packaged
  // as a zip.
  bool runs_locally() const;
};

}  // namespace rstasker::local
