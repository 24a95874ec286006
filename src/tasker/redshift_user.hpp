// Custom::RedshiftUser: the declarative user's properties, checked strictly, and the SQL that
// creates, changes and drops it. Pure functions, no I/O; private to the tasker module.
//
// Injection is impossible by construction: every name must be lowercase ASCII letters, digits,
// `_` or `$` (so a double-quoted identifier can hold nothing but those), every literal is
// rebuilt from validated parts (hex digests, digits, a strict timestamp), and anything outside
// those alphabets is refused, never escaped.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "rstasker/common/json.hpp"

namespace rstasker::tasker {

// A user as a template declares it, in canonical form (so == means "no change").
struct RedshiftUser {
  std::string username;
  std::string password;  // a hash ("md5<32 hex>" / "sha256|<64 hex>|<64 hex>"), "" → DISABLE
  bool create_db = false;
  bool create_user = false;  // CREATEUSER: a superuser
  bool unrestricted_syslog_access = false;
  std::vector<std::string> groups;  // sorted, without duplicates
  std::string valid_until;          // "YYYY-MM-DD[ HH:MM[:SS]]", "" → no expiry ('infinity')
  std::optional<std::int64_t> connection_limit;  // nullopt → UNLIMITED
  std::optional<std::int64_t> session_timeout;   // seconds; nullopt → the cluster's setting

  bool operator==(const RedshiftUser&) const = default;
};

// Redshift's idle-session timeout range (seconds).
inline constexpr std::int64_t kMinSessionTimeout = 60;
inline constexpr std::int64_t kMaxSessionTimeout = 1'728'000;
// Redshift names are 1 to 127 bytes.
inline constexpr std::size_t kMaxIdentifierBytes = 127;

// Reads CloudFormation ResourceProperties (values may be JSON types or, as CloudFormation sends
// them, strings: "true", "3"). Throws InvalidRequest listing every problem at once; the message
// never repeats a password value.
RedshiftUser parse_redshift_user(const Json& properties);
// Only the username (a Delete needs nothing else). Throws InvalidRequest.
std::string parse_redshift_username(const Json& properties);

// CREATE USER with every declared option (one statement).
std::vector<std::string> create_user_sql(const RedshiftUser& user);
// The statements that turn `before` into `after`, in order: rename, options, password (re-set
// after a rename, which clears it), group removals, group additions. Empty when nothing changes.
// Throws InvalidRequest for a change that cannot work (an md5 hash kept across a rename: it is
// salted with the old name).
std::vector<std::string> update_user_sql(const RedshiftUser& before, const RedshiftUser& after);
// DROP USER IF EXISTS.
std::vector<std::string> drop_user_sql(const std::string& username);

// "" when `name` is an acceptable user or group name, else what is wrong with it.
std::string identifier_problem(std::string_view name);
// "" when `value` is an accepted password hash, else what is wrong (never quoting the value).
std::string password_problem(std::string_view value);

// `sql` with the literal after every PASSWORD keyword (any case, any whitespace between them,
// newlines included) replaced by '***'. The SQL this module writes carries password hashes, and
// the Data API returns a statement's text (QueryString) to whoever may describe it for 24 hours.
std::string redact_password_literals(std::string_view sql);

}  // namespace rstasker::tasker
