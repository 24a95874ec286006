// SQL text helpers for the Data API emulation: a lexer that tells code from literals, comments and
// quoted identifiers (PostgreSQL's rules), and the short list of Redshift-only syntax rewritten to
// PostgreSQL. Everything else Redshift-specific fails the way PostgreSQL fails.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace rstasker::local {

// One piece of SQL text. Only kCode segments may be rewritten or scanned for parameters.
struct SqlSegment {
  enum class Kind {
    kCode,              // keywords, identifiers, numbers, operators, whitespace
    kStringLiteral,     // '...' ('' escapes), E'...' (backslash escapes), B'..', X'..', U&'..'
    kDollarQuoted,      // $$...$$ or $tag$...$tag$
    kQuotedIdentifier,  // "..." ("" escapes)
    kComment,           // -- to end of line, or /* ... */ (nested)
  };
  Kind kind;
  std::size_t begin;  // byte offsets into the scanned text
  std::size_t end;
};

// Splits `sql` into consecutive segments covering all of it. Never fails: an unterminated literal,
// identifier or comment runs to the end of the text (PostgreSQL will report the error).
std::vector<SqlSegment> split_sql(std::string_view sql);

// A supported Redshift → PostgreSQL rewrite, for documentation (docs/local-stack.md lists them).
struct SqlRewriteRule {
  std::string_view redshift;    // the Redshift syntax
  std::string_view postgresql;  // what tasker-local sends instead
  std::string_view scope;       // where it applies
};

// The rewrites rewrite_redshift_sql applies, in a stable order.
//
// | Redshift                                  | PostgreSQL             | where                  |
// |-------------------------------------------|------------------------|------------------------|
// | CREATEUSER                                | SUPERUSER              | CREATE/ALTER USER      |
// | NOCREATEUSER                              | NOSUPERUSER            | CREATE/ALTER USER      |
// | SYSLOG ACCESS RESTRICTED / UNRESTRICTED   | (removed)              | CREATE/ALTER USER      |
// | [RESET] SESSION TIMEOUT <n>               | (removed)              | CREATE/ALTER USER      |
// | CONNECTION LIMIT UNLIMITED                | CONNECTION LIMIT -1    | CREATE/ALTER USER      |
// | PASSWORD DISABLE                          | PASSWORD NULL          | CREATE/ALTER USER      |
// | getdate()                                 | now()                  | anywhere in code       |
//
// Keywords match case-insensitively and only in code: never inside string literals, quoted
// identifiers, dollar-quoted bodies or comments.
const std::vector<SqlRewriteRule>& supported_rewrites();

struct RewriteResult {
  std::string sql;
  std::vector<std::string> applied;  // the `redshift` text of each rule applied, once per use
};

// Applies the supported rewrites to `sql` (which may hold several `;`-separated statements).
RewriteResult rewrite_redshift_sql(std::string_view sql);

}  // namespace rstasker::local
