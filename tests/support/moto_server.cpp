// moto for tests: launcher start-up, readiness, and the IAM bootstrap for signature checking.
#include "support/moto_server.hpp"

#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cstdlib>
#include <fstream>
#include <mutex>
#include <sstream>
#include <stdexcept>

#include "rstasker/aws/json_client.hpp"
#include "rstasker/aws/sigv4.hpp"
#include "rstasker/common/error.hpp"
#include "support/paths.hpp"

namespace rstasker::testing {
namespace {

constexpr const char* kTestUser = "rstasker-test";
// CreateUser, PutUserPolicy, CreateAccessKey: the requests moto lets through unsigned.
constexpr int kBootstrapRequests = 3;
constexpr auto kStartTimeout = std::chrono::seconds(60);
constexpr auto kRequestTimeout = std::chrono::seconds(30);

std::string form_encode(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (unsigned char c : text) {
    if (std::isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out += static_cast<char>(c);
    } else {
      out += '%';
      out += kHex[c >> 4];
      out += kHex[c & 15];
    }
  }
  return out;
}

struct PythonProbe {
  std::optional<std::filesystem::path> executable;
  std::optional<std::string> unavailable;
};

// Asks python3 (or $RSTASKER_PYTHON) where it lives and whether moto and its server
// dependencies can be imported, without importing them (which would cost half a second).
PythonProbe probe_python() {
  const char* configured = std::getenv("RSTASKER_PYTHON");
  std::string interpreter = configured != nullptr && *configured != '\0' ? configured : "python3";
  if (interpreter.find('/') == std::string::npos && !find_program(interpreter)) {
    return {std::nullopt, interpreter +
                              " is not in PATH; moto tests need Python 3 with "
                              "moto[server] (pip install 'moto[server]')"};
  }
  ProcessOptions options;
  options.argv = {interpreter, "-c",
                  "import importlib.util as u, sys\n"
                  "print(sys.executable)\n"
                  "print(' '.join(m for m in ('moto', 'flask', 'flask_cors', 'werkzeug') "
                  "if u.find_spec(m) is None))\n"};
  options.log_file = test_log_dir() / ("python-probe." + std::to_string(::getpid()) + ".out");
  options.log_command_line = false;
  int status = -1;
  std::string failure;
  try {
    status = run_to_completion(options, std::chrono::seconds(30));
  } catch (const std::exception& e) {
    failure = e.what();
  }
  std::string executable;
  std::string missing;
  {
    std::ifstream in(options.log_file);
    std::getline(in, executable);
    std::getline(in, missing);
  }
  std::error_code ignored;
  std::filesystem::remove(options.log_file, ignored);
  if (!failure.empty()) return {std::nullopt, interpreter + " does not run: " + failure};
  if (status != 0 || executable.empty()) {
    return {std::nullopt, interpreter + " does not run (status " + std::to_string(status) + ")"};
  }
  if (!missing.empty()) {
    return {executable, executable + " cannot import " + missing +
                            "; moto tests need pip install 'moto[server]'"};
  }
  return {std::filesystem::path(executable), std::nullopt};
}

const PythonProbe& python_probe() {
  static const PythonProbe probe = probe_python();
  return probe;
}

}  // namespace

std::optional<std::string> MotoServer::unavailable_reason() {
  const auto& probe = python_probe();
  if (probe.unavailable) return probe.unavailable;
  auto launcher = source_dir() / "scripts" / "moto_launcher.py";
  if (!std::filesystem::exists(launcher)) return "missing " + launcher.string();
  return std::nullopt;
}

std::optional<std::filesystem::path> MotoServer::python() {
  return python_probe().executable;
}

MotoServer::MotoServer(MotoOptions options) : transport_(aws::make_curl_transport()) {
  if (auto why = unavailable_reason()) throw std::runtime_error(*why);

  auto options_for = [&](int port) {
    ProcessOptions process;
    process.argv = {python()->string(),
                    (source_dir() / "scripts" / "moto_launcher.py").string(),
                    "-H",
                    "127.0.0.1",
                    "-p",
                    std::to_string(port)};
    process.log_name = "moto";
    process.env = {{"MOTO_PORT", std::to_string(options.moto_port ? options.moto_port : port)},
                   // Moto's own boto3 clients must never see a developer's real credentials.
                   {"AWS_ACCESS_KEY_ID", "moto-internal"},
                   {"AWS_SECRET_ACCESS_KEY", "moto-internal"},
                   {"AWS_DEFAULT_REGION", region_},
                   {"PYTHONUNBUFFERED", "1"}};
    if (options.signature_checking) {
      process.env.emplace_back("INITIAL_NO_AUTH_ACTION_COUNT", std::to_string(kBootstrapRequests));
    }
    for (const auto& entry : options.env) process.env.push_back(entry);
    return process;
  };
  process_ = start_server(options_for, port_, kStartTimeout);
  endpoint_ = "http://127.0.0.1:" + std::to_string(port_);

  if (options.signature_checking) {
    try {
      bootstrap_iam_user();
    } catch (...) {
      process_.reset();
      throw;
    }
  } else {
    // Moto accepts any key when it does not check signatures.
    credentials_ = {"AKIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY", ""};
  }
}

MotoServer::~MotoServer() = default;

void MotoServer::bootstrap_iam_user() {
  // Signed like any client's requests, with a placeholder key: moto checks nothing yet.
  const aws::Credentials placeholder{"AKIAIOSFODNN7EXAMPLE", "bootstrap", ""};
  const std::string version = "2010-05-08";
  query("iam", {{"Action", "CreateUser"}, {"UserName", kTestUser}, {"Version", version}},
        placeholder);
  query(
      "iam",
      {{"Action", "PutUserPolicy"},
       {"UserName", kTestUser},
       {"PolicyName", "allow-everything"},
       {"PolicyDocument",
        R"({"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"*","Resource":"*"}]})"},
       {"Version", version}},
      placeholder);
  std::string key =
      query("iam", {{"Action", "CreateAccessKey"}, {"UserName", kTestUser}, {"Version", version}},
            placeholder);
  credentials_ = {aws::xml_element(key, "AccessKeyId"), aws::xml_element(key, "SecretAccessKey"),
                  ""};
  if (credentials_.access_key_id.empty() || credentials_.secret_access_key.empty()) {
    throw Error(error_names::kInternalError, "CreateAccessKey answer has no key: " + key);
  }
}

