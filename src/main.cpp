// redshift-tasker: argument parsing and wiring; the work happens in the modules.
#include <spdlog/spdlog.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <iterator>
#include <sstream>
#include <string>
#include <string_view>

#include "rstasker/aws/credentials.hpp"
#include "rstasker/aws/http.hpp"
#include "rstasker/common/error.hpp"
#include "rstasker/common/json.hpp"
#include "rstasker/common/log.hpp"
#include "rstasker/lambda/runtime.hpp"
#include "rstasker/tasker/events.hpp"
#include "rstasker/tasker/wiring.hpp"
#include "rstasker/version.hpp"

#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RSTASKER_LEAK_CHECKED 1
#endif
#elif defined(__SANITIZE_ADDRESS__)
#define RSTASKER_LEAK_CHECKED 1
#endif
#ifdef RSTASKER_LEAK_CHECKED
#include <pthread.h>
#include <sanitizer/lsan_interface.h>

#include <csignal>
#include <thread>
#endif

namespace {

#ifdef RSTASKER_LEAK_CHECKED
// Sanitizer builds (the tests) only: SIGTERM, which tasker-local sends an instance it stops as
// Lambda does, ends the process through LeakSanitizer's check, so a leak shows in the function's
// log instead of vanishing with the process. Release builds keep SIGTERM's default action.
// Called before any other thread exists, so every later thread inherits SIGTERM blocked and only
// this one receives it.
void leak_check_on_sigterm() {
  sigset_t terminate;
  sigemptyset(&terminate);
  sigaddset(&terminate, SIGTERM);
  if (pthread_sigmask(SIG_BLOCK, &terminate, nullptr) != 0) return;
  std::thread([terminate] {
    int received = 0;
    if (sigwait(&terminate, &received) != 0) return;
    __lsan_do_leak_check();  // a leak found ends the process here, with LeakSanitizer's status
    std::_Exit(0);
  }).detach();
}
#else
void leak_check_on_sigterm() {}
#endif

constexpr const char* kUsage =
    R"(redshift-tasker: run Amazon Redshift SQL for Step Functions and CloudFormation

Usage:
  redshift-tasker                  run as an AWS Lambda function (custom runtime; needs
                                   AWS_LAMBDA_RUNTIME_API, which Lambda sets)
  redshift-tasker invoke [FILE|-]  handle one event read from FILE or standard input, print the
                                   response JSON and exit 0; on error print
                                   {"errorType":...,"errorMessage":...} and exit 1
  redshift-tasker --help           show this help
  redshift-tasker --version        show the version, the commit and the architecture

Configuration comes from the environment, as in Lambda: CLUSTER_IDENTIFIER or WORKGROUP_NAME,
DATABASE, DB_USER or SECRET_ARN, DDB_TABLE_NAME, TTL, LOG_LEVEL, AWS_REGION, AWS credentials,
and AWS_ENDPOINT_URL[_<SERVICE>] to reach other endpoints (the local stack).
)";

// How long `invoke` may take: the longest a Lambda invocation may run.
constexpr std::chrono::minutes kInvokeTimeout{15};

int print_error(const std::string& type, const std::string& message) {
  // Bounded and redacted as the Runtime API's error would be.
  std::cout << rstasker::dump_json(
                   {{"errorType", type}, {"errorMessage", rstasker::log::bounded_message(message)}})
            << '\n';
  return 1;
}

int invoke(const char* path) {
  std::string payload;
  if (path == nullptr || std::string(path) == "-") {
    payload.assign(std::istreambuf_iterator<char>(std::cin), std::istreambuf_iterator<char>());
  } else {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
      return print_error(std::string(rstasker::error_names::kInvalidRequest),
                         std::string("cannot read event file ") + path);
    }
    std::ostringstream text;
    text << in.rdbuf();
    payload = text.str();
  }
  try {
    // A malformed event is refused before the configuration is read: InvalidRequest says what to
    // fix in the event even where no configuration is set.
    rstasker::tasker::CheckedEvent event = rstasker::tasker::read_event(payload);
    // Standard output carries the response: the metrics go with the log lines, to stderr.
    auto tasker = rstasker::tasker::make_tasker(rstasker::aws::process_env(),
                                                rstasker::aws::make_curl_transport(), stderr);
    auto context =
        rstasker::aws::CallContext::for_invocation(rstasker::Deadline::after(kInvokeTimeout));
    std::cout << rstasker::dump_json(tasker->handle(event, context)) << '\n';
    return 0;
  } catch (const rstasker::Error& e) {
    return print_error(e.name(), e.message());
  } catch (const std::exception& e) {
    return print_error(std::string(rstasker::error_names::kInternalError), e.what());
  }
}

