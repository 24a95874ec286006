// The Redshift Data API on PostgreSQL: the part of tasker-local that answers `RedshiftData.<Op>`.
// Statements run asynchronously, each on its own PostgreSQL connection, with the statuses, result
// shapes, paging, errors and completion events of the real API. See docs/local-stack.md for the
// known differences from Redshift.
#pragma once

#include <cstddef>
#include <functional>
#include <memory>
#include <string>
#include <string_view>

#include "rstasker/common/json.hpp"
#include "rstasker/services/event_bridge.hpp"

namespace rstasker::local {

struct DataApiOptions {
  // libpq connection string ("host=127.0.0.1 port=5432 user=postgres"); each request's Database
  // becomes the dbname (a dbname in the string is overridden).
  std::string pg_conninfo;
  std::string region = "us-east-1";
  std::string account_id = "123456789012";
  // GetStatementResult page size, in rows: small enough that paging is exercised locally.
  std::size_t page_rows = 1000;
  // Statements that may be running (not yet FINISHED/FAILED/ABORTED) at once; one more is refused
  // with ActiveStatementsExceededException.
  std::size_t max_active = 32;
  // Seconds to wait for a PostgreSQL connection before the statement FAILS.
  int connect_timeout_seconds = 10;
  // Called once per WithEvent statement reaching FINISHED, FAILED or ABORTED, on a thread of the
  // DataApi's own (never the caller of handle()), one event at a time, in completion order. An
  // exception is logged and otherwise ignored. May be empty.
  std::function<void(const services::EventEntry&)> publish;
};

class DataApi {
 public:
  explicit DataApi(DataApiOptions options);
  // Cancels running statements, aborts queued ones, publishes their events, and joins every thread
  // it started.
  ~DataApi();
  DataApi(const DataApi&) = delete;
  DataApi& operator=(const DataApi&) = delete;

  // One Data API call: `operation` is the part of X-Amz-Target after "RedshiftData." (for example
  // "ExecuteStatement"; the whole target is accepted too), `request` the parsed JSON body,
  // `caller_arn` the IAM principal that signed the request (it scopes ClientToken and
  // ListStatements, and is the event's `principal`). Returns the response body. Throws
  // rstasker::Error named as the real API names its errors (ValidationException,
  // ResourceNotFoundException, ActiveStatementsExceededException, ExecuteStatementException,
  // BatchExecuteStatementException, InternalServerException, UnknownOperationException) with the
  // HTTP status AWS uses (400 for client errors, 500 for server faults). Safe to call from many
  // threads at once.
  Json handle(std::string_view operation, const Json& request, const std::string& caller_arn);

  // Blocks until no statement is queued or running and every completion event has been published.
  void wait_idle();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace rstasker::local
