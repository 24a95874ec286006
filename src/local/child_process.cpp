// fork + exec for tasker-local's children. Everything the child needs is prepared before fork():
// in a multi-threaded parent the child may only make async-signal-safe calls until exec.
#include "local/child_process.hpp"

#include <fcntl.h>
#include <linux/close_range.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cctype>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <thread>

#include "rstasker/common/error.hpp"

namespace rstasker::local {
namespace {

constexpr int kExecFailed = 127;

struct Fd {
  int fd = -1;
  ~Fd() {
    if (fd >= 0) ::close(fd);
  }
};

// In the child: marks every descriptor from 3 up close-on-exec (the exec-error pipe already is).
void close_inherited_descriptors(int keep) {
  if (::syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) == 0) return;
  const long limit = ::sysconf(_SC_OPEN_MAX);
  const int last = limit > 0 && limit < 65536 ? static_cast<int>(limit) : 65536;
  for (int fd = 3; fd < last; ++fd) {
    if (fd != keep) ::close(fd);
  }
}

}  // namespace

pid_t start_child(const ChildSpec& spec) {
  if (spec.argv.empty()) throw Error(error_names::kInternalError, "start_child without a program");
  std::vector<char*> argv;
  for (const std::string& arg : spec.argv) argv.push_back(const_cast<char*>(arg.c_str()));
  argv.push_back(nullptr);
  std::vector<char*> envp;
  for (const std::string& entry : spec.env) envp.push_back(const_cast<char*>(entry.c_str()));
  envp.push_back(nullptr);
  const std::string working_dir = spec.working_dir.string();

  Fd devnull{::open("/dev/null", O_RDWR | O_CLOEXEC)};
  int error_pipe[2];
  if (devnull.fd < 0 || ::pipe2(error_pipe, O_CLOEXEC) != 0) {
    throw Error(error_names::kInternalError,
                std::string("cannot prepare a child process: ") + std::strerror(errno));
  }
  Fd error_read{error_pipe[0]};
  Fd error_write{error_pipe[1]};
  const int output = spec.output_fd >= 0 ? spec.output_fd : devnull.fd;
  const pid_t parent = ::getpid();

  const pid_t pid = ::fork();
  if (pid < 0) {
    throw Error(error_names::kInternalError, std::string("fork failed: ") + std::strerror(errno));
  }
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    if (::getppid() != parent) ::_exit(kExecFailed);
    ::setpgid(0, 0);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    struct sigaction default_action {};
    default_action.sa_handler = SIG_DFL;
    for (int signal_number : {SIGPIPE, SIGINT, SIGTERM, SIGHUP, SIGCHLD, SIGQUIT}) {
      ::sigaction(signal_number, &default_action, nullptr);
    }
    ::dup2(devnull.fd, 0);
    ::dup2(output, 1);
    ::dup2(output, 2);
    int failure = 0;
    if (!working_dir.empty() && ::chdir(working_dir.c_str()) != 0) failure = errno;
    if (failure == 0) {
      close_inherited_descriptors(error_pipe[1]);
      ::execve(argv[0], argv.data(), envp.data());
      failure = errno;
    }
    [[maybe_unused]] auto ignored = ::write(error_pipe[1], &failure, sizeof failure);
    ::_exit(kExecFailed);
  }

  ::close(error_write.fd);
  error_write.fd = -1;
  int failure = 0;
  ssize_t got = 0;
  do {
    got = ::read(error_read.fd, &failure, sizeof failure);
  } while (got < 0 && errno == EINTR);
  if (got == static_cast<ssize_t>(sizeof failure)) {
    int status = 0;
    ::waitpid(pid, &status, 0);
    std::string reason = std::strerror(failure);
    if (!reason.empty())
      reason[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(reason[0])));
    throw Error("Runtime.InvalidEntrypoint", "fork/exec " + spec.argv[0] + ": " + reason);
  }
  return pid;
}

void kill_child_group(pid_t pid, int signal_number) {
  if (pid <= 0) return;
  ::kill(-pid, signal_number);
  ::kill(pid, signal_number);
}

int run_helper(const ChildSpec& spec, std::chrono::milliseconds timeout) {
  const pid_t pid = start_child(spec);
  const auto give_up = std::chrono::steady_clock::now() + timeout;
  int status = 0;
  while (true) {
    const pid_t done = ::waitpid(pid, &status, WNOHANG);
    if (done == pid) break;
    if (done < 0 && errno != EINTR) {
      throw Error(error_names::kInternalError,
                  std::string("waitpid failed: ") + std::strerror(errno));
    }
    if (std::chrono::steady_clock::now() > give_up) {
      kill_child_group(pid);
      ::waitpid(pid, &status, 0);
      throw Error(error_names::kInternalError,
                  spec.argv[0] + " took longer than " + std::to_string(timeout.count()) + " ms");
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ::kill(-pid, SIGKILL);  // anything it left behind in its group
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

std::string describe_wait_status(int wait_status) {
  if (WIFEXITED(wait_status)) return "exit status " + std::to_string(WEXITSTATUS(wait_status));
  if (WIFSIGNALED(wait_status)) {
    const char* description = ::sigdescr_np(WTERMSIG(wait_status));
    std::string text = description != nullptr ? description : "unknown signal";
    for (char& c : text) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return "signal: " + text;
  }
  return "unknown exit";
}

}  // namespace rstasker::local
