// Cold start of the redshift-tasker binary as Lambda sees it: from exec to its first
// GET /runtime/invocation/next on a local Runtime API, over many runs, with the peak RSS of each
// process through one invocation. Prints one JSON line.
//
// Usage: cold_start <path-to-redshift-tasker> [runs]
#include <fcntl.h>
#include <spawn.h>
#include <sys/resource.h>
#include <sys/wait.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "rstasker/common/json.hpp"
#include "support/runtime_api_server.hpp"

extern char** environ;

namespace {

using Clock = std::chrono::steady_clock;

struct Run {
  double start_ms;
  long peak_rss_kib;
};

template <class T>
T percentile(std::vector<T> values, double p) {
  std::sort(values.begin(), values.end());
  auto index = static_cast<std::size_t>(p * static_cast<double>(values.size() - 1) + 0.5);
  return values[index];
}

Run run_once(const std::string& binary, int i) {
  rstasker::testing::RuntimeApiServer api;
  rstasker::testing::FakeInvocation invocation;
  invocation.request_id = "cold-" + std::to_string(i);
  // Needs no AWS call: refused before anything is sent.
  invocation.payload = R"({"action":"describeStatement","statementId":"LATEST"})";
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
  std::vector<char*> env;
  for (auto& s : env_strings) env.push_back(s.data());
  env.push_back(nullptr);
  std::string arg0 = binary;
  char* argv[] = {arg0.data(), nullptr};

  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
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
  api.stop();  // the runtime sees the API go away and exits
  int status = 0;
  rusage usage{};
  wait4(pid, &status, 0, &usage);
  if (!first_next || !outcome || outcome->error_type != "InvalidRequest") {
    std::fprintf(stderr, "run %d: the binary did not behave (status %d)\n", i, status);
    std::exit(1);
  }
  return {std::chrono::duration<double, std::milli>(*first_next - started).count(),
          usage.ru_maxrss};
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s <redshift-tasker> [runs]\n", argv[0]);
    return 2;
  }
  int runs = argc > 2 ? std::stoi(argv[2]) : 25;
  run_once(argv[1], -1);  // warm the page cache, as a Lambda host would have it
  std::vector<double> starts;
  std::vector<long> rss;
  for (int i = 0; i < runs; ++i) {
    Run r = run_once(argv[1], i);
    starts.push_back(r.start_ms);
    rss.push_back(r.peak_rss_kib);
  }
  rstasker::Json out = {{"runs", runs},
                        {"cold_start_ms_median", percentile(starts, 0.5)},
                        {"cold_start_ms_p90", percentile(starts, 0.9)},
                        {"cold_start_ms_min", percentile(starts, 0.0)},
                        {"peak_rss_mib_median", percentile(rss, 0.5) / 1024.0},
                        {"peak_rss_mib_max", percentile(rss, 1.0) / 1024.0}};
  std::printf("%s\n", out.dump().c_str());
  return 0;
}
