// The Lambda zip (target lambda-zip) works on its own: unpacked into an otherwise empty root that
// holds nothing but the zip and a static shell, its bootstrap answers the Runtime API, and loads
// its bundled libcurl to call an AWS endpoint. That is what a Debian-built zip needs to run on
// Amazon Linux 2023.
#include <elf.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "rstasker/common/json.hpp"
#include "support/paths.hpp"
#include "support/process.hpp"
#include "support/runtime_api_server.hpp"

// httplib includes <resolv.h>, whose `#define p_type __p_type` would rename Elf64_Phdr's member.
#undef p_type

#ifndef RSTASKER_LAMBDA_ZIP
#define RSTASKER_LAMBDA_ZIP ""
#endif

namespace rstasker::testing {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

constexpr std::uintmax_t kMaxZipBytes = 10 * 1024 * 1024;

// Whether `path` is an ELF executable without a program interpreter (statically linked).
bool is_static_elf(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  Elf64_Ehdr header{};
  if (!in.read(reinterpret_cast<char*>(&header), sizeof header)) return false;
  if (std::string_view(reinterpret_cast<const char*>(header.e_ident), 4) !=
          "\x7f"
          "ELF" ||
      header.e_ident[EI_CLASS] != ELFCLASS64) {
    return false;
  }
  for (int i = 0; i < header.e_phnum; ++i) {
    Elf64_Phdr program{};
    in.seekg(static_cast<std::streamoff>(header.e_phoff + i * header.e_phentsize));
    if (!in.read(reinterpret_cast<char*>(&program), sizeof program)) return false;
    if (program.p_type == PT_INTERP) return false;
  }
  return true;
}

// A Redshift Data API endpoint on a loopback port that knows no statement: every call is answered
// 400 ResourceNotFoundException, as the real API answers DescribeStatement of an unknown id.
class UnknownStatementEndpoint {
 public:
  UnknownStatementEndpoint() {
    server_.Post("/", [this](const httplib::Request& request, httplib::Response& response) {
      {
        std::lock_guard lock(mutex_);
        targets_.push_back(request.get_header_value("X-Amz-Target"));
        signed_ = signed_ && request.get_header_value("Authorization").starts_with("AWS4-HMAC");
      }
      response.status = 400;
      response.set_content(R"({"__type":"com.amazonaws.redshiftdata#ResourceNotFoundException",)"
                           R"("Message":"Query does not exist."})",
                           "application/x-amz-json-1.1");
    });
    server_.Get("/ready", [](const httplib::Request&, httplib::Response& response) {
      response.set_content("ready", "text/plain");
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    if (port_ <= 0) throw std::runtime_error("cannot bind a port on 127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    // httplib::Server::stop() does nothing until the accept loop runs; one answered request
    // proves it does, so the destructor's stop() cannot be lost.
    httplib::Client probe("127.0.0.1", port_);
    if (!probe.Get("/ready")) {
      server_.stop();
      thread_.join();
      throw std::runtime_error("the fake Data API endpoint did not start");
    }
  }
  ~UnknownStatementEndpoint() {
    server_.stop();
    thread_.join();
  }
  UnknownStatementEndpoint(const UnknownStatementEndpoint&) = delete;
  UnknownStatementEndpoint& operator=(const UnknownStatementEndpoint&) = delete;

  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }
  // The X-Amz-Target of every request so far; whether all of them were SigV4-signed.
  std::vector<std::string> targets() const {
    std::lock_guard lock(mutex_);
    return targets_;
  }
  bool all_signed() const {
    std::lock_guard lock(mutex_);
    return signed_;
  }

 private:
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
  mutable std::mutex mutex_;
  std::vector<std::string> targets_;
  bool signed_ = true;
};

std::string output_of(ProcessOptions options, int* status) {
  options.log_command_line = false;
  auto log = test_log_dir() / ("lambda_zip_test." + std::to_string(::getpid()) + ".output.log");
  options.log_file = log;
  *status = run_to_completion(options, 30s);
  return read_file(log);
}

class LambdaZip : public ::testing::Test {
 protected:
  void SetUp() override {
    zip_ = RSTASKER_LAMBDA_ZIP;
    if (zip_.empty()) GTEST_SKIP() << "Lambda has no runtime for this processor: no zip to test";
    ASSERT_TRUE(fs::exists(zip_)) << zip_ << " is missing; build the lambda-zip target";
    auto unzip = find_program("unzip");
    RSTASKER_SKIP_IF_UNAVAILABLE(unzip ? std::nullopt
                                       : std::optional<std::string>("unzip is not installed"));
    root_ = fs::temp_directory_path() / ("rstasker-lambda-zip." + std::to_string(::getpid()));
    fs::remove_all(root_);
    fs::create_directories(root_);
    ASSERT_EQ(
        run_to_completion({.argv = {unzip->string(), "-q", zip_.string(), "-d", root_.string()}}),
        0);
  }

  void TearDown() override {
    if (!root_.empty()) fs::remove_all(root_);
  }

  // A command prefix that runs a program with `root_` as "/", or why there is none here.
  std::optional<std::string> find_isolation(std::vector<std::string>* prefix) {
    std::vector<std::vector<std::string>> candidates;
    if (auto chroot = find_program("chroot"); chroot && ::geteuid() == 0) {
      candidates.push_back({chroot->string(), root_.string()});
    }
    if (auto unshare = find_program("unshare")) {
      candidates.push_back(
          {unshare->string(), "--user", "--map-root-user", "--root=" + root_.string()});
    }
    for (const auto& candidate : candidates) {
      std::vector<std::string> probe = candidate;
      probe.insert(probe.end(), {"/bin/sh", "-c", "exit 0"});
      if (run_to_completion({.argv = probe}, 10s) == 0) {
        *prefix = candidate;
        return std::nullopt;
      }
    }
    return "cannot run a program in a private root here (needs root for chroot, or user "
           "namespaces for unshare --user --root)";
  }

  fs::path zip_;
  fs::path root_;
};

TEST_F(LambdaZip, HoldsBootstrapTheBinaryAndItsLibrariesWithinTheSizeBudget) {
  const auto size = fs::file_size(zip_);
  RecordProperty("zip_bytes", std::to_string(size));
  EXPECT_LE(size, kMaxZipBytes) << zip_ << " is " << size << " bytes";

  const fs::path bootstrap = root_ / "bootstrap";
  ASSERT_TRUE(fs::is_regular_file(bootstrap));
  EXPECT_NE(fs::status(bootstrap).permissions() & fs::perms::owner_exec, fs::perms::none);
  EXPECT_TRUE(read_file(bootstrap).starts_with("#!/bin/sh\n"));
  EXPECT_TRUE(fs::is_regular_file(root_ / "bin" / "redshift-tasker"));
  bool loader = false;
  bool libc = false;
  for (const auto& entry : fs::directory_iterator(root_ / "lib")) {
    const std::string name = entry.path().filename();
    loader = loader || name.starts_with("ld-linux");
    libc = libc || name == "libc.so.6";
  }
  EXPECT_TRUE(loader) << "the dynamic loader is not bundled";
  EXPECT_TRUE(libc) << "glibc is not bundled (Amazon Linux 2023 has an older one)";
}

TEST_F(LambdaZip, BootstrapVersionRunsWithAnEmptyEnvironment) {
  auto env = find_program("env");
  ASSERT_TRUE(env.has_value());
  int status = -1;
  std::string out = output_of(
      {.argv = {env->string(), "-i", (root_ / "bootstrap").string(), "--version"}}, &status);
  EXPECT_EQ(status, 0) << out;
  EXPECT_TRUE(out.starts_with("redshift-tasker ")) << out;
}

TEST_F(LambdaZip, AnswersAnInvocationInARootHoldingOnlyTheZipAndAStaticShell) {
  auto busybox = find_program("busybox");
  if (!busybox && fs::exists("/bin/busybox")) busybox = "/bin/busybox";
  RSTASKER_SKIP_IF_UNAVAILABLE(
      busybox && is_static_elf(*busybox)
          ? std::nullopt
          : std::optional<std::string>("a static busybox is needed (Debian: busybox-static)"));
  fs::copy_file(*busybox, root_ / "bin" / "sh");
  fs::permissions(root_ / "bin" / "sh",
                  fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec);
  std::vector<std::string> isolate;
  RSTASKER_SKIP_IF_UNAVAILABLE(find_isolation(&isolate));

  // Inside the root: `bootstrap --version` alone.
  auto env = find_program("env");
  ASSERT_TRUE(env.has_value());
  std::vector<std::string> version = {env->string(), "-i"};
  version.insert(version.end(), isolate.begin(), isolate.end());
  version.insert(version.end(), {"/bootstrap", "--version"});
  int status = -1;
  std::string out = output_of({.argv = version}, &status);
  EXPECT_EQ(status, 0) << out;
  EXPECT_TRUE(out.starts_with("redshift-tasker ")) << out;

  // The runtime loop against the fake Runtime API (same network namespace: 127.0.0.1 works). The
  // configuration is complete. The first two events are refused before any AWS call; the third
  // calls the Data API, so the bundled libcurl is loaded (lazily, at the first AWS call) and used.
  RuntimeApiServer api;
  UnknownStatementEndpoint data_api;
  FakeInvocation bad_action;
  bad_action.request_id = "bad-action";
  bad_action.payload = R"({"action":"noSuchAction"})";
  api.enqueue(bad_action);
  FakeInvocation not_json;
  not_json.request_id = "not-json";
  not_json.payload = "this is not JSON";
  api.enqueue(not_json);
  FakeInvocation aws_call;
  aws_call.request_id = "aws-call";
  aws_call.payload =
      R"({"action":"describeStatement","statementId":"6c1d3e8a-2f4b-4c5d-9e6f-7a8b9c0d1e2f"})";
  api.enqueue(aws_call);
  std::vector<std::string> argv = {env->string(),
                                   "-i",
                                   "AWS_LAMBDA_RUNTIME_API=" + api.address(),
                                   "CLUSTER_IDENTIFIER=cluster-1",
                                   "DATABASE=dev",
                                   "DB_USER=admin",
                                   "DDB_TABLE_NAME=state",
                                   "AWS_REGION=us-east-1",
                                   "AWS_ACCESS_KEY_ID=AKIDEXAMPLE",
                                   "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
                                   "AWS_ENDPOINT_URL=" + data_api.url(),
                                   "LOG_LEVEL=INFO"};
  argv.insert(argv.end(), isolate.begin(), isolate.end());
  argv.push_back("/bootstrap");
  Process function({.argv = argv, .log_name = "bootstrap"});

  for (const char* id : {"bad-action", "not-json"}) {
    auto outcome = api.wait_for_outcome(id, 20s);
    ASSERT_TRUE(outcome.has_value()) << "no answer to " << id << "; log:\n" << function.log_tail();
    EXPECT_EQ(outcome->kind, PostedOutcome::Kind::kError) << outcome->body;
    EXPECT_EQ(outcome->error_type, "InvalidRequest") << outcome->body;
    Json body = Json::parse(outcome->body);
    EXPECT_EQ(body.value("errorType", ""), "InvalidRequest") << outcome->body;
  }
  // The AWS call reached the endpoint and its answer came back: the endpoint's error, not a
  // ConfigurationError about a library that cannot be loaded.
  auto outcome = api.wait_for_outcome("aws-call", 20s);
  ASSERT_TRUE(outcome.has_value()) << "no answer to aws-call; log:\n" << function.log_tail();
  EXPECT_EQ(outcome->kind, PostedOutcome::Kind::kError) << outcome->body;
  EXPECT_EQ(outcome->error_type, "ResourceNotFoundException") << outcome->body << "\n"
                                                              << function.log_tail();
  EXPECT_NE(Json::parse(outcome->body).value("errorMessage", "").find("Query does not exist."),
            std::string::npos)
      << outcome->body;
  EXPECT_EQ(data_api.targets(), std::vector<std::string>{"RedshiftData.DescribeStatement"});
  EXPECT_TRUE(data_api.all_signed());
  EXPECT_FALSE(api.wait_for_init_error(0ms).has_value());
  EXPECT_TRUE(function.is_running()) << function.log_tail();
  function.stop();
  api.stop();
}

}  // namespace
}  // namespace rstasker::testing
