// A Lambda zip (target lambda-zip, or lambda-zip-arm64 for lambda_zip_arm64_test) works on its
// own: unpacked into an otherwise empty root that holds nothing but the zip, a static shell, a CA
// bundle at Amazon Linux 2023's path and an /etc/hosts, its bootstrap answers the Runtime API and
// loads its bundled libcurl to call an AWS endpoint over TLS by host name. That is what a
// Debian-built zip needs to run on Amazon Linux 2023. A zip for another CPU runs under
// qemu-user-static, registered with binfmt_misc in the test's own user namespace only.
#include <elf.h>
#include <gtest/gtest.h>
#include <httplib.h>
#include <sys/utsname.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
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
// Why there is no zip to test, when RSTASKER_LAMBDA_ZIP is empty.
#ifndef RSTASKER_LAMBDA_ZIP_MISSING
#define RSTASKER_LAMBDA_ZIP_MISSING "Lambda has no runtime for this processor"
#endif

namespace rstasker::testing {
namespace {

namespace fs = std::filesystem;
using namespace std::chrono_literals;

constexpr std::uintmax_t kMaxZipBytes = 10 * 1024 * 1024;
// The Data API endpoint's name: only the root's /etc/hosts knows it.
constexpr const char* kEndpointHost = "data-api.tasker.test";
// Where Amazon Linux 2023 (Lambda's provided.al2023) keeps its CA bundle.
constexpr const char* kAmazonLinuxCaBundle = "etc/pki/tls/certs/ca-bundle.crt";

struct ElfFacts {
  bool valid = false;
  bool is_static = true;  // no PT_INTERP
  std::uint16_t machine = EM_NONE;
};

ElfFacts read_elf(const fs::path& path) {
  ElfFacts facts;
  std::ifstream in(path, std::ios::binary);
  Elf64_Ehdr header{};
  if (!in.read(reinterpret_cast<char*>(&header), sizeof header)) return facts;
  if (std::string_view(reinterpret_cast<const char*>(header.e_ident), 4) !=
          "\x7f"
          "ELF" ||
      header.e_ident[EI_CLASS] != ELFCLASS64) {
    return facts;
  }
  facts.machine = header.e_machine;
  for (int i = 0; i < header.e_phnum; ++i) {
    Elf64_Phdr program{};
    in.seekg(static_cast<std::streamoff>(header.e_phoff + i * header.e_phentsize));
    if (!in.read(reinterpret_cast<char*>(&program), sizeof program)) return facts;
    if (program.p_type == PT_INTERP) facts.is_static = false;
  }
  facts.valid = true;
  return facts;
}

std::uint16_t host_machine() {
  utsname name{};
  ::uname(&name);
  return std::string_view(name.machine) == "aarch64" ? EM_AARCH64 : EM_X86_64;
}

// The binfmt_misc rule that hands this machine's ELF executables to qemu-user-static
// (magic and mask of the ELF header's class, data, type and machine fields), with the F flag: the
// interpreter is opened now, so it need not exist inside the root.
std::string binfmt_rule(std::uint16_t machine, const fs::path& qemu) {
  const std::string machine_byte = machine == EM_AARCH64 ? "\\xb7" : "\\x3e";
  return ":rstasker-qemu:M::\\x7fELF\\x02\\x01\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x00"
         "\\x02\\x00" +
         machine_byte +
         "\\x00:\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\x00\\xff\\xff\\xff\\xff\\xff\\xff\\xff\\xff"
         "\\xfe\\xff\\xff\\xff:" +
         qemu.string() + ":F";
}

// A CA and a certificate it signed for kEndpointHost, made with the openssl command for this
// test run (no key is ever committed); and a second CA that signed nothing.
struct TestPki {
  fs::path ca_cert, server_cert, server_key, other_ca_cert;

