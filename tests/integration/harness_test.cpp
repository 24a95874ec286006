// The test harness itself: child processes are stopped with everything they started, readiness
// waits see a listening port, and PostgresServer gives a working, disposable cluster.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <pwd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>

#include "support/paths.hpp"
#include "support/postgres_server.hpp"
#include "support/process.hpp"

namespace rstasker::testing {
namespace {

using namespace std::chrono_literals;

bool pid_alive(pid_t pid) {
  return ::kill(pid, 0) == 0;
}

std::filesystem::path scratch_file(const std::string& name) {
  return test_log_dir() / ("harness_test." + std::to_string(::getpid()) + "." + name);
}

// Reads a pid the child wrote, waiting for the file to appear (the child writes it at start).
pid_t read_pid_file(Process& process, const std::filesystem::path& path) {
  for (int i = 0; i < 500 && process.is_running(); ++i) {
    std::string text = std::filesystem::exists(path) ? read_file(path) : "";
    if (!text.empty() && text.back() == '\n') return static_cast<pid_t>(std::stol(text));
    std::this_thread::sleep_for(10ms);
  }
  return -1;
}

TEST(Process, LogsOutputAndStopsOnRequest) {
  Process process({.argv = {"sh", "-c", "echo started; echo oops >&2; exec sleep 60"}});
  ASSERT_TRUE(process.is_running());
  int status = process.stop(5s);
  EXPECT_EQ(status, 128 + SIGTERM);
  EXPECT_FALSE(process.is_running());
  std::string log = read_file(process.log_path());
  EXPECT_NE(log.find("started"), std::string::npos) << log;
  EXPECT_NE(log.find("oops"), std::string::npos) << log;
}

TEST(Process, StopAlsoEndsWhatTheChildStarted) {
  auto pid_file = scratch_file("grandchild.pid");
  std::filesystem::remove(pid_file);
  pid_t grandchild = -1;
  {
    Process process(
        {.argv = {"sh", "-c", "sleep 60 & echo $! > '" + pid_file.string() + "'; wait"}});
    grandchild = read_pid_file(process, pid_file);
    ASSERT_GT(grandchild, 0);
    ASSERT_TRUE(pid_alive(grandchild));
  }  // the destructor stops the group
  // The grandchild was the shell's child, reparented to init (or a subreaper) when the shell
  // died; it may linger a moment as a zombie until reaped, so look at its state.
  std::string stat_path = "/proc/" + std::to_string(grandchild) + "/stat";
  for (int i = 0; i < 200 && std::filesystem::exists(stat_path); ++i) {
    std::string stat = read_file(stat_path);
    if (stat.find(") Z") != std::string::npos) break;
    std::this_thread::sleep_for(10ms);
  }
  if (std::filesystem::exists(stat_path)) {
    EXPECT_NE(read_file(stat_path).find(") Z"), std::string::npos) << "sleep still runs";
  }
  std::filesystem::remove(pid_file);
}

TEST(Process, KillsAChildThatIgnoresTheStopSignal) {
  // The log starts with the command line, so the marker is computed, not quoted.
  Process process(
      {.argv = {"sh", "-c", "trap '' TERM; echo $((6 * 7)); while :; do sleep 1; done"}});
  for (int i = 0; i < 500 && read_file(process.log_path()).find("\n42\n") == std::string::npos;
       ++i) {
    std::this_thread::sleep_for(10ms);
  }
  auto start = std::chrono::steady_clock::now();
  int status = process.stop(200ms);
  EXPECT_EQ(status, 128 + SIGKILL);
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
}

TEST(Process, ReportsExitStatusAndMissingPrograms) {
  EXPECT_EQ(run_to_completion({.argv = {"sh", "-c", "exit 7"}}), 7);
  EXPECT_EQ(run_to_completion({.argv = {"true"}}), 0);
  EXPECT_THROW(Process({.argv = {"rstasker-no-such-program"}}), std::runtime_error);
  EXPECT_THROW(Process({.argv = {"/nonexistent/program"}}), std::runtime_error);
  EXPECT_THROW(run_to_completion({.argv = {"sleep", "60"}}, 100ms), std::runtime_error);
}

TEST(Process, PassesExtraEnvironment) {
  auto out = scratch_file("env.out");
  int status = run_to_completion({.argv = {"sh", "-c", "printf %s \"$RSTASKER_HARNESS_VALUE\""},
                                  .env = {{"RSTASKER_HARNESS_VALUE", "forty two"}},
                                  .log_file = out,
                                  .log_command_line = false});
  EXPECT_EQ(status, 0);
  EXPECT_EQ(read_file(out), "forty two");
  std::filesystem::remove(out);
}

TEST(Process, RunsAsAnotherUserWhenRoot) {
  if (::geteuid() != 0) GTEST_SKIP() << "only root can switch users";
  const passwd* user = ::getpwnam("postgres");
  if (user == nullptr) GTEST_SKIP() << "no postgres user here";
  uid_t expected = user->pw_uid;
  auto out = scratch_file("id.out");
  int status = run_to_completion({.argv = {"id", "-u"},
                                  .log_file = out,
                                  .run_as_user = "postgres",
                                  .working_dir = "/",
                                  .log_command_line = false});
  EXPECT_EQ(status, 0);
  EXPECT_EQ(read_file(out), std::to_string(expected) + "\n");
  std::filesystem::remove(out);
}

TEST(TcpPort, WaitSeesAListenerAndGivesUpWithoutOne) {
  int port = free_tcp_port();
  EXPECT_FALSE(wait_for_tcp_port(port, 50ms));

  int listener = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(listener, 0);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  address.sin_port = htons(static_cast<std::uint16_t>(port));
  ASSERT_EQ(::bind(listener, reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  ASSERT_EQ(::listen(listener, 4), 0);
  EXPECT_TRUE(wait_for_tcp_port(port, 1s));
  ::close(listener);
}

TEST(TcpPort, WaitStopsWhenTheServerDies) {
  Process process({.argv = {"sh", "-c", "exit 3"}});
  auto start = std::chrono::steady_clock::now();
  EXPECT_FALSE(wait_for_tcp_port(free_tcp_port(), 30s, &process));
  EXPECT_LT(std::chrono::steady_clock::now() - start, 5s);
  EXPECT_EQ(process.exit_status(), 3);
}

TEST(StartServer, TriesAnotherPortWhenTheFirstWasTaken) {
  auto python = find_program("python3");
  if (!python) GTEST_SKIP() << "no python3 to listen with";
  int attempts = 0;
  auto options_for = [&](int port) -> ProcessOptions {
    if (++attempts == 1) {
      return {.argv = {"sh", "-c", "echo 'bind: Address already in use' >&2; exit 1"}};
    }
    return {.argv = {python->string(), "-c",
                     "import socket, time\n"
                     "s = socket.socket()\n"
                     "s.bind(('127.0.0.1', " +
                         std::to_string(port) +
                         "))\n"
                         "s.listen()\n"
                         "time.sleep(60)\n"}};
  };
  int port = 0;
  auto server = start_server(options_for, port, 30s);
  EXPECT_EQ(attempts, 2);
  EXPECT_TRUE(server->is_running());
  EXPECT_TRUE(wait_for_tcp_port(port, 1s));
}

TEST(StartServer, ReportsAServerThatExitsForAnotherReason) {
  int attempts = 0;
  auto options_for = [&](int) -> ProcessOptions {
    ++attempts;
    return {.argv = {"sh", "-c", "echo 'no such database'; exit 1"}};
  };
  int port = 0;
  try {
    start_server(options_for, port, 30s);
    ADD_FAILURE() << "start_server returned";
  } catch (const std::runtime_error& e) {
    EXPECT_NE(std::string(e.what()).find("no such database"), std::string::npos) << e.what();
  }
  EXPECT_EQ(attempts, 1);
}

TEST(PostgresServerTest, RunsQueriesAndCleansUp) {
  RSTASKER_SKIP_IF_UNAVAILABLE(PostgresServer::unavailable_reason());
  std::filesystem::path dir;
  int port = 0;
  {
    auto start = std::chrono::steady_clock::now();
    PostgresServer server;
    auto elapsed = std::chrono::duration_cast<std::chrono::milliseconds>(
        std::chrono::steady_clock::now() - start);
    RecordProperty("startup_ms", static_cast<int>(elapsed.count()));
    dir = server.socket_dir();
    port = server.port();
    EXPECT_EQ(server.connection_string(), "host=127.0.0.1 port=" + std::to_string(port) +
                                              " user=postgres passfile='" +
                                              server.passfile().string() + "' dbname=postgres");
    EXPECT_EQ(server.psql("select 1 + 1"), "2\n");
    // Password authentication: without the password file a client is refused.
    ProcessOptions no_password;
    no_password.argv = {(*PostgresServer::bin_dir() / "psql").string(),
                        "-X",
                        "-w",
                        "-h",
                        server.host(),
                        "-p",
                        std::to_string(port),
                        "-U",
                        server.user(),
                        "-d",
                        server.database(),
                        "-c",
                        "select 1"};
    no_password.env = {{"PGPASSFILE", (dir / "no-such-pgpass").string()}};
    no_password.log_file = dir / "no-password.out";
    no_password.log_command_line = false;
    EXPECT_NE(run_to_completion(no_password, std::chrono::seconds(30)), 0);
    std::stringstream refusal;
    refusal << std::ifstream(no_password.log_file).rdbuf();
    EXPECT_NE(refusal.str().find("no password supplied"), std::string::npos) << refusal.str();
    server.psql("create table t (id int primary key, name text); insert into t values (1, 'one')");
    EXPECT_EQ(server.psql("select id, name from t"), "1|one\n");
    EXPECT_THROW(server.psql("select * from no_such_table"), std::runtime_error);
    EXPECT_TRUE(std::filesystem::exists(dir / "data" / "PG_VERSION"));
  }
  EXPECT_FALSE(std::filesystem::exists(dir));
  EXPECT_FALSE(wait_for_tcp_port(port, 10ms));
}

}  // namespace
}  // namespace rstasker::testing
