// PostgreSQL for tests: initdb into a temporary directory, postgres as a child, fast shutdown.
#include "support/postgres_server.hpp"

#include <pwd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <system_error>
#include <thread>

namespace rstasker::testing {
namespace {

constexpr const char* kSystemUser = "postgres";

bool is_root() {
  return ::geteuid() == 0;
}

// A fresh password for the cluster's superuser: 32 hex digits.
std::string random_password() {
  std::random_device device;
  std::string password;
  for (int i = 0; i < 4; ++i) {
    char part[9];
    std::snprintf(part, sizeof part, "%08x", static_cast<unsigned>(device()));
    password += part;
  }
  return password;
}

// Writes `text` to a new file that only its owner may read or write.
void write_private_file(const std::filesystem::path& file, const std::string& text) {
  std::ofstream(file) << text;
  if (::chmod(file.c_str(), S_IRUSR | S_IWUSR) != 0) {
    throw std::runtime_error("cannot make " + file.string() + " private");
  }
}

bool has_programs(const std::filesystem::path& dir) {
  for (const char* name : {"initdb", "postgres", "pg_isready", "psql"}) {
    if (::access((dir / name).c_str(), X_OK) != 0) return false;
  }
  return true;
}

std::string read_whole(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

}  // namespace

std::optional<std::filesystem::path> PostgresServer::bin_dir() {
  if (const char* dir = std::getenv("RSTASKER_PG_BINDIR"); dir != nullptr && *dir != '\0') {
    return std::filesystem::path(dir);
  }
  // PATH may hold symbolic links to a few of the programs only (initdb, postgres, pg_ctl): the
  // directory they point into has them all.
  if (auto initdb = find_program("initdb")) {
    std::error_code error;
    auto dir = std::filesystem::canonical(*initdb, error).parent_path();
    if (!error && has_programs(dir)) return dir;
    if (has_programs(initdb->parent_path())) return initdb->parent_path();
  }
  // Debian and Ubuntu keep the server binaries off PATH, one directory per major version.
  std::optional<std::filesystem::path> newest;
  int newest_version = -1;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator("/usr/lib/postgresql", error)) {
    int version = std::atoi(entry.path().filename().c_str());
    if (version > newest_version && has_programs(entry.path() / "bin")) {
      newest_version = version;
      newest = entry.path() / "bin";
    }
  }
  return newest;
}

std::optional<std::string> PostgresServer::unavailable_reason() {
  auto bin = bin_dir();
  if (!bin) {
    return std::string(
        "PostgreSQL server binaries not found (no initdb in PATH or "
        "/usr/lib/postgresql/*/bin; set RSTASKER_PG_BINDIR)");
  }
  if (!has_programs(*bin)) {
    return "PostgreSQL binaries incomplete in " + bin->string() +
           " (need initdb, postgres, pg_isready, psql)";
  }
  if (is_root() && ::getpwnam(kSystemUser) == nullptr) {
    return std::string(
        "running as root, and there is no `postgres` system user to run "
        "PostgreSQL as");
  }
  return std::nullopt;
}

PostgresServer::PostgresServer(PostgresOptions options) {
  if (auto why = unavailable_reason()) throw std::runtime_error(*why);
  bin_ = *bin_dir();
  if (is_root()) run_as_ = kSystemUser;

  std::string pattern = (std::filesystem::temp_directory_path() / "rstasker-pg-XXXXXX").string();
  if (::mkdtemp(pattern.data()) == nullptr) {
    throw std::runtime_error("mkdtemp " + pattern + " failed");
  }
  root_ = pattern;
  data_ = root_ / "data";
  // From here on a failure must remove the directory: the destructor will not run.
  try {
    if (!run_as_.empty()) {
      const passwd* user = ::getpwnam(run_as_.c_str());
      if (user == nullptr || ::chown(root_.c_str(), user->pw_uid, user->pw_gid) != 0) {
        throw std::runtime_error("cannot hand " + root_.string() + " to user " + run_as_);
      }
    }

    // Password authentication (scram-sha-256) for every connection, as on Redshift: the
    // password goes to initdb in a file it reads once, and to clients in a libpq password file.
    const std::string password = random_password();
    const std::filesystem::path pwfile = root_ / "pwfile";
    write_private_file(pwfile, password + "\n");
    if (!run_as_.empty()) {
      const passwd* user = ::getpwnam(run_as_.c_str());
      if (user == nullptr || ::chown(pwfile.c_str(), user->pw_uid, user->pw_gid) != 0) {
        throw std::runtime_error("cannot hand " + pwfile.string() + " to user " + run_as_);
      }
    }
    passfile_ = root_ / "pgpass";
    write_private_file(passfile_, host_ + ":*:*:" + user_ + ":" + password + "\n");

    ProcessOptions initdb;
    initdb.argv = {(bin_ / "initdb").string(),
                   "-D",
                   data_.string(),
                   "-A",
                   "scram-sha-256",
                   "--pwfile=" + pwfile.string(),
                   "-U",
                   user_,
                   "-E",
                   "UTF8",
                   "--locale=C",
                   "--no-sync"};
    initdb.run_as_user = run_as_;
    initdb.log_name = "initdb";
    initdb.working_dir = root_;  // the user may not be allowed into the test's directory
    Process initdb_process(initdb);
    if (!initdb_process.wait_for_exit(std::chrono::seconds(120)) || initdb_process.stop() != 0) {
      initdb_process.stop(std::chrono::seconds(0));
      throw std::runtime_error("initdb failed\n" + initdb_process.log_tail());
    }
    std::filesystem::remove(pwfile);

    auto options_for = [&](int port) {
      ProcessOptions server;
      server.argv = {(bin_ / "postgres").string(), "-D", data_.string(),        "-p",
                     std::to_string(port),         "-k", root_.string(),        "-c",
                     "listen_addresses=" + host_,  "-c", "fsync=off",           "-c",
                     "synchronous_commit=off",     "-c", "full_page_writes=off"};
      for (const auto& [name, value] : options.settings) {
        server.argv.push_back("-c");
        server.argv.push_back(name + "=" + value);
      }
      server.run_as_user = run_as_;
      server.log_name = "postgres";
      server.working_dir = root_;
      server.stop_signal = SIGINT;  // fast shutdown
      return server;
    };
    server_ = start_server(options_for, port_, std::chrono::seconds(60));

    // Listening is not yet accepting: recovery may still be running. pg_isready says when.
    ProcessOptions ready;
    ready.argv = {(bin_ / "pg_isready").string(),
                  "-q",
                  "-h",
                  host_,
                  "-p",
                  std::to_string(port_),
                  "-U",
                  user_,
                  "-d",
                  database_,
                  "-t",
                  "2"};
    ready.log_file = root_ / "pg_isready.log";
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(60);
    auto pause = std::chrono::milliseconds(5);
    while (run_to_completion(ready, std::chrono::seconds(10)) != 0) {
      if (!server_->is_running() || std::chrono::steady_clock::now() > deadline) {
        throw std::runtime_error("postgres on port " + std::to_string(port_) +
                                 " never accepted connections\n" + server_->log_tail());
      }
      std::this_thread::sleep_for(pause);
      pause = std::min(pause * 2, std::chrono::milliseconds(100));
    }
  } catch (...) {
    server_.reset();
    std::error_code ignored;
    std::filesystem::remove_all(root_, ignored);
    throw;
  }
}

PostgresServer::~PostgresServer() {
  server_->stop(std::chrono::seconds(15));
  server_.reset();
  std::error_code ignored;
  std::filesystem::remove_all(root_, ignored);
}

std::string PostgresServer::client_conninfo() const {
  return "host=" + host_ + " port=" + std::to_string(port_) + " user=" + user_ + " passfile='" +
         passfile_.string() + "'";
}

std::string PostgresServer::connection_string() const {
  return client_conninfo() + " dbname=" + database_;
}

std::string PostgresServer::psql(std::string_view sql, std::string_view database) const {
  static std::atomic<int> counter{0};
  ProcessOptions options;
  options.argv = {(bin_ / "psql").string(),
                  "-X",
                  "-q",
                  "-A",
                  "-t",
                  "-v",
                  "ON_ERROR_STOP=1",
                  "-h",
                  host_,
                  "-p",
                  std::to_string(port_),
                  "-U",
                  user_,
                  "-d",
                  std::string(database),
                  "-c",
                  std::string(sql)};
  options.log_file = root_ / ("psql-" + std::to_string(++counter) + ".out");
  options.log_command_line = false;
  options.env = {{"PGOPTIONS", "-c client_min_messages=warning"},
                 {"PGPASSFILE", passfile_.string()}};
  int status = run_to_completion(options, std::chrono::seconds(60));
  std::string output = read_whole(options.log_file);
  std::error_code ignored;
  std::filesystem::remove(options.log_file, ignored);
  if (status != 0) {
    throw std::runtime_error("psql failed (status " + std::to_string(status) + "): " + output);
  }
  return output;
}

}  // namespace rstasker::testing