  static std::optional<std::string> make(const fs::path& dir, TestPki* out) {
    auto openssl = find_program("openssl");
    if (!openssl) return "the openssl command is needed (Debian: apt-get install openssl)";
    fs::create_directories(dir);
    TestPki pki{dir / "ca.crt", dir / "server.crt", dir / "server.key", dir / "other-ca.crt"};
    const std::vector<std::string> new_key = {
        "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "2"};
    auto run = [&](std::vector<std::string> argv) {
      argv.insert(argv.begin(), openssl->string());
      argv.insert(argv.end(), new_key.begin(), new_key.end());
      return run_to_completion({.argv = argv, .log_name = "openssl"}, 30s) == 0;
    };
    bool made = run({"req", "-x509", "-subj", "/CN=rstasker test CA", "-keyout",
                     (dir / "ca.key").string(), "-out", pki.ca_cert.string()}) &&
                run({"req", "-x509", "-subj", std::string("/CN=") + kEndpointHost, "-addext",
                     std::string("subjectAltName=DNS:") + kEndpointHost, "-addext",
                     "basicConstraints=critical,CA:FALSE", "-CA", pki.ca_cert.string(), "-CAkey",
                     (dir / "ca.key").string(), "-keyout", pki.server_key.string(), "-out",
                     pki.server_cert.string()}) &&
                run({"req", "-x509", "-subj", "/CN=rstasker unrelated CA", "-keyout",
                     (dir / "other-ca.key").string(), "-out", pki.other_ca_cert.string()});
    if (!made) throw std::runtime_error("openssl could not make the test certificates");
    *out = pki;
    return std::nullopt;
  }
};

// A Redshift Data API endpoint over TLS on a loopback port that knows no statement: every call is
// answered 400 ResourceNotFoundException, as the real API answers DescribeStatement of an unknown
// id.
class UnknownStatementEndpoint {
 public:
  explicit UnknownStatementEndpoint(const TestPki& pki)
      : server_(pki.server_cert.c_str(), pki.server_key.c_str()) {
    if (!server_.is_valid()) throw std::runtime_error("the TLS server cannot load its certificate");
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
    httplib::SSLClient probe("127.0.0.1", port_);
    probe.set_ca_cert_path(pki.ca_cert.c_str());
    probe.enable_server_certificate_verification(false);  // it is 127.0.0.1, not kEndpointHost
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

  std::string url() const {
    return std::string("https://") + kEndpointHost + ":" + std::to_string(port_);
  }
  // The X-Amz-Target of every request so far (the readiness probe aside); whether all of them
  // were SigV4-signed.
  std::vector<std::string> targets() const {
    std::lock_guard lock(mutex_);
    return targets_;
  }
  bool all_signed() const {
    std::lock_guard lock(mutex_);
    return signed_;
  }

 private:
  httplib::SSLServer server_;
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
  *status = run_to_completion(options, 60s);
  return read_file(log);
}

class LambdaZip : public ::testing::Test {
 protected:
  void SetUp() override {
    zip_ = RSTASKER_LAMBDA_ZIP;
    RSTASKER_SKIP_IF_UNAVAILABLE(zip_.empty()
                                     ? std::optional<std::string>(std::string("no zip to test: ") +
                                                                  RSTASKER_LAMBDA_ZIP_MISSING)
                                     : std::nullopt);
    ASSERT_TRUE(fs::exists(zip_)) << zip_ << " is missing; build its lambda-zip target";
    auto unzip = find_program("unzip");
    RSTASKER_SKIP_IF_UNAVAILABLE(unzip ? std::nullopt
                                       : std::optional<std::string>("unzip is not installed"));
    scratch_ = fs::temp_directory_path() / ("rstasker-lambda-zip." + std::to_string(::getpid()));
    root_ = scratch_ / "root";
    fs::remove_all(scratch_);
    fs::create_directories(root_);
    ASSERT_EQ(
        run_to_completion({.argv = {unzip->string(), "-q", zip_.string(), "-d", root_.string()}}),
        0);
    ElfFacts binary = read_elf(root_ / "bin" / "redshift-tasker");
    ASSERT_TRUE(binary.valid) << "bin/redshift-tasker is not a 64-bit ELF file";
    machine_ = binary.machine;
    for (const auto& entry : fs::directory_iterator(root_ / "lib")) {
      if (entry.path().filename().string().starts_with("ld-linux")) loader_ = entry.path();
    }
  }

  void TearDown() override {
    if (!scratch_.empty()) fs::remove_all(scratch_);
  }

  bool foreign() const { return machine_ != host_machine(); }

