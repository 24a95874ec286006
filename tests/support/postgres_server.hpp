// A throwaway PostgreSQL server for one test binary: a fresh cluster in a temporary directory,
// listening on a free port, removed when the fixture goes.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "support/process.hpp"

namespace rstasker::testing {

struct PostgresOptions {
  // Extra server settings, passed as `-c name=value` (e.g. {"max_connections", "20"}).
  std::vector<std::pair<std::string, std::string>> settings{};
};

// Starts `postgres` on a cluster made by `initdb -A scram-sha-256 -U postgres` (a random password,
// kept in a libpq password file in the temporary directory), on 127.0.0.1:<free port>
// with its Unix socket in the temporary directory; as the `postgres` system user when the test
// runs as root (PostgreSQL refuses root). Durability is traded for speed (fsync off): the
// cluster lives only as long as the fixture.
//
// postgres runs as a direct child rather than through `pg_ctl start`, which would detach it into
// its own session: as a child it is in the fixture's process group and dies with the test binary
// (see Process). The destructor asks for a fast shutdown (SIGINT, what `pg_ctl stop -m fast`
// sends), waits, and deletes the directory.
class PostgresServer {
 public:
  // Why PostgreSQL cannot run here (binaries or the postgres user missing), or nullopt. Tests
  // check it first: RSTASKER_SKIP_IF_UNAVAILABLE(PostgresServer::unavailable_reason()).
  static std::optional<std::string> unavailable_reason();
  // The directory with initdb, postgres, pg_isready and psql: $RSTASKER_PG_BINDIR, else the one
  // holding `initdb` in PATH, else the newest /usr/lib/postgresql/<version>/bin.
  static std::optional<std::filesystem::path> bin_dir();

  // Creates the cluster and waits until it accepts connections. Throws std::runtime_error (with
  // the server's log) when it cannot.
  explicit PostgresServer(PostgresOptions options = {});
  ~PostgresServer();
  PostgresServer(const PostgresServer&) = delete;
  PostgresServer& operator=(const PostgresServer&) = delete;

  int port() const { return port_; }
  const std::string& host() const { return host_; }
  const std::string& user() const { return user_; }
  const std::string& database() const { return database_; }
  // libpq keyword/value form, without a database:
  // "host=127.0.0.1 port=<port> user=postgres passfile='<the password file>'".
  std::string client_conninfo() const;
  // client_conninfo() with " dbname=postgres".
  std::string connection_string() const;
  // The libpq password file (PGPASSFILE) that holds the superuser's password.
  const std::filesystem::path& passfile() const { return passfile_; }
  // The directory of the Unix socket (host= for a socket connection).
  const std::filesystem::path& socket_dir() const { return root_; }
  const std::filesystem::path& log_path() const { return server_->log_path(); }

  // Runs `sql` with psql (ON_ERROR_STOP, unaligned, tuples only) and returns its output, e.g.
  // "1|one\n2|two\n". For test set-up and checks; throws std::runtime_error when psql fails.
  std::string psql(std::string_view sql, std::string_view database = "postgres") const;

 private:
  std::filesystem::path bin_;
  std::filesystem::path root_;  // temporary directory: socket, data/, logs of helpers
  std::filesystem::path data_;
  std::filesystem::path passfile_;
  std::string run_as_;  // "postgres" when root, else empty
  std::string host_ = "127.0.0.1";
  std::string user_ = "postgres";
  std::string database_ = "postgres";
  int port_ = 0;
  std::unique_ptr<Process> server_;
};

}  // namespace rstasker::testing
