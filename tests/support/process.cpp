// Child processes for tests: fork/exec with a log file, process groups, readiness by TCP connect.
#include "support/process.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <netinet/in.h>
#include <poll.h>
#include <pwd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iterator>
#include <map>
#include <sstream>
#include <stdexcept>
#include <system_error>
#include <thread>

#include "support/paths.hpp"

namespace rstasker::testing {
namespace {

using Clock = std::chrono::steady_clock;

std::runtime_error system_failure(const std::string& what, int error) {
  return std::runtime_error(what + ": " + std::generic_category().message(error));
}

// A file descriptor closed on scope exit.
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  ~Fd() { reset(); }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  int get() const { return fd_; }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_;
};

struct UserIds {
  uid_t uid;
  gid_t gid;
  std::string home;
};

UserIds lookup_user(const std::string& name) {
  long size = ::sysconf(_SC_GETPW_R_SIZE_MAX);
  std::vector<char> buffer(size > 0 ? static_cast<std::size_t>(size) : 16384);
  passwd entry{};
  passwd* found = nullptr;
  int error = ::getpwnam_r(name.c_str(), &entry, buffer.data(), buffer.size(), &found);
  if (error != 0) throw system_failure("getpwnam_r(" + name + ")", error);
  if (found == nullptr) throw std::runtime_error("no system user named " + name);
  return {entry.pw_uid, entry.pw_gid, entry.pw_dir ? entry.pw_dir : "/"};
}

std::optional<std::filesystem::path> search_path(const std::string& name, const std::string& path) {
  std::size_t start = 0;
  while (start <= path.size()) {
    std::size_t end = path.find(':', start);
    if (end == std::string::npos) end = path.size();
    std::filesystem::path dir = path.substr(start, end - start);
    if (dir.empty()) dir = ".";
    std::filesystem::path candidate = dir / name;
    std::error_code ignored;
    if (std::filesystem::is_regular_file(candidate, ignored) &&
        ::access(candidate.c_str(), X_OK) == 0) {
      return candidate;
    }
    start = end + 1;
  }
  return std::nullopt;
}

std::string program_short_name() {
  std::error_code error;
  auto exe = std::filesystem::read_symlink("/proc/self/exe", error);
  return error ? std::string("test") : exe.filename().string();
}

std::filesystem::path default_log_path(const std::string& stem) {
  static std::atomic<int> counter{0};
  std::string name = program_short_name() + "." + stem + "." + std::to_string(++counter) + ".log";
  return test_log_dir() / name;
}

int status_from_siginfo(const siginfo_t& info) {
  if (info.si_code == CLD_EXITED) return info.si_status;
  return 128 + info.si_status;
}

}  // namespace

std::filesystem::path test_log_dir() {
  auto dir = binary_dir() / "test-logs";
  std::filesystem::create_directories(dir);
  return dir;
}

bool process_alive(pid_t pid) {
  std::ifstream stat("/proc/" + std::to_string(pid) + "/stat");
  std::string line;
  if (!std::getline(stat, line)) return false;
  // "<pid> (<comm>) <state> ...": the command may hold spaces and parentheses, the state follows
  // the last ')'.
  const auto paren = line.rfind(')');
  return paren != std::string::npos && paren + 2 < line.size() && line[paren + 2] != 'Z' &&
         line[paren + 2] != 'X';
}

bool await_process_exit(pid_t pid, std::chrono::milliseconds timeout) {
  const int fd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0) return errno == ESRCH || !process_alive(pid);
  // A pidfd becomes readable when the process exits (zombie or reaped).
  pollfd watched{fd, POLLIN, 0};
  int ready;
  do {
    ready = ::poll(&watched, 1, static_cast<int>(timeout.count()));
  } while (ready < 0 && errno == EINTR);
  ::close(fd);
  return ready > 0 || !process_alive(pid);
}

