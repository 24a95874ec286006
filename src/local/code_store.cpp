// Obtaining and unpacking function zips.
#include "local/code_store.hpp"

#include <fcntl.h>
#include <openssl/sha.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <fstream>
#include <system_error>
#include <utility>
#include <vector>

#include "local/child_process.hpp"
#include "rstasker/common/error.hpp"
#include "rstasker/common/text.hpp"

namespace rstasker::local {
namespace {

constexpr auto kFetchTimeout = std::chrono::seconds(60);
constexpr auto kUnzipTimeout = std::chrono::seconds(120);

// The names inside <Name>...</Name> of a ListBuckets answer.
std::vector<std::string> bucket_names(std::string_view xml) {
  std::vector<std::string> names;
  std::size_t pos = 0;
  while ((pos = xml.find("<Name>", pos)) != std::string_view::npos) {
    pos += 6;
    const std::size_t end = xml.find("</Name>", pos);
    if (end == std::string_view::npos) break;
    names.emplace_back(xml.substr(pos, end - pos));
    pos = end;
  }
  return names;
}

std::string encode_key(std::string_view key) {
  std::string out;
  std::size_t pos = 0;
  while (true) {
    const std::size_t slash = key.find('/', pos);
    out +=
        encode_path_segment(key.substr(pos, slash == std::string_view::npos ? slash : slash - pos));
    if (slash == std::string_view::npos) break;
    out += '/';
    pos = slash + 1;
  }
  return out;
}

// unzip from PATH (Debian: /usr/bin/unzip; scripts/lib/deps.sh installs it).
std::string unzip_program() {
  const char* path = std::getenv("PATH");
  std::string_view dirs = path != nullptr ? path : "/usr/bin:/bin";
  std::size_t pos = 0;
  while (pos <= dirs.size()) {
    std::size_t end = dirs.find(':', pos);
    if (end == std::string_view::npos) end = dirs.size();
    std::filesystem::path candidate = std::filesystem::path(dirs.substr(pos, end - pos)) / "unzip";
    if (::access(candidate.c_str(), X_OK) == 0) return candidate.string();
    pos = end + 1;
  }
  throw Error("ServiceException", "unzip is not installed (apt-get install unzip)", 500);
}

}  // namespace

CodeStore::CodeStore(std::filesystem::path dir, std::shared_ptr<const MotoClient> moto)
    : dir_(std::move(dir)), moto_(std::move(moto)) {
  std::filesystem::create_directories(dir_);
}

std::string CodeStore::code_sha256(std::string_view data) {
  unsigned char digest[SHA256_DIGEST_LENGTH];
  SHA256(reinterpret_cast<const unsigned char*>(data.data()), data.size(), digest);
  return base64_encode(std::string_view(reinterpret_cast<const char*>(digest), sizeof digest));
}

std::filesystem::path CodeStore::dir_for(std::string_view code_sha256) const {
  std::string name;
  for (char c : code_sha256) {
    if (c == '+') {
      name += '-';
    } else if (c == '/') {
      name += '_';
    } else if (c != '=') {
      name += c;
    }
  }
  return dir_ / name;
}

std::string CodeStore::add_zip(std::string_view zip) {
  std::string sha = code_sha256(zip);
  std::filesystem::path target = dir_for(sha);
  std::lock_guard lock(mutex_);
  if (!std::filesystem::exists(target)) unpack(zip, target);
  return sha;
}

std::filesystem::path CodeStore::unpacked(const FunctionConfig& config) {
  if (config.code_sha256.empty()) {
    throw service_error("function " + config.name + " has no CodeSha256; it cannot be run");
  }
  std::filesystem::path target = dir_for(config.code_sha256);
  if (std::filesystem::exists(target)) return target;
  std::lock_guard lock(mutex_);
  if (std::filesystem::exists(target)) return target;
  std::string zip = fetch_zip(config);
  unpack(zip, target);
  return target;
}

std::string CodeStore::fetch_zip(const FunctionConfig& config) const {
  const Deadline deadline = Deadline::after(kFetchTimeout);
  const std::string& location = config.code_location;
  if (!location.empty() && location.find(".amazonaws.com") == std::string::npos) {
    aws::HttpRequest request;
    request.method = "GET";
    request.url = location;
    aws::HttpResponse response = moto_->transport()->send(request, deadline);
    if (response.status == 200 && code_sha256(response.body) == config.code_sha256) {
      return std::move(response.body);
    }
  }

  // The object key is Code.Location's path (moto names the function's S3Key there); the bucket
  // is whichever holds that key with the function's SHA-256.
  std::string key;
  if (auto scheme = location.find("://"); scheme != std::string::npos) {
    if (auto path = location.find('/', scheme + 3); path != std::string::npos) {
      key = decode_percent(location.substr(path + 1, location.find('?', path) - path - 1));
    }
  }
  std::string searched;
  if (!key.empty()) {
    aws::HttpResponse buckets = moto_->send("GET", "s3", "/", {}, deadline);
    if (buckets.status == 200) {
      for (const std::string& bucket : bucket_names(buckets.body)) {
        // Appended piece by piece: GCC 12 misreads `"/" + std::string&&` (-Wrestrict).
        std::string path = "/";
        path += encode_path_segment(bucket);
        path += '/';
        path += encode_key(key);
        aws::HttpResponse object = moto_->send("GET", "s3", path, {}, deadline);
        if (object.status == 200 && code_sha256(object.body) == config.code_sha256) {
          spdlog::info("function {}: code found in s3://{}/{}", config.name, bucket, key);
          return std::move(object.body);
        }
        searched += searched.empty() ? bucket : ", " + bucket;
      }
    }
  }
  throw service_error(
      "tasker-local cannot obtain the code of function " + config.name + " (CodeSha256 " +
      config.code_sha256 +
      "): moto does not serve it, it did not pass through the edge (CreateFunction or "
      "UpdateFunctionCode with ZipFile), and no S3 object named '" +
      key + "' with that SHA-256 is in moto's buckets (" + (searched.empty() ? "none" : searched) +
      "). Deploy the code from S3, create the function through tasker-local's port, or start "
      "tasker-local with --bootstrap PATH.");
}

void CodeStore::unpack(std::string_view zip, const std::filesystem::path& target) const {
  const std::string unique = random_uuid();
  const std::filesystem::path zip_path = dir_ / (".incoming-" + unique + ".zip");
  const std::filesystem::path staging = dir_ / (".incoming-" + unique);
  const std::filesystem::path log_path = dir_ / (".incoming-" + unique + ".log");
  auto cleanup = [&] {
    std::error_code ignored;
    std::filesystem::remove(zip_path, ignored);
    std::filesystem::remove(log_path, ignored);
    std::filesystem::remove_all(staging, ignored);
  };
  try {
    {
      std::ofstream out(zip_path, std::ios::binary);
      out.write(zip.data(), static_cast<std::streamsize>(zip.size()));
      if (!out) throw service_error("cannot write " + zip_path.string());
    }
    std::filesystem::create_directories(staging);
    const int log_fd = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    ChildSpec spec;
    spec.argv = {unzip_program(), "-q", "-o", zip_path.string(), "-d", staging.string()};
    spec.env = {"PATH=/usr/bin:/bin", "LANG=C"};
    spec.output_fd = log_fd;
    int status = -1;
    try {
      status = run_helper(spec, kUnzipTimeout);
    } catch (...) {
      if (log_fd >= 0) ::close(log_fd);
      throw;
    }
    if (log_fd >= 0) ::close(log_fd);
    if (status != 0) {
      std::ifstream in(log_path);
      std::string output((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
      throw Error("InvalidParameterValueException",
                  "Could not unzip uploaded file. Please check your file, then try to upload "
                  "again. (unzip: " +
                      truncate_utf8_bytes(output, 500) + ")",
                  400);
    }
    std::error_code renamed;
    std::filesystem::rename(staging, target, renamed);
    if (renamed && !std::filesystem::exists(target)) {
      throw service_error("cannot move unpacked code to " + target.string() + ": " +
                          renamed.message());
    }
  } catch (...) {
    cleanup();
    throw;
  }
  cleanup();
}

Error service_error(std::string message) {
  return Error("ServiceException", std::move(message), 500);
}

}  // namespace rstasker::local
