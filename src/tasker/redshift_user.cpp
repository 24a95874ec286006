// Custom::RedshiftUser properties and SQL. Every value that reaches SQL is checked against a
// small alphabet first; the builders check again, so a caller that skips parsing cannot inject.
#include "tasker/redshift_user.hpp"

#include <spdlog/fmt/fmt.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdio>
#include <limits>
#include <set>

#include "rstasker/common/error.hpp"
#include "rstasker/common/text.hpp"

namespace rstasker::tasker {

namespace {

constexpr std::array<std::string_view, 10> kUserProperties = {
    "ServiceToken",   "username",    "password",
    "create_db",      "create_user", "unrestricted_syslog_access",
    "groups",         "valid_until", "connection_limit",
    "session_timeout"};

constexpr std::size_t kMd5HexDigits = 32;
constexpr std::size_t kSha256HexDigits = 64;
constexpr std::size_t kMaxDisplayBytes = 64;

bool is_lower_alpha(char c) {
  return c >= 'a' && c <= 'z';
}
bool is_digit(char c) {
  return c >= '0' && c <= '9';
}
bool is_hex(char c) {
  return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}
bool all_hex(std::string_view text, std::size_t digits) {
  return text.size() == digits && std::all_of(text.begin(), text.end(), is_hex);
}

// A value shown back to the user: printable ASCII only, bounded, so a reason never carries
// control characters or a megabyte of input.
std::string display(std::string_view value) {
  std::string out = "'";
  for (std::size_t i = 0; i < value.size(); ++i) {
    if (out.size() > kMaxDisplayBytes) {
      out += "...";
      break;
    }
    const auto c = static_cast<unsigned char>(value[i]);
    out += c >= 0x20 && c < 0x7F ? static_cast<char>(c) : '?';
  }
  return out + "'";
}

// How a rejected character reads in a message: 'x' for printable ASCII, else a code.
std::string describe_byte(unsigned char c) {
  char buffer[16];
  if (c >= 0x21 && c < 0x7F) {
    std::snprintf(buffer, sizeof buffer, "'%c'", c);
  } else if (c < 0x80) {
    std::snprintf(buffer, sizeof buffer, "0x%02X", c);
  } else {
    return "a non-ASCII character";
  }
  return buffer;
}

std::string md5_instructions(std::string_view username) {
  std::string user = identifier_problem(username).empty() ? std::string(username) : "<username>";
  return "give 'md5' followed by the 32 hex digits of the MD5 of the password immediately "
         "followed by the user name (in a shell: printf '%s%s' \"$PASSWORD\" " +
         user + " | md5sum), or 'sha256|<64 hex digest>|<64 hex 256-bit salt>'";
}

// Problems found while reading the properties; all are reported together.
class Problems {
 public:
  void add(std::string problem) { list_.push_back(std::move(problem)); }
  bool empty() const { return list_.empty(); }
  [[noreturn]] void raise() const {
    std::string text;
    for (const auto& problem : list_) text += (text.empty() ? "" : "; ") + problem;
    throw invalid_request(text);
  }

