// libpq, the RAII way: owned connections and results, connecting with a timeout, error texts in
// the shape the Redshift Data API reports them, and a cancel handle usable from another thread.
#pragma once

#include <libpq-fe.h>

#include <memory>
#include <string>
#include <string_view>

namespace rstasker::local::pg {

struct ConnectionDeleter {
  void operator()(PGconn* connection) const { PQfinish(connection); }
};
struct ResultDeleter {
  void operator()(PGresult* result) const { PQclear(result); }
};
using Connection = std::unique_ptr<PGconn, ConnectionDeleter>;
using Result = std::unique_ptr<PGresult, ResultDeleter>;

// Opens a blocking connection to `database` using `conninfo` (a libpq connection string without
// dbname) for everything else. Returns a connection in CONNECTION_OK state, or nullptr with the
// reason in `error` (see connection_error).
Connection connect(const std::string& conninfo, const std::string& database, int timeout_seconds,
                   std::string& error);

// A connection failure as a server reports it ("FATAL: database \"x\" does not exist"), without
// libpq's "connection to server ... failed:" prefix and trailing newline.
std::string connection_error(const PGconn* connection);

// A statement failure in the Data API's shape (the JDBC driver's): "ERROR: <primary message>", then
// "\n  Detail: ...", "\n  Hint: ...", "\n  Position: n", "\n  Where: ..." when the server sent
// them.
std::string result_error(const PGresult* result);

// The SQLSTATE of a failed result ("" when none).
std::string sqlstate(const PGresult* result);

// Cancels the query running on a connection. Created on the connection's thread; cancel() may be
// called from any thread, any number of times, while the connection is open.
class Canceller {
 public:
  explicit Canceller(PGconn* connection);
  ~Canceller();
  Canceller(const Canceller&) = delete;
  Canceller& operator=(const Canceller&) = delete;
  // Asks the server to cancel; returns false with the reason in `error` when the request failed.
  bool cancel(std::string& error) const;

 private:
  PGcancel* cancel_;
};

}  // namespace rstasker::local::pg