  // Sets `prefix` to a command prefix that runs a program with `root_` as "/" (a zip for another
  // CPU through qemu-user-static), or says why there is none here.
  std::optional<std::string> find_isolation(std::vector<std::string>* prefix) {
    std::vector<std::vector<std::string>> candidates;
    auto unshare = find_program("unshare");
    if (foreign()) {
      const char* qemu_name = machine_ == EM_AARCH64 ? "qemu-aarch64-static" : "qemu-x86_64-static";
      auto qemu = find_program(qemu_name);
      auto chroot = find_program("chroot");
      auto mount = find_program("mount");
      if (!qemu) {
        return std::string(qemu_name) + " is needed (Debian: apt-get install qemu-user-static)";
      }
      // A private user and mount namespace gets its own binfmt_misc (Linux 6.7 and later):
      // qemu is registered there only, then the shell enters the root.
      if (unshare && chroot && mount) {
        fs::create_directories(scratch_ / "binfmt");
        candidates.push_back(
            {unshare->string(), "--user", "--map-root-user", "--mount", "/bin/sh", "-c",
             R"("$1" -t binfmt_misc binfmt_misc "$2" && printf '%s' "$3" > "$2/register" &&)"
             R"( chroot=$4 root=$5 && shift 5 && exec "$chroot" "$root" "$@")",
             "isolate", mount->string(), (scratch_ / "binfmt").string(),
             binfmt_rule(machine_, *qemu), chroot->string(), root_.string()});
      }
    } else {
      if (auto chroot = find_program("chroot"); chroot && ::geteuid() == 0) {
        candidates.push_back({chroot->string(), root_.string()});
      }
      if (unshare) {
        candidates.push_back(
            {unshare->string(), "--user", "--map-root-user", "--root=" + root_.string()});
      }
    }
    for (const auto& candidate : candidates) {
      std::vector<std::string> probe = candidate;
      probe.insert(probe.end(), {"/lib/" + loader_.filename().string(), "--version"});
      if (run_to_completion({.argv = probe, .log_name = "isolation-probe"}, 30s) == 0) {
        *prefix = candidate;
        return std::nullopt;
      }
    }
    return foreign() ? "cannot run another CPU's program in a private root here (needs user "
                       "namespaces and a binfmt_misc of their own: Linux 6.7 or later)"
                     : "cannot run a program in a private root here (needs root for chroot, or "
                       "user namespaces for unshare --user --root)";
  }

  // Puts a static shell at /bin/sh, kEndpointHost at 127.0.0.1 in /etc/hosts (looked up in
  // files only, as on Amazon Linux), and `ca` at Amazon Linux 2023's CA bundle path; or says why
  // it cannot.
  std::optional<std::string> furnish_root(const fs::path& ca) {
    auto busybox = find_program("busybox");
    if (!busybox && fs::exists("/bin/busybox")) busybox = "/bin/busybox";
    ElfFacts facts = busybox ? read_elf(*busybox) : ElfFacts{};
    if (!facts.valid || !facts.is_static) {
      return "a static busybox is needed (Debian: busybox-static)";
    }
    fs::copy_file(*busybox, root_ / "bin" / "sh");
    fs::permissions(root_ / "bin" / "sh",
                    fs::perms::owner_all | fs::perms::group_exec | fs::perms::others_exec);
    fs::create_directories(root_ / "etc");
    std::ofstream(root_ / "etc" / "hosts") << "127.0.0.1 localhost\n"
                                           << "127.0.0.1 " << kEndpointHost << "\n";
    std::ofstream(root_ / "etc" / "nsswitch.conf") << "hosts: files\n";
    fs::create_directories((root_ / kAmazonLinuxCaBundle).parent_path());
    fs::copy_file(ca, root_ / kAmazonLinuxCaBundle, fs::copy_options::overwrite_existing);
    return std::nullopt;
  }

  // The function's environment: a complete configuration, AWS calls to `endpoint`.
  static std::vector<std::string> function_env(const RuntimeApiServer& api,
                                               const std::string& endpoint) {
    return {"AWS_LAMBDA_RUNTIME_API=" + api.address(),
            "CLUSTER_IDENTIFIER=cluster-1",
            "DATABASE=dev",
            "DB_USER=admin",
            "DDB_TABLE_NAME=state",
            "AWS_REGION=us-east-1",
            "AWS_ACCESS_KEY_ID=AKIDEXAMPLE",
            "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY",
            "AWS_ENDPOINT_URL=" + endpoint,
            "LOG_LEVEL=INFO"};
  }

  // `env -i <environment> <isolation> /bootstrap <arguments>`.
  std::vector<std::string> bootstrap_argv(const std::vector<std::string>& environment,
                                          const std::vector<std::string>& isolate,
                                          const std::vector<std::string>& arguments = {}) {
    auto env = find_program("env");
    if (!env) throw std::runtime_error("env is not installed");
    std::vector<std::string> argv = {env->string(), "-i"};
    argv.insert(argv.end(), environment.begin(), environment.end());
    argv.insert(argv.end(), isolate.begin(), isolate.end());
    argv.push_back("/bootstrap");
    argv.insert(argv.end(), arguments.begin(), arguments.end());
    return argv;
  }