std::vector<pid_t> processes_mentioning(const std::string& text) {
  std::vector<pid_t> found;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator("/proc", error)) {
    const std::string name = entry.path().filename();
    if (name.empty() || !std::all_of(name.begin(), name.end(),
                                     [](unsigned char c) { return std::isdigit(c) != 0; })) {
      continue;
    }
    const pid_t pid = static_cast<pid_t>(std::stol(name));
    if (pid == ::getpid()) continue;
    std::ifstream in(entry.path() / "cmdline", std::ios::binary);
    std::string command_line((std::istreambuf_iterator<char>(in)),
                             std::istreambuf_iterator<char>());
    std::replace(command_line.begin(), command_line.end(), '\0', ' ');
    std::error_code no_cwd;
    const std::string cwd = std::filesystem::read_symlink(entry.path() / "cwd", no_cwd).string();
    if ((command_line.find(text) != std::string::npos || cwd.find(text) != std::string::npos) &&
        process_alive(pid)) {
      found.push_back(pid);
    }
  }
  return found;
}

bool servers_required() {
  const char* value = std::getenv("RSTASKER_REQUIRE_SERVERS");
  return value != nullptr && std::string_view(value) == "1";
}

std::optional<std::filesystem::path> find_program(const std::string& name) {
  const char* path = std::getenv("PATH");
  return search_path(name, path ? path : "/usr/bin:/bin");
}