 private:
  std::vector<std::string> list_;
};

// An optional property: absent, null and "" mean "not set".
const Json* optional_property(const Json& properties, std::string_view name) {
  auto it = properties.find(name);
  if (it == properties.end() || it->is_null()) return nullptr;
  if (it->is_string() && it->get_ref<const std::string&>().empty()) return nullptr;
  return &*it;
}

bool read_bool(const Json& properties, std::string_view name, Problems& problems) {
  const Json* value = optional_property(properties, name);
  if (value == nullptr) return false;
  if (value->is_boolean()) return value->get<bool>();
  if (value->is_string()) {
    const auto& text = value->get_ref<const std::string&>();
    if (iequals(text, "true")) return true;
    if (iequals(text, "false")) return false;
  }
  problems.add(std::string(name) + ": must be true or false");
  return false;
}

// A non-negative integer from a JSON integer or a string of digits; nullopt when it is neither.
std::optional<std::int64_t> to_count(const Json& value) {
  constexpr std::int64_t kMax = std::numeric_limits<std::int32_t>::max();
  if (value.is_number_unsigned()) {
    auto n = value.get<std::uint64_t>();
    return n <= static_cast<std::uint64_t>(kMax) ? std::optional<std::int64_t>(n) : std::nullopt;
  }
  if (value.is_number_integer()) {
    auto n = value.get<std::int64_t>();
    return n >= 0 && n <= kMax ? std::optional<std::int64_t>(n) : std::nullopt;
  }
  if (!value.is_string()) return std::nullopt;
  const auto& text = value.get_ref<const std::string&>();
  if (text.empty() || text.size() > 10 || !std::all_of(text.begin(), text.end(), is_digit)) {
    return std::nullopt;
  }
  std::int64_t n = std::stoll(text);
  return n <= kMax ? std::optional<std::int64_t>(n) : std::nullopt;
}

bool is_leap(int year) {
  return (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
}

// "YYYY-MM-DD", optionally followed by " HH:MM" or "THH:MM", optionally ":SS"; returns the
// canonical "YYYY-MM-DD HH:MM:SS" or nullopt.
std::optional<std::string> canonical_timestamp(std::string_view text) {
  auto number = [&](std::size_t at, std::size_t digits) -> std::optional<int> {
    if (at + digits > text.size()) return std::nullopt;
    int n = 0;
    for (std::size_t i = at; i < at + digits; ++i) {
      if (!is_digit(text[i])) return std::nullopt;
      n = n * 10 + (text[i] - '0');
    }
    return n;
  };
  if (text.size() != 10 && text.size() != 16 && text.size() != 19) return std::nullopt;
  auto year = number(0, 4), month = number(5, 2), day = number(8, 2);
  if (!year || !month || !day || text[4] != '-' || text[7] != '-') return std::nullopt;
  if (*year < 1000 || *month < 1 || *month > 12 || *day < 1) return std::nullopt;
  static constexpr std::array<int, 12> kDays = {31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  int days = kDays[static_cast<std::size_t>(*month - 1)] + (*month == 2 && is_leap(*year) ? 1 : 0);
  if (*day > days) return std::nullopt;
  int hour = 0, minute = 0, second = 0;
  if (text.size() >= 16) {
    auto h = number(11, 2), m = number(14, 2);
    if ((text[10] != ' ' && text[10] != 'T') || text[13] != ':' || !h || !m) return std::nullopt;
    if (*h > 23 || *m > 59) return std::nullopt;
    hour = *h;
    minute = *m;
  }
  if (text.size() == 19) {
    auto s = number(17, 2);
    if (text[16] != ':' || !s || *s > 59) return std::nullopt;
    second = *s;
  }
  return fmt::format("{:04d}-{:02d}-{:02d} {:02d}:{:02d}:{:02d}", *year, *month, *day, hour, minute,
                     second);
}

// The canonical form of an accepted hash (lowercase prefix and hex), or "" when not one.
std::string canonical_password(std::string_view value) {
  if (!password_problem(value).empty()) return {};
  return ascii_lower(value);
}

std::string username_from(const Json& properties, Problems& problems) {
  auto it = properties.find("username");
  if (it == properties.end() || it->is_null()) {
    problems.add("username: required (the name of the Redshift user)");
    return {};
  }
  if (!it->is_string()) {
    problems.add("username: must be a string, not " + std::string(json_type_name(*it)));
    return {};
  }
  const auto& name = it->get_ref<const std::string&>();
  if (auto problem = identifier_problem(name); !problem.empty()) {
    problems.add("username " + display(name) + ": " + problem);
    return {};
  }
  return name;
}

void check_property_names(const Json& properties, Problems& problems) {
  for (const auto& item : properties.items()) {
    // A plain reference, not a structured binding: clang 14 (the fuzz build) cannot capture those.
    const std::string& key = item.key();
    if (std::find(kUserProperties.begin(), kUserProperties.end(), key) != kUserProperties.end()) {
      continue;
    }
    std::string problem = "unknown property " + display(key);
    auto near = std::find_if(kUserProperties.begin(), kUserProperties.end(),
                             [&](std::string_view known) { return iequals(known, key); });
    if (near != kUserProperties.end()) {
      problem += " (did you mean '" + std::string(*near) + "'?)";
    } else {
      problem +=
          " (supported: username, password, create_db, create_user, "
          "unrestricted_syslog_access, groups, valid_until, connection_limit, "
          "session_timeout)";
    }
    problems.add(problem);
  }
}

void require_valid(std::string_view name) {
  if (auto problem = identifier_problem(name); !problem.empty()) {
    throw Error(error_names::kInternalError, "refusing to build SQL for an unchecked name");
  }
}

std::string quote_name(std::string_view name) {
  require_valid(name);
  std::string quoted;
  quoted.reserve(name.size() + 2);
  // Appended rather than `"\"" + std::string(name)`: GCC 12 misreads that at -O2 (-Wrestrict).
  quoted.append(1, '"').append(name).append(1, '"');
  return quoted;
}

// PASSWORD '<hash>' or PASSWORD DISABLE.
std::string password_clause(const std::string& password) {
  if (password.empty()) return "PASSWORD DISABLE";
  if (!password_problem(password).empty()) {
    throw Error(error_names::kInternalError, "refusing to build SQL for an unchecked password");
  }
  return "PASSWORD '" + password + "'";
}

std::string valid_until_literal(const std::string& valid_until) {
  if (valid_until.empty()) return "'infinity'";
  if (canonical_timestamp(valid_until) != valid_until) {
    throw Error(error_names::kInternalError, "refusing to build SQL for an unchecked timestamp");
  }
  return "'" + valid_until + "'";
}

std::string connection_limit_clause(const std::optional<std::int64_t>& limit) {
  return "CONNECTION LIMIT " + (limit ? std::to_string(*limit) : std::string("UNLIMITED"));
}

}  // namespace

std::string identifier_problem(std::string_view name) {
  if (name.empty()) return "must not be empty";
  if (name.size() > kMaxIdentifierBytes) {
    return "is " + std::to_string(name.size()) + " bytes long; Redshift names are at most " +
           std::to_string(kMaxIdentifierBytes);
  }
  for (std::size_t i = 0; i < name.size(); ++i) {
    const char c = name[i];
    if (is_lower_alpha(c) || c == '_' || (i > 0 && (is_digit(c) || c == '$'))) continue;
    const auto byte = static_cast<unsigned char>(c);
    if (c >= 'A' && c <= 'Z') {
      std::string problem = "must be lowercase (Redshift folds names to lowercase)";
      if (identifier_problem(ascii_lower(name)).empty()) {
        problem += ": write " + display(ascii_lower(name));
      }
      return problem;
    }
    if (i == 0 && (is_digit(c) || c == '$')) return "must start with a letter a-z or '_'";
    return "contains " + describe_byte(byte) + " at byte " + std::to_string(i + 1) +
           "; only a-z, 0-9, '_' and '$' are accepted";
  }
  if (name == "public") return "PUBLIC is reserved";
  if (name.starts_with("pg_")) return "names starting with 'pg_' are reserved";
  return {};
}

std::string password_problem(std::string_view value) {
  const std::string lower = ascii_lower(value.substr(0, std::min<std::size_t>(value.size(), 7)));
  if (lower.starts_with("md5") && value.size() == 3 + kMd5HexDigits &&
      all_hex(value.substr(3), kMd5HexDigits)) {
    return {};
  }
  if (lower == "sha256|") {
    std::string_view rest = value.substr(7);
    auto bar = rest.find('|');
    if (bar == std::string_view::npos) {
      return "'sha256|' followed by the password itself is the password in clear text; give "
             "'sha256|<64 hex digest>|<64 hex 256-bit salt>' or an md5 hash instead";
    }
    if (all_hex(rest.substr(0, bar), kSha256HexDigits) &&
        all_hex(rest.substr(bar + 1), kSha256HexDigits)) {
      return {};
    }
    return "a SHA-256 password is 'sha256|<digest>|<salt>' with a 64 hex digit digest and a 64 "
           "hex digit (256-bit) salt";
  }
  if (lower.starts_with("md5")) {
    return "an md5 password is 'md5' followed by exactly 32 hex digits";
  }
  return "only a password hash is accepted, never the password itself";
}

RedshiftUser parse_redshift_user(const Json& properties) {
  Problems problems;
  if (!properties.is_object()) {
    throw invalid_request("ResourceProperties must be an object with at least 'username'");
  }
  check_property_names(properties, problems);

  RedshiftUser user;
  user.username = username_from(properties, problems);

  if (const Json* value = optional_property(properties, "password")) {
    if (!value->is_string()) {
      problems.add("password: must be a string");
    } else if (auto problem = password_problem(value->get_ref<const std::string&>());
               !problem.empty()) {
      problems.add("password: " + problem + "; " + md5_instructions(user.username));
    } else {
      user.password = canonical_password(value->get_ref<const std::string&>());
    }
  }

  user.create_db = read_bool(properties, "create_db", problems);
  user.create_user = read_bool(properties, "create_user", problems);
  user.unrestricted_syslog_access = read_bool(properties, "unrestricted_syslog_access", problems);

  if (const Json* value = optional_property(properties, "groups")) {
    if (!value->is_array()) {
      problems.add("groups: must be a list of group names");
    } else {
      std::set<std::string> groups;
      for (const Json& group : *value) {
        if (!group.is_string()) {
          problems.add("groups: every entry must be a string, not " +
                       std::string(json_type_name(group)));
          continue;
        }
        const auto& name = group.get_ref<const std::string&>();
        std::string problem = identifier_problem(name);
        if (problem.empty() && name.starts_with("__")) {
          problem = "names starting with '__' are reserved for Redshift";
        }
        if (!problem.empty()) {
          problems.add("group " + display(name) + ": " + problem);
          continue;
        }
        groups.insert(name);
      }
      user.groups.assign(groups.begin(), groups.end());
    }
  }

  if (const Json* value = optional_property(properties, "valid_until")) {
    const std::string text = value->is_string() ? value->get<std::string>() : std::string();
    if (iequals(text, "infinity")) {
      user.valid_until.clear();
    } else if (auto canonical = canonical_timestamp(text)) {
      user.valid_until = *canonical;
    } else {
      problems.add("valid_until " + display(text) +
                   ": must be 'YYYY-MM-DD', 'YYYY-MM-DD HH:MM[:SS]' (a real date and time) "
                   "or 'infinity'");
    }
    if (!user.valid_until.empty() && optional_property(properties, "password") == nullptr) {
      problems.add("valid_until: it sets when the password expires, so it needs a password");
    }
  }

  if (const Json* value = optional_property(properties, "connection_limit")) {
    if (value->is_string() && iequals(value->get_ref<const std::string&>(), "unlimited")) {
      user.connection_limit.reset();
    } else if (auto limit = to_count(*value)) {
      user.connection_limit = *limit;
    } else {
      problems.add("connection_limit: must be a non-negative integer or UNLIMITED");
    }
  }

  if (const Json* value = optional_property(properties, "session_timeout")) {
    auto seconds = to_count(*value);
    if (!seconds || *seconds < kMinSessionTimeout || *seconds > kMaxSessionTimeout) {
      problems.add("session_timeout: must be a whole number of seconds from " +
                   std::to_string(kMinSessionTimeout) + " to " +
                   std::to_string(kMaxSessionTimeout) + " (20 days)");
    } else {
      user.session_timeout = *seconds;
    }
  }

  if (!problems.empty()) problems.raise();
  return user;
}

std::string parse_redshift_username(const Json& properties) {
  if (!properties.is_object()) {
    throw invalid_request("ResourceProperties must be an object with at least 'username'");
  }
  Problems problems;
  std::string name = username_from(properties, problems);
  if (!problems.empty()) problems.raise();
  return name;
}

std::vector<std::string> create_user_sql(const RedshiftUser& user) {
  std::string sql =
      "CREATE USER " + quote_name(user.username) + " " + password_clause(user.password);
  if (user.create_db) sql += " CREATEDB";
  if (user.create_user) sql += " CREATEUSER";
  if (user.unrestricted_syslog_access) sql += " SYSLOG ACCESS UNRESTRICTED";
  if (!user.groups.empty()) {
    sql += " IN GROUP ";
    for (std::size_t i = 0; i < user.groups.size(); ++i) {
      sql += (i == 0 ? "" : ", ") + quote_name(user.groups[i]);
    }
  }
  if (!user.valid_until.empty()) sql += " VALID UNTIL " + valid_until_literal(user.valid_until);
  if (user.connection_limit) sql += " " + connection_limit_clause(user.connection_limit);
  if (user.session_timeout) sql += " SESSION TIMEOUT " + std::to_string(*user.session_timeout);
  return {sql};
}

std::vector<std::string> update_user_sql(const RedshiftUser& before, const RedshiftUser& after) {
  std::vector<std::string> sqls;
  const std::string name = quote_name(after.username);
  const bool renamed = before.username != after.username;
  if (renamed) {
    sqls.push_back("ALTER USER " + quote_name(before.username) + " RENAME TO " + name);
  }

  // Renaming clears the password, so a password is set again after every rename. An md5 hash is
  // salted with the user name: the same hash cannot work under the new name.
  if (!after.password.empty()) {
    if (renamed && after.password == before.password && after.password.starts_with("md5")) {
      throw invalid_request(
          "password: an md5 hash is salted with the user name, so the hash made for " +
          display(before.username) + " cannot log in as " + display(after.username) +
          "; compute a new one: " + md5_instructions(after.username));
    }
    if (renamed || after.password != before.password || after.valid_until != before.valid_until) {
      sqls.push_back("ALTER USER " + name + " " + password_clause(after.password) +
                     " VALID UNTIL " + valid_until_literal(after.valid_until));
    }
  } else if (!before.password.empty()) {
    sqls.push_back("ALTER USER " + name + " PASSWORD DISABLE");
  }

  if (after.create_db != before.create_db) {
    sqls.push_back("ALTER USER " + name + (after.create_db ? " CREATEDB" : " NOCREATEDB"));
  }
  if (after.create_user != before.create_user) {
    sqls.push_back("ALTER USER " + name + (after.create_user ? " CREATEUSER" : " NOCREATEUSER"));
  }
  if (after.unrestricted_syslog_access != before.unrestricted_syslog_access) {
    sqls.push_back("ALTER USER " + name + " SYSLOG ACCESS " +
                   (after.unrestricted_syslog_access ? "UNRESTRICTED" : "RESTRICTED"));
  }
  if (after.connection_limit != before.connection_limit) {
    sqls.push_back("ALTER USER " + name + " " + connection_limit_clause(after.connection_limit));
  }
  if (after.session_timeout != before.session_timeout) {
    sqls.push_back("ALTER USER " + name +
                   (after.session_timeout
                        ? " SESSION TIMEOUT " + std::to_string(*after.session_timeout)
                        : std::string(" RESET SESSION TIMEOUT")));
  }

  // Membership belongs to the user, not the name: after a rename it follows the new name.
  std::vector<std::string> removed;
  std::vector<std::string> added;
  std::set_difference(before.groups.begin(), before.groups.end(), after.groups.begin(),
                      after.groups.end(), std::back_inserter(removed));
  std::set_difference(after.groups.begin(), after.groups.end(), before.groups.begin(),
                      before.groups.end(), std::back_inserter(added));
  for (const auto& group : removed) {
    sqls.push_back("ALTER GROUP " + quote_name(group) + " DROP USER " + name);
  }
  for (const auto& group : added) {
    sqls.push_back("ALTER GROUP " + quote_name(group) + " ADD USER " + name);
  }
  return sqls;
}

std::vector<std::string> drop_user_sql(const std::string& username) {
  return {"DROP USER IF EXISTS " + quote_name(username)};
}

namespace {

// Where the string literal opening at `quote` ends (one past its closing quote, or the end of
// `sql` when it is never closed). Inside it, a doubled quote ('') and a backslash escape (\')
// do not close it.
std::size_t end_of_literal(std::string_view sql, std::size_t quote) {
  std::size_t i = quote + 1;
  while (i < sql.size()) {
    if (sql[i] == '\\') {
      i += 2;
    } else if (sql[i] == '\'' && i + 1 < sql.size() && sql[i + 1] == '\'') {
      i += 2;
    } else if (sql[i] == '\'') {
      return i + 1;
    } else {
      ++i;
    }
  }
  return sql.size();
}

}  // namespace

std::string redact_password_literals(std::string_view sql) {
  constexpr std::string_view kKeyword = "password";
  auto word_char = [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_' || c == '$';
  };
  std::string out;
  std::size_t i = 0;
  while (i < sql.size()) {
    if (sql[i] == '\'') {  // a literal not after PASSWORD: kept, and nothing inside it matches
      const std::size_t end = end_of_literal(sql, i);
      out.append(sql.substr(i, end - i));
      i = end;
      continue;
    }
    const bool keyword =
        (i == 0 || !word_char(sql[i - 1])) && iequals(sql.substr(i, kKeyword.size()), kKeyword) &&
        (i + kKeyword.size() == sql.size() || !word_char(sql[i + kKeyword.size()]));
    if (!keyword) {
      out += sql[i++];
      continue;
    }
    std::size_t quote = i + kKeyword.size();
    while (quote < sql.size() && std::isspace(static_cast<unsigned char>(sql[quote])) != 0) {
      ++quote;
    }
    out.append(sql.substr(i, quote - i));
    i = quote;
    if (quote < sql.size() && sql[quote] == '\'') {  // not PASSWORD DISABLE, a column, ...
      out += "'***'";
      i = end_of_literal(sql, quote);
    }
  }
  return out;
}

}  // namespace rstasker::tasker