  static FakeInvocation describe_statement(const std::string& id) {
    FakeInvocation event;
    event.request_id = id;
    event.payload =
        R"({"action":"describeStatement","statementId":"6c1d3e8a-2f4b-4c5d-9e6f-7a8b9c0d1e2f"})";
    return event;
  }

  fs::path zip_;
  fs::path scratch_;  // root_, the certificates and the private binfmt_misc mount point
  fs::path root_;
  fs::path loader_;
  std::uint16_t machine_ = EM_NONE;
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
  EXPECT_FALSE(loader_.empty()) << "the dynamic loader is not bundled";
  EXPECT_TRUE(fs::is_regular_file(root_ / "lib" / "libc.so.6"))
      << "glibc is not bundled (Amazon Linux 2023 has an older one)";
  EXPECT_TRUE(fs::is_regular_file(root_ / "lib" / "libcurl.so.4"));
  for (const auto& entry : fs::recursive_directory_iterator(root_ / "lib")) {
    if (!entry.is_regular_file()) continue;
    ElfFacts facts = read_elf(entry.path());
    EXPECT_TRUE(facts.valid && facts.machine == machine_)
        << entry.path().filename() << " is not a library for the binary's CPU";
  }
}

TEST_F(LambdaZip, CarriesOnlyLibrariesTheLoaderMaps) {
  std::vector<std::string> isolate;
  RSTASKER_SKIP_IF_UNAVAILABLE(find_isolation(&isolate));
  // What the loader maps for the binary and for libcurl (loaded at the first AWS call).
  std::set<std::string> mapped = {loader_.filename().string()};
  for (const char* object : {"/bin/redshift-tasker", "/lib/libcurl.so.4"}) {
    std::vector<std::string> argv = isolate;
    argv.insert(argv.end(), {"/lib/" + loader_.filename().string(), "--library-path", "/lib",
                             "--list", object});
    int status = -1;
    std::string out = output_of({.argv = argv}, &status);
    ASSERT_EQ(status, 0) << out;
    std::istringstream lines(out);
    for (std::string line; std::getline(lines, line);) {
      std::istringstream words(line);
      std::string name, arrow, path;
      words >> name >> arrow >> path;
      EXPECT_EQ(line.find("not found"), std::string::npos) << object << ": " << line;
      if (arrow == "=>" && path.starts_with("/lib/")) mapped.insert(fs::path(path).filename());
    }
  }
  std::set<std::string> bundled;
  for (const auto& entry : fs::directory_iterator(root_ / "lib")) {
    bundled.insert(entry.path().filename());
  }
  mapped.insert("libcurl.so.4");
  EXPECT_EQ(bundled, mapped) << "lib/ should hold exactly what the loader maps";
}

TEST_F(LambdaZip, BootstrapVersionRunsWithAnEmptyEnvironment) {
  auto env = find_program("env");
  ASSERT_TRUE(env.has_value());
  std::vector<std::string> argv = {env->string(), "-i"};
  if (foreign()) {  // the bootstrap's own command line: binfmt_misc is not assumed outside a root
    auto qemu = find_program(machine_ == EM_AARCH64 ? "qemu-aarch64-static" : "qemu-x86_64-static");
    RSTASKER_SKIP_IF_UNAVAILABLE(
        qemu ? std::nullopt : std::optional<std::string>("qemu-user-static is not installed"));
    argv.insert(argv.end(),
                {qemu->string(), loader_.string(), "--library-path", (root_ / "lib").string(),
                 (root_ / "bin" / "redshift-tasker").string(), "--version"});
  } else {
    argv.insert(argv.end(), {(root_ / "bootstrap").string(), "--version"});
  }
  int status = -1;
  std::string out = output_of({.argv = argv}, &status);
  EXPECT_EQ(status, 0) << out;
  EXPECT_TRUE(out.starts_with("redshift-tasker ")) << out;
}

TEST_F(LambdaZip, AnswersInvocationsAndCallsAwsOverTlsByHostNameInAnIsolatedRoot) {
  TestPki pki;
  RSTASKER_SKIP_IF_UNAVAILABLE(TestPki::make(scratch_ / "pki", &pki));
  RSTASKER_SKIP_IF_UNAVAILABLE(furnish_root(pki.ca_cert));
  std::vector<std::string> isolate;
  RSTASKER_SKIP_IF_UNAVAILABLE(find_isolation(&isolate));

  // Inside the root: `bootstrap --version` alone.
  int status = -1;
  std::string out = output_of({.argv = bootstrap_argv({}, isolate, {"--version"})}, &status);
  EXPECT_EQ(status, 0) << out;
  EXPECT_TRUE(out.starts_with("redshift-tasker ")) << out;

  // The runtime loop against the fake Runtime API (same network namespace: 127.0.0.1 works). The
  // first two events are refused before any AWS call; the third calls the Data API by its host
  // name over TLS, so the bundled libcurl is loaded (at the first AWS call), the name is resolved
  // through the root's /etc/hosts and the certificate verified with the root's CA bundle.
  RuntimeApiServer api;
  UnknownStatementEndpoint data_api(pki);
  FakeInvocation bad_action;
  bad_action.request_id = "bad-action";
  bad_action.payload = R"({"action":"noSuchAction"})";
  api.enqueue(bad_action);
  FakeInvocation not_json;
  not_json.request_id = "not-json";
  not_json.payload = "this is not JSON";
  api.enqueue(not_json);
  api.enqueue(describe_statement("aws-call"));
  const auto started = std::chrono::steady_clock::now();
  Process function({.argv = bootstrap_argv(function_env(api, data_api.url()), isolate),
                    .log_name = "bootstrap"});

  // A smoke figure, not a measurement (emulated for another CPU, on a shared test machine).
  if (auto first_next = api.wait_for_first_next(60s)) {
    auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(*first_next - started);
    RecordProperty("start_to_first_next_ms", std::to_string(ms.count()));
    std::cout << "start to the first GET /next: " << ms.count() << " ms"
              << (foreign() ? " (under qemu-user-static emulation)" : "") << "\n";
  }
  for (const char* id : {"bad-action", "not-json"}) {
    auto outcome = api.wait_for_outcome(id, 60s);
    ASSERT_TRUE(outcome.has_value()) << "no answer to " << id << "; log:\n" << function.log_tail();
    EXPECT_EQ(outcome->kind, PostedOutcome::Kind::kError) << outcome->body;
    EXPECT_EQ(outcome->error_type, "InvalidRequest") << outcome->body;
    Json body = Json::parse(outcome->body);
    EXPECT_EQ(body.value("errorType", ""), "InvalidRequest") << outcome->body;
  }
  // The AWS call reached the endpoint and its answer came back: the endpoint's error, not a
  // ConfigurationError about a library, a host name or a certificate.
  auto outcome = api.wait_for_outcome("aws-call", 60s);
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

TEST_F(LambdaZip, AnEndpointItsCaBundleDoesNotVouchForIsAConfigurationErrorNotRetried) {
  TestPki pki;
  RSTASKER_SKIP_IF_UNAVAILABLE(TestPki::make(scratch_ / "pki", &pki));
  // The endpoint's certificate comes from a CA the bundle does not hold.
  RSTASKER_SKIP_IF_UNAVAILABLE(furnish_root(pki.other_ca_cert));
  std::vector<std::string> isolate;
  RSTASKER_SKIP_IF_UNAVAILABLE(find_isolation(&isolate));

  RuntimeApiServer api;
  UnknownStatementEndpoint data_api(pki);
  api.enqueue(describe_statement("wrong-ca"));
  Process function({.argv = bootstrap_argv(function_env(api, data_api.url()), isolate),
                    .log_name = "bootstrap"});
  auto outcome = api.wait_for_outcome("wrong-ca", 60s);
  ASSERT_TRUE(outcome.has_value()) << "no answer; log:\n" << function.log_tail();
  EXPECT_EQ(outcome->kind, PostedOutcome::Kind::kError) << outcome->body;
  EXPECT_EQ(outcome->error_type, "ConfigurationError") << outcome->body;
  const std::string message = Json::parse(outcome->body).value("errorMessage", "");
  EXPECT_NE(message.find("certificate"), std::string::npos) << message;
  EXPECT_NE(message.find(kEndpointHost), std::string::npos) << message;
  EXPECT_NE(message.find("/etc/pki/tls/certs/ca-bundle.crt"), std::string::npos) << message;
  // Refused at the TLS handshake, and not tried again.
  EXPECT_TRUE(data_api.targets().empty());
  function.stop();
  EXPECT_EQ(read_file(function.log_path()).find("retry"), std::string::npos) << function.log_tail();
  api.stop();
}

}  // namespace
}  // namespace rstasker::testing
