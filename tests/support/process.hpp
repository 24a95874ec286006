// Child processes for tests that need a real server: start one with its output in a log file,
// wait until it listens, and be sure it and everything it started are gone afterwards.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace rstasker::testing {

struct ProcessOptions {
  // argv[0] without a '/' is looked up in PATH (the child's PATH, when `env` sets one).
  std::vector<std::string> argv{};
  // Added to (or replacing) the test's own environment.
  std::vector<std::pair<std::string, std::string>> env{};
  // Receives the child's stdout and stderr (truncated first). Empty: a new file
  // <build>/test-logs/<test binary>.<log_name>.<n>.log, n counting the test binary's processes.
  std::filesystem::path log_file{};
  // Stem for the default log file name; argv[0]'s file name when empty.
  std::string log_name{};
  // Run as this system user (setgid/setgroups/setuid before exec; HOME, USER and LOGNAME follow).
  // Only meaningful when the test runs as root; ignored otherwise.
  std::string run_as_user{};
  std::filesystem::path working_dir{};  // the test's own when empty
  // What stop() sends first (PostgreSQL wants SIGINT for a fast shutdown).
  int stop_signal = SIGTERM;
  // Start the log with a "# <argv...>" line (off when the log is the output a caller reads).
  bool log_command_line = true;
};

// One child process in its own process group. The destructor stops it (see stop()). The child
// also gets SIGKILL from the kernel when the thread that started it exits (PR_SET_PDEATHSIG), so a
// test binary that crashes or is killed by ctest's timeout leaves no server behind; start
// processes from a thread that outlives them (the test's main thread, in practice).
class Process {
 public:
  // Starts the child. Throws std::runtime_error when the log file cannot be opened, the program is
  // not found, or fork/exec fails (an exec failure is detected before the constructor returns).
  explicit Process(ProcessOptions options);
  ~Process();
  Process(const Process&) = delete;
  Process& operator=(const Process&) = delete;

  pid_t pid() const { return pid_; }
  const std::filesystem::path& log_path() const { return log_path_; }

  // Whether the child has not exited yet (reaps it when it has).
  bool is_running();
  // The exit code, or 128+signal when a signal ended it; nullopt while it runs.
  std::optional<int> exit_status();
  // Waits up to `timeout` for the child to exit on its own; its exit status, or nullopt.
  std::optional<int> wait_for_exit(std::chrono::milliseconds timeout);
  // Sends stop_signal to the process group, waits up to `grace` for the child to exit, then
  // SIGKILLs the group; the group is SIGKILLed afterwards in any case, so helpers the child left
  // behind go too. Idempotent; returns the exit status.
  int stop(std::chrono::milliseconds grace = std::chrono::seconds(5));

  // The last `max_bytes` of the log, for failure messages.
  std::string log_tail(std::size_t max_bytes = 4000) const;

 private:
  void record_exit(int wait_status);

  ProcessOptions options_;
  std::filesystem::path log_path_;
  pid_t pid_ = -1;
  std::optional<int> exit_status_;
  bool group_killed_ = false;
};

// Runs a program to completion (same options as Process) and returns its exit status; kills it
// and throws std::runtime_error when it takes longer than `timeout`.
int run_to_completion(ProcessOptions options,
                      std::chrono::milliseconds timeout = std::chrono::seconds(60));

// A TCP port on 127.0.0.1 that was free a moment ago (bound to port 0, then released). Another
// process may take it before the caller does; the kernel hands out ephemeral ports in rotation,
// so that is rare.
int free_tcp_port();

// Tries to connect to 127.0.0.1:`port` until it succeeds or `timeout` passes, backing off from
// 5 ms to 100 ms between attempts. Stops early (false) when `process` is given and has exited.
bool wait_for_tcp_port(int port, std::chrono::milliseconds timeout, Process* process = nullptr);

// Starts a server that listens on 127.0.0.1:<port> and waits until it does. `options_for(port)`
// gives the process options for a port from free_tcp_port(). Should the port be taken between
// free_tcp_port() and the server's bind (the server exits, its log saying "Address already in
// use"), it tries again with another port, up to `attempts` times. Sets `port`; throws
// std::runtime_error (with the log) when the server does not listen within `timeout`.
std::unique_ptr<Process> start_server(const std::function<ProcessOptions(int port)>& options_for,
                                      int& port, std::chrono::milliseconds timeout,
                                      int attempts = 3);

// Whether process `pid` (any process, not only a child) exists and has not exited: a zombie
// waiting for its parent to reap it counts as gone.
bool process_alive(pid_t pid);

// Waits up to `timeout` for process `pid` (any process) to exit, through a pidfd; whether it is
// gone (true at once when there is no such process).
bool await_process_exit(pid_t pid, std::chrono::milliseconds timeout);

// The processes alive (see process_alive) whose command line or working directory contains
// `text`, this process excepted.
std::vector<pid_t> processes_mentioning(const std::string& text);

// Where test logs go: <build>/test-logs (created on first use).
std::filesystem::path test_log_dir();

// Whether missing servers must fail tests rather than skip them (RSTASKER_REQUIRE_SERVERS=1; CI).
bool servers_required();

// Looks a program up in PATH; nullopt when absent.
std::optional<std::filesystem::path> find_program(const std::string& name);

// What this process writes to stderr (the installed logger's lines) while `body` runs.
std::string capture_stderr(const std::function<void()>& body);

}  // namespace rstasker::testing

// In a test body or SetUp(): when `reason` (an std::optional<std::string>) holds a value, skips the
// test with that reason, or fails it when servers are required.
#define RSTASKER_SKIP_IF_UNAVAILABLE(reason)                                              \
  do {                                                                                    \
    if (const std::optional<std::string> rstasker_why_ = (reason)) {                      \
      if (::rstasker::testing::servers_required()) {                                      \
        FAIL() << *rstasker_why_ << " (and RSTASKER_REQUIRE_SERVERS=1 forbids skipping)"; \
      }                                                                                   \
      GTEST_SKIP() << *rstasker_why_;                                                     \
    }                                                                                     \
  } while (false)