Process::Process(ProcessOptions options) : options_(std::move(options)) {
  if (options_.argv.empty()) throw std::runtime_error("Process: empty argv");

  // The child's environment: ours, then the run-as user's identity, then the caller's additions.
  std::map<std::string, std::string> env;
  for (char** entry = environ; *entry != nullptr; ++entry) {
    std::string_view text(*entry);
    auto eq = text.find('=');
    if (eq != std::string_view::npos) env[std::string(text.substr(0, eq))] = text.substr(eq + 1);
  }
  std::optional<UserIds> user;
  if (!options_.run_as_user.empty() && ::geteuid() == 0) {
    user = lookup_user(options_.run_as_user);
    env["HOME"] = user->home;
    env["USER"] = options_.run_as_user;
    env["LOGNAME"] = options_.run_as_user;
  }
  for (const auto& [name, value] : options_.env) env[name] = value;

  std::filesystem::path program = options_.argv[0];
  if (options_.argv[0].find('/') == std::string::npos) {
    auto found = search_path(options_.argv[0], env.count("PATH") ? env["PATH"] : "/usr/bin:/bin");
    if (!found) throw std::runtime_error("program not found in PATH: " + options_.argv[0]);
    program = *found;
  }

  std::string stem = options_.log_name.empty() ? program.filename().string() : options_.log_name;
  log_path_ = options_.log_file.empty() ? default_log_path(stem) : options_.log_file;

  // Everything the child needs is prepared here: after fork it may only make async-signal-safe
  // calls (the test binary has other threads).
  std::vector<std::string> env_strings;
  env_strings.reserve(env.size());
  for (const auto& [name, value] : env) env_strings.push_back(name + "=" + value);
  std::vector<char*> envp;
  envp.reserve(env_strings.size() + 1);
  for (auto& text : env_strings) envp.push_back(text.data());
  envp.push_back(nullptr);
  std::vector<char*> argv;
  argv.reserve(options_.argv.size() + 1);
  for (auto& arg : options_.argv) argv.push_back(arg.data());
  argv.push_back(nullptr);

  Fd log(::open(log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (log.get() < 0) throw system_failure("cannot open " + log_path_.string(), errno);
  if (options_.log_command_line) {
    std::string header = "#";
    for (const auto& arg : options_.argv) header += " " + arg;
    header += "\n";
    if (::write(log.get(), header.data(), header.size()) < 0) {
      throw system_failure("cannot write " + log_path_.string(), errno);
    }
  }
  if (user && ::fchown(log.get(), user->uid, user->gid) != 0) {
    throw system_failure("cannot chown " + log_path_.string(), errno);
  }
  Fd null_in(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (null_in.get() < 0) throw system_failure("cannot open /dev/null", errno);
  int pipe_fds[2];
  if (::pipe2(pipe_fds, O_CLOEXEC) != 0) throw system_failure("pipe2", errno);
  Fd exec_error_read(pipe_fds[0]);
  Fd exec_error_write(pipe_fds[1]);
  const char* working_dir = options_.working_dir.empty() ? nullptr : options_.working_dir.c_str();
  const pid_t parent = ::getpid();

  pid_t pid = ::fork();
  if (pid < 0) throw system_failure("fork", errno);
  if (pid == 0) {
    auto fail = [&](int step) {
      int report[2] = {step, errno};
      ssize_t ignored = ::write(exec_error_write.get(), report, sizeof report);
      (void)ignored;
      ::_exit(127);
    };
    if (::setpgid(0, 0) != 0) fail(1);
    if (user) {
      if (::setgroups(1, &user->gid) != 0 || ::setgid(user->gid) != 0) fail(2);
      if (::setuid(user->uid) != 0) fail(2);
    }
    // After setuid: changing credentials clears the parent-death signal.
    if (::prctl(PR_SET_PDEATHSIG, SIGKILL) != 0) fail(3);
    if (::getppid() != parent) ::_exit(127);  // the parent is already gone
    if (working_dir != nullptr && ::chdir(working_dir) != 0) fail(4);
    if (::dup2(null_in.get(), STDIN_FILENO) < 0 || ::dup2(log.get(), STDOUT_FILENO) < 0 ||
        ::dup2(log.get(), STDERR_FILENO) < 0) {
      fail(5);
    }
    sigset_t none;
    ::sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    for (int sig : {SIGPIPE, SIGTERM, SIGINT, SIGHUP, SIGCHLD}) ::signal(sig, SIG_DFL);
    ::execve(program.c_str(), argv.data(), envp.data());
    fail(6);
  }

  pid_ = pid;
  ::setpgid(pid, pid);  // also from here, so the group exists before any kill(-pid)
  exec_error_write.reset();
  int report[2] = {0, 0};
  ssize_t got;
  do {
    got = ::read(exec_error_read.get(), report, sizeof report);
  } while (got < 0 && errno == EINTR);
  if (got > 0) {
    ::waitpid(pid_, nullptr, 0);
    pid_ = -1;
    static const char* const kSteps[] = {"",      "setpgid", "switching user", "prctl",
                                         "chdir", "dup2",    "execve"};
    int step = std::clamp(report[0], 0, 6);
    throw std::runtime_error(std::string("cannot start ") + program.string() + " (" + kSteps[step] +
                             "): " + std::generic_category().message(report[1]));
  }
}

Process::~Process() {
  if (pid_ > 0) stop();
}

void Process::record_exit(int status) {
  exit_status_ = status;
}

bool Process::is_running() {
  return !exit_status().has_value();
}

std::optional<int> Process::exit_status() {
  if (exit_status_ || pid_ <= 0) return exit_status_;
  // WNOWAIT leaves the child a zombie: its pid, and so its process group id, cannot be reused
  // until stop() has killed the rest of the group and reaped it.
  siginfo_t info{};
  if (::waitid(P_PID, static_cast<id_t>(pid_), &info, WEXITED | WNOHANG | WNOWAIT) == 0 &&
      info.si_pid == pid_) {
    record_exit(status_from_siginfo(info));
  }
  return exit_status_;
}

std::optional<int> Process::wait_for_exit(std::chrono::milliseconds timeout) {
  const auto deadline = Clock::now() + timeout;
  auto pause = std::chrono::milliseconds(1);
  while (true) {
    if (auto status = exit_status()) return status;
    if (Clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(std::min<Clock::duration>(pause, deadline - Clock::now()));
    pause = std::min(pause * 2, std::chrono::milliseconds(20));
  }
}

int Process::stop(std::chrono::milliseconds grace) {
  if (pid_ <= 0) return exit_status_.value_or(-1);
  if (!group_killed_) {
    if (is_running()) {
      ::kill(-pid_, options_.stop_signal);
      if (!wait_for_exit(grace)) {
        ::kill(-pid_, SIGKILL);
        wait_for_exit(std::chrono::seconds(30));
      }
    }
    // The leader is now a zombie (or stuck); whatever else it started in its group goes too.
    ::kill(-pid_, SIGKILL);
    group_killed_ = true;
    int status = 0;
    pid_t reaped;
    do {
      reaped = ::waitpid(pid_, &status, 0);
    } while (reaped < 0 && errno == EINTR);
    if (!exit_status_ && reaped == pid_) {
      record_exit(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
    }
  }
  return exit_status_.value_or(-1);
}

std::string Process::log_tail(std::size_t max_bytes) const {
  std::ifstream in(log_path_, std::ios::binary | std::ios::ate);
  if (!in) return "(no log at " + log_path_.string() + ")";
  auto size = static_cast<std::size_t>(in.tellg());
  std::size_t start = size > max_bytes ? size - max_bytes : 0;
  in.seekg(static_cast<std::streamoff>(start));
  std::string text(size - start, '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  return (start > 0 ? "[...]\n" : "") + text + "\n(log: " + log_path_.string() + ")";
}

int run_to_completion(ProcessOptions options, std::chrono::milliseconds timeout) {
  std::string name = options.argv.empty() ? "" : options.argv[0];
  Process process(std::move(options));
  if (!process.wait_for_exit(timeout)) {
    process.stop(std::chrono::milliseconds(0));
    throw std::runtime_error(name + " did not finish within " + std::to_string(timeout.count()) +
                             " ms\n" + process.log_tail());
  }
  return process.stop();
}

int free_tcp_port() {
  Fd sock(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (sock.get() < 0) throw system_failure("socket", errno);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = 0;
  if (::bind(sock.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) != 0) {
    throw system_failure("bind 127.0.0.1:0", errno);
  }
  socklen_t length = sizeof address;
  if (::getsockname(sock.get(), reinterpret_cast<sockaddr*>(&address), &length) != 0) {
    throw system_failure("getsockname", errno);
  }
  return ntohs(address.sin_port);
}

bool wait_for_tcp_port(int port, std::chrono::milliseconds timeout, Process* process) {
  const auto deadline = Clock::now() + timeout;
  auto pause = std::chrono::milliseconds(5);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(static_cast<std::uint16_t>(port));
  while (true) {
    Fd sock(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
    if (sock.get() < 0) throw system_failure("socket", errno);
    if (::connect(sock.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) == 0) {
      return true;
    }
    if (process != nullptr && !process->is_running()) return false;
    if (Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(std::min<Clock::duration>(pause, deadline - Clock::now()));
    pause = std::min(pause * 2, std::chrono::milliseconds(100));
  }
}

std::unique_ptr<Process> start_server(const std::function<ProcessOptions(int port)>& options_for,
                                      int& port, std::chrono::milliseconds timeout, int attempts) {
  for (int attempt = 1;; ++attempt) {
    port = free_tcp_port();
    auto process = std::make_unique<Process>(options_for(port));
    if (wait_for_tcp_port(port, timeout, process.get())) return process;
    std::string log = process->log_tail();
    std::string name = process->log_path().filename().string();
    process.reset();
    if (attempt >= attempts || log.find("Address already in use") == std::string::npos) {
      throw std::runtime_error(name + ": nothing listened on port " + std::to_string(port) + "\n" +
                               log);
    }
  }
}

std::string capture_stderr(const std::function<void()>& body) {
  std::fflush(stderr);
  char path[] = "/tmp/rstasker-stderr-XXXXXX";
  const int fd = mkstemp(path);
  if (fd < 0) throw std::runtime_error("mkstemp failed");
  const int saved = dup(2);
  dup2(fd, 2);
  try {
    body();
  } catch (...) {
    dup2(saved, 2);
    close(saved);
    close(fd);
    std::remove(path);
    throw;
  }
  std::fflush(stderr);
  dup2(saved, 2);
  close(saved);
  close(fd);
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  std::remove(path);
  return text.str();
}

}  // namespace rstasker::testing
