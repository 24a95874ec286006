// Cold start of the redshift-tasker binary as Lambda sees it: from exec to its first
// GET /runtime/invocation/next on a local Runtime API, over many runs, with the peak RSS of each
// process through one invocation. Two kinds of first invocation are measured: a malformed event
// (refused before any AWS call) and a describeStatement answered by a local fake Data API, which
// includes loading libcurl (deferred until the first AWS call) in the time to the response.
// Prints one JSON line.
//
// Usage: cold_start <path-to-redshift-tasker> [runs]
#include <fcntl.h>
#include <httplib.h>
#include <spawn.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <fstream>
#include <string>
#include <thread>
#include <vector>

#include "rstasker/common/json.hpp"
#include "support/runtime_api_server.hpp"

extern char** environ;

namespace {

using Clock = std::chrono::steady_clock;

struct Run {
  double start_ms;     // exec -> first GET /next
  double response_ms;  // exec -> the first invocation's outcome posted
  long peak_rss_kib;
};

// Answers every Data API call with a finished statement.
class FakeDataApi {
 public:
  FakeDataApi() {
    server_.Post("/", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(R"({"Id":"d9b6c0c2-1111-2222-3333-444455556666","Status":"FINISHED"})",
                      "application/x-amz-json-1.1");
    });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    while (!server_.is_running()) std::this_thread::yield();
  }
  ~FakeDataApi() {
    server_.stop();
    thread_.join();
  }
  std::string url() const { return "http://127.0.0.1:" + std::to_string(port_); }

 private:
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
};

// The peak resident set size of a running process (VmHWM), in KiB; -1 when unreadable.
long vm_hwm_kib(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(status, line);) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stol(line.substr(6));
  }
  return -1;
}

template <class T>
T percentile(std::vector<T> values, double p) {
  std::sort(values.begin(), values.end());
  auto index = static_cast<std::size_t>(p * static_cast<double>(values.size() - 1) + 0.5);
  return values[index];
}

Run run_once(const std::string& binary, int i, const FakeDataApi* data_api) {
  rstasker::testing::RuntimeApiServer api;
  rstasker::testing::FakeInvocation invocation;
  invocation.request_id = "cold-" + std::to_string(i);
  // Without a Data API: refused before anything is sent. With one: a real call.
  invocation.payload = data_api == nullptr
                           ? R"({"action":"describeStatement","statementId":"LATEST"})"
                           : R"({"action":"describeStatement","statementId":"d9b6c0c2"})";
  api.enqueue(invocation);

  // The environment Lambda gives a provided.al2023 function, minus what does not matter here.
  std::vector<std::string> env_strings = {
      "AWS_LAMBDA_RUNTIME_API=" + api.address(),
      "AWS_REGION=us-east-1",
      "AWS_ACCESS_KEY_ID=ASIAEXAMPLEEXAMPLE00",
      "AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY",
      "AWS_SESSION_TOKEN=IQoJb3JpZ2luX2VjEXAMPLETOKEN",
      "AWS_LAMBDA_FUNCTION_NAME=redshift-tasker",
      "AWS_LAMBDA_LOG_FORMAT=JSON",
      "LOG_LEVEL=ERROR",
      "CLUSTER_IDENTIFIER=bench",
      "DATABASE=dev",
      "DB_USER=bench",
      "DDB_TABLE_NAME=bench-state",
  };
  if (data_api != nullptr) env_strings.push_back("AWS_ENDPOINT_URL=" + data_api->url());
  std::vector<char*> env;
  for (auto& s : env_strings) env.push_back(s.data());
  env.push_back(nullptr);
  std::string arg0 = binary;
  char* argv[] = {arg0.data(), nullptr};

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  // Its logs and its EMF metrics (standard output) are not this program's answer.
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  auto started = Clock::now();
  pid_t pid = 0;
  if (posix_spawn(&pid, binary.c_str(), &actions, nullptr, argv, env.data()) != 0) {
    std::perror("posix_spawn");
    std::exit(1);
  }
  posix_spawn_file_actions_destroy(&actions);
  auto first_next = api.wait_for_first_next(std::chrono::seconds(10));
  auto outcome = api.wait_for_outcome(invocation.request_id, std::chrono::seconds(10));
  auto answered = Clock::now();
  // Read while the process waits for its next invocation. (wait4's ru_maxrss would not do: a
  // child started with vfork semantics, as posix_spawn does, inherits this process's peak.)
  const long peak_rss_kib = vm_hwm_kib(pid);
  api.stop();  // the runtime sees the API go away and exits
  int status = 0;
  waitpid(pid, &status, 0);
  bool expected =
      outcome &&
      (data_api == nullptr ? outcome->error_type == "InvalidRequest"
                           : outcome->kind == rstasker::testing::PostedOutcome::Kind::kResponse);
  if (!first_next || !expected) {
    std::fprintf(stderr, "run %d: the binary did not behave (status %d)\n", i, status);
    std::exit(1);
  }
  return {std::chrono::duration<double, std::milli>(*first_next - started).count(),
          std::chrono::duration<double, std::milli>(answered - started).count(), peak_rss_kib};
}

}  // namespace

rstasker::Json measure(const std::string& binary, int runs, const FakeDataApi* data_api) {
  run_once(binary, -1, data_api);  // warm the page cache, as a Lambda host would have it
  std::vector<double> starts, responses;
  std::vector<long> rss;
  for (int i = 0; i < runs; ++i) {
    Run r = run_once(binary, i, data_api);
    starts.push_back(r.start_ms);
    responses.push_back(r.response_ms);
    rss.push_back(r.peak_rss_kib);
  }
  return {{"cold_start_ms_median", percentile(starts, 0.5)},
          {"cold_start_ms_p90", percentile(starts, 0.9)},
          {"cold_start_ms_min", percentile(starts, 0.0)},
          {"first_response_ms_median", percentile(responses, 0.5)},
          {"peak_rss_mib_median", percentile(rss, 0.5) / 1024.0},
          {"peak_rss_mib_max", percentile(rss, 1.0) / 1024.0}};
}

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s <redshift-tasker> [runs]\n", argv[0]);
    return 2;
  }
  int runs = argc > 2 ? std::stoi(argv[2]) : 25;
  FakeDataApi data_api;
  rstasker::Json out = {{"runs", runs},
                        {"malformed_event", measure(argv[1], runs, nullptr)},
                        {"data_api_call", measure(argv[1], runs, &data_api)}};
  std::printf("%s\n", out.dump().c_str());
  return 0;
}