// Reports a failed initialisation once through /runtime/init/error (Lambda then shows it and
// stops the sandbox) and returns the exit code. The process exits either way.
int report_init_error(rstasker::lambda::RuntimeClient& client, std::string_view type,
                      std::string_view message) {
  spdlog::critical("initialisation failed: {}: {}", type, message);
  try {
    client.post_init_error(type, message);
  } catch (const std::exception& e) {
    spdlog::error("could not report the initialisation failure to the Runtime API: {}", e.what());
  }
  return 1;
}

int run_lambda(const char* runtime_api) {
  leak_check_on_sigterm();
  // The Runtime API is plain HTTP on the loopback interface: no need to load libcurl to reach it.
  rstasker::lambda::RuntimeClient client(runtime_api, rstasker::aws::make_plain_http_transport());
  std::unique_ptr<rstasker::tasker::Tasker> tasker;
  try {
    tasker = rstasker::tasker::make_tasker(rstasker::aws::process_env(),
                                           rstasker::aws::make_curl_transport());
  } catch (const rstasker::Error& e) {
    return report_init_error(client, e.name(), e.message());
  } catch (const std::exception& e) {
    return report_init_error(client, rstasker::error_names::kInternalError, e.what());
  } catch (...) {
    return report_init_error(client, rstasker::error_names::kInternalError,
                             "initialisation threw something that is not a std::exception");
  }
  return rstasker::lambda::run(client, [&tasker](const rstasker::lambda::Invocation& invocation) {
    // Work stops short of Lambda's deadline; the reserve is for cleanup and the outcome's post.
    auto context =
        rstasker::aws::CallContext::for_invocation(invocation.deadline, invocation.trace_id);
    return tasker->handle_payload(invocation.payload, context);
  });
}

}  // namespace

int main(int argc, char** argv) {
  // Debian's libcurl depends (through librtmp) on GnuTLS, whose constructor initialises it as
  // soon as the first AWS call loads libcurl, for nothing: TLS goes through OpenSSL. Declining
  // it saves about 0.9 MiB. Set here, before any thread exists (setenv is not thread-safe); a
  // value already in the environment is kept.
  ::setenv("GNUTLS_NO_IMPLICIT_INIT", "1", /*overwrite=*/0);
  std::string problems;
  rstasker::log::init(rstasker::log::settings_from_environment(&problems));
  if (!problems.empty()) spdlog::warn("{}", problems);

  std::string command = argc > 1 ? argv[1] : "";
  if (command == "--help" || command == "-h" || command == "help") {
    std::cout << kUsage;
    return 0;
  }
  if (command == "--version") {
    std::cout << "redshift-tasker " << rstasker::kVersion << " (commit " << rstasker::kCommit
              << ", " << rstasker::kArchitecture << ")\n";
    return 0;
  }
  if (command == "invoke") {
    if (argc > 3) {
      std::cerr << "invoke takes at most one argument (a file, or - for standard input)\n";
      return 2;
    }
    return invoke(argc == 3 ? argv[2] : nullptr);
  }
  if (!command.empty()) {
    std::cerr << "unknown command '" << command << "'\n\n" << kUsage;
    return 2;
  }
  if (const char* runtime_api = std::getenv("AWS_LAMBDA_RUNTIME_API");
      runtime_api && *runtime_api) {
    return run_lambda(runtime_api);
  }
  std::cerr << "AWS_LAMBDA_RUNTIME_API is not set: this is not a Lambda environment.\n\n" << kUsage;
  return 2;
}
