// Logging set-up: spdlog's default logger, writing one line per message to stderr in the shape
// Lambda's JSON log format uses, with secrets redacted here, at the boundary, for every line.
//
// Code logs with spdlog directly (`spdlog::info("started {}", id)`); nothing else to call.
#pragma once

#include <spdlog/common.h>

#include <string>
#include <string_view>
#include <utility>

#include "rstasker/common/json.hpp"

namespace rstasker::log {

enum class Format { kJson, kText };

struct Settings {
  spdlog::level::level_enum level = spdlog::level::info;
  Format format = Format::kJson;
};

// AWS_LAMBDA_LOG_LEVEL, else LOG_LEVEL (TRACE, DEBUG, INFO, WARN/WARNING, ERROR, FATAL/CRITICAL,
// any case); AWS_LAMBDA_LOG_FORMAT (JSON or Text). Unknown values fall back to INFO / JSON, and
// `problems` (when given) receives a description of what was ignored.
Settings settings_from_environment(std::string* problems = nullptr);

// Installs the default logger. Safe to call again (replaces the settings).
void init(const Settings& settings);

// The request id of the invocation in progress, added to every line ("" between invocations).
void set_request_id(std::string request_id);

// Structured fields: added to every JSON line as members of their own (action, statementId,
// statementName, executionArn, stackId, logicalResourceId, waiter, errorType, xrayTraceId,
// coldStart), so CloudWatch Logs Insights and metric filters can select by them. The text format
// does not show them. String values are redacted like the message. They never replace the
// timestamp, level, message or requestId members.
//
// An invocation field holds for every thread until changed or cleared (null removes one).
void set_invocation_field(std::string_view key, Json value);
void clear_invocation_fields();

// Fields of the work in progress on this thread (a statement being started or completed), for
// the guard's lifetime; they override invocation fields of the same name. Empty strings and
// nulls are left out.
class ScopedFields {
 public:
  explicit ScopedFields(std::initializer_list<std::pair<std::string_view, Json>> fields);
  ~ScopedFields();
  ScopedFields(const ScopedFields&) = delete;
  ScopedFields& operator=(const ScopedFields&) = delete;

 private:
  std::size_t pushed_ = 0;
};

// Registers a value that must never be printed (a credential, a task token in flight). Every
// occurrence in a line is replaced. Values shorter than 8 characters are ignored (too likely to
// match ordinary text). Registration is counted: forget_secret undoes one add_secret.
void add_secret(std::string_view value);
void forget_secret(std::string_view value);

// Keeps a secret registered for the lifetime of the guard.
class ScopedSecret {
 public:
  explicit ScopedSecret(std::string value);
  ~ScopedSecret();
  ScopedSecret(const ScopedSecret&) = delete;
  ScopedSecret& operator=(const ScopedSecret&) = delete;

 private:
  std::string value_;
};

// The redaction applied to every line: registered secrets, and the values of sensitive fields
// (task tokens, passwords, keys, signatures, session tokens, response URLs) whether they appear as
// JSON members, query parameters, HTTP headers or SQL `PASSWORD '...'` clauses.
std::string redact(std::string_view text);

}  // namespace rstasker::log
