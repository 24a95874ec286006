// Function code on disk: each zip unpacked once, in <dir>/<CodeSha256 (URL-safe)>/, for as many
// instances as run it.
//
// moto keeps a function's zip to itself (GetFunction's Code.Location is a made-up amazonaws.com
// URL), so the code is found another way:
//  - zips sent through the edge (CreateFunction / UpdateFunctionCode with ZipFile) are kept as
//    they pass (add_zip);
//  - code deployed from S3 (CloudFormation's Code: {S3Bucket, S3Key}) is found in moto's S3: the
//    object whose key is Code.Location's path and whose SHA-256 is the function's CodeSha256;
//  - a Code.Location that is not an amazonaws.com URL is downloaded as it is.
#pragma once

#include <filesystem>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>

#include "local/function_config.hpp"
#include "local/moto_client.hpp"
#include "rstasker/common/error.hpp"

namespace rstasker::local {

class CodeStore {
 public:
  CodeStore(std::filesystem::path dir, std::shared_ptr<const MotoClient> moto);

  // Unpacks a zip seen on its way to moto unless that code is unpacked already; returns its
  // CodeSha256. Throws Error(InvalidParameterValueException) for a zip unzip cannot read.
  std::string add_zip(std::string_view zip);

  // The directory holding `config`'s unpacked code, obtaining it first when needed. Throws
  // Error("ServiceException", HTTP 500) when the code cannot be found, with a message saying how
  // to make it available, and Error(InvalidParameterValueException) when it is not a zip.
  std::filesystem::path unpacked(const FunctionConfig& config);

  // base64(SHA-256(data)): Lambda's CodeSha256.
  static std::string code_sha256(std::string_view data);

 private:
  std::filesystem::path dir_for(std::string_view code_sha256) const;
  std::string fetch_zip(const FunctionConfig& config) const;
  void unpack(std::string_view zip, const std::filesystem::path& target) const;

  std::filesystem::path dir_;
  std::shared_ptr<const MotoClient> moto_;
  std::mutex mutex_;  // one fetch/unpack at a time; lookups of unpacked code take no lock
};

// Lambda's error for a function it cannot run (ServiceException, HTTP 500).
Error service_error(std::string message);

}  // namespace rstasker::local