aws::EnvLookup MotoServer::env() const {
  return [endpoint = endpoint_, region = region_,
          credentials = credentials_](std::string_view name) -> std::optional<std::string> {
    if (name == "AWS_ENDPOINT_URL") return endpoint;
    if (name == "AWS_REGION") return region;
    if (name == "AWS_ACCESS_KEY_ID") return credentials.access_key_id;
    if (name == "AWS_SECRET_ACCESS_KEY") return credentials.secret_access_key;
    if (name == "AWS_SESSION_TOKEN" && !credentials.session_token.empty()) {
      return credentials.session_token;
    }
    return std::nullopt;
  };
}

void MotoServer::enable_state_machine_execution() {
  aws::HttpRequest request;
  request.method = "POST";
  request.url = endpoint_ + "/moto-api/config";
  request.headers = {{"Content-Type", "application/json"}};
  request.body = R"({"stepfunctions": {"execute_state_machine": true}})";
  aws::HttpResponse response = transport_->send(request, Deadline::after(kRequestTimeout));
  if (response.status < 200 || response.status >= 300) {
    throw Error(
        error_names::kInternalError,
        "POST /moto-api/config answered " + std::to_string(response.status) + ": " + response.body);
  }
}

std::string MotoServer::query(std::string_view signing_name, const QueryParams& params,
                              const std::optional<aws::Credentials>& credentials) const {
  aws::HttpRequest request;
  request.method = "POST";
  request.url = endpoint_ + "/";
  request.headers = {{"Content-Type", "application/x-www-form-urlencoded; charset=utf-8"}};
  for (const auto& [name, value] : params) {
    if (!request.body.empty()) request.body += '&';
    request.body += form_encode(name) + "=" + form_encode(value);
  }
  aws::Signer signer(region_, std::string(signing_name));
  signer.sign(request, credentials.value_or(credentials_), std::chrono::system_clock::now());
  aws::HttpResponse response = transport_->send(request, Deadline::after(kRequestTimeout));
  if (response.status < 200 || response.status >= 300) throw aws::error_from_response(response);
  return response.body;
}

}  // namespace rstasker::testing
