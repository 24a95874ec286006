// libpq wrappers.
#include "local/pg.hpp"

#include <array>
#include <string>

namespace rstasker::local::pg {
namespace {

std::string trim_trailing_newlines(std::string text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.pop_back();
  return text;
}

}  // namespace

Connection connect(const std::string& conninfo, const std::string& database, int timeout_seconds,
                   std::string& error) {
  // The first "dbname" is expanded as a connection string; the second is the plain database name
  // and overrides any dbname inside it.
  const std::string timeout = std::to_string(timeout_seconds);
  const std::array<const char*, 5> keywords{"dbname", "dbname", "connect_timeout",
                                            "application_name", nullptr};
  const std::array<const char*, 5> values{conninfo.c_str(), database.c_str(), timeout.c_str(),
                                          "tasker-local", nullptr};
  Connection connection(PQconnectdbParams(keywords.data(), values.data(), 1));
  if (!connection) {
    error = "out of memory allocating a PostgreSQL connection";
    return nullptr;
  }
  if (PQstatus(connection.get()) != CONNECTION_OK) {
    error = connection_error(connection.get());
    return nullptr;
  }
  return connection;
}

std::string connection_error(const PGconn* connection) {
  std::string message = PQerrorMessage(connection);
  // "connection to server on socket ... failed: FATAL:  database "x" does not exist"
  for (const std::string_view severity : {"FATAL:", "ERROR:"}) {
    if (const auto at = message.find(severity); at != std::string::npos) {
      message.erase(0, at);
      break;
    }
  }
  // libpq separates severity and text by two spaces; the Data API shows one.
  if (const auto colon = message.find(":  "); colon < 8) {  // right after the severity
    message.erase(colon + 1, 1);
  }
  return trim_trailing_newlines(message);
}

std::string result_error(const PGresult* result) {
  const char* severity = PQresultErrorField(result, PG_DIAG_SEVERITY_NONLOCALIZED);
  const char* primary = PQresultErrorField(result, PG_DIAG_MESSAGE_PRIMARY);
  if (primary == nullptr) {
    const std::string text = trim_trailing_newlines(PQresultErrorMessage(result));
    return text.empty() ? std::string("ERROR: unknown error") : text;
  }
  std::string message = std::string(severity != nullptr ? severity : "ERROR") + ": " + primary;
  if (const char* detail = PQresultErrorField(result, PG_DIAG_MESSAGE_DETAIL)) {
    message += "\n  Detail: ";
    message += detail;
  }
  if (const char* hint = PQresultErrorField(result, PG_DIAG_MESSAGE_HINT)) {
    message += "\n  Hint: ";
    message += hint;
  }
  if (const char* position = PQresultErrorField(result, PG_DIAG_STATEMENT_POSITION)) {
    message += "\n  Position: ";
    message += position;
  }
  if (const char* where = PQresultErrorField(result, PG_DIAG_CONTEXT)) {
    message += "\n  Where: ";
    message += where;
  }
  return message;
}

std::string sqlstate(const PGresult* result) {
  const char* state = PQresultErrorField(result, PG_DIAG_SQLSTATE);
  return state != nullptr ? state : "";
}

Canceller::Canceller(PGconn* connection) : cancel_(PQgetCancel(connection)) {}

Canceller::~Canceller() {
  if (cancel_ != nullptr) PQfreeCancel(cancel_);
}

bool Canceller::cancel(std::string& error) const {
  if (cancel_ == nullptr) {
    error = "no cancel handle for this connection";
    return false;
  }
  std::array<char, 256> buffer{};
  if (PQcancel(cancel_, buffer.data(), static_cast<int>(buffer.size())) == 0) {
    error = buffer.data();
    return false;
  }
  return true;
}

}  // namespace rstasker::local::pg
