// The SQL lexer and the Redshift → PostgreSQL rewrites (see sql_rewrite.hpp for the table).
#include "local/sql_rewrite.hpp"

#include <algorithm>
#include <array>
#include <cctype>
#include <optional>

#include "rstasker/common/text.hpp"

namespace rstasker::local {
namespace {

bool is_ident_start(char c) {
  const auto u = static_cast<unsigned char>(c);
  return std::isalpha(u) != 0 || c == '_' || u >= 0x80;
}

bool is_ident_char(char c) {
  const auto u = static_cast<unsigned char>(c);
  return std::isalnum(u) != 0 || c == '_' || c == '$' || u >= 0x80;
}

// End (exclusive) of a quoted run starting at `begin` (the opening quote): a doubled quote is an
// escaped quote; with `backslash_escapes`, a backslash escapes the next character.
std::size_t end_of_quoted(std::string_view sql, std::size_t begin, char quote,
                          bool backslash_escapes) {
  std::size_t i = begin + 1;
  while (i < sql.size()) {
    const char c = sql[i];
    if (backslash_escapes && c == '\\') {
      i += 2;
    } else if (c == quote) {
      if (i + 1 < sql.size() && sql[i + 1] == quote) {
        i += 2;
      } else {
        return i + 1;
      }
    } else {
      ++i;
    }
  }
  return sql.size();
}

// The dollar-quote tag ("$$" or "$name$") starting at `begin`, or nullopt when `$` starts none
// (a positional parameter such as $1, or a `$` inside an identifier).
std::optional<std::string_view> dollar_tag_at(std::string_view sql, std::size_t begin) {
  if (begin > 0 && is_ident_char(sql[begin - 1])) return std::nullopt;
  std::size_t i = begin + 1;
  if (i < sql.size() && sql[i] == '$') return sql.substr(begin, 2);
  if (i >= sql.size() || !is_ident_start(sql[i])) return std::nullopt;
  while (i < sql.size() && is_ident_char(sql[i]) && sql[i] != '$') ++i;
  if (i < sql.size() && sql[i] == '$') return sql.substr(begin, i + 1 - begin);
  return std::nullopt;
}

std::size_t end_of_block_comment(std::string_view sql, std::size_t begin) {
  int depth = 0;
  std::size_t i = begin;
  while (i + 1 < sql.size()) {
    if (sql[i] == '/' && sql[i + 1] == '*') {
      ++depth;
      i += 2;
    } else if (sql[i] == '*' && sql[i + 1] == '/') {
      --depth;
      i += 2;
      if (depth == 0) return i;
    } else {
      ++i;
    }
  }
  return sql.size();
}

// A token of code: a word (identifier, keyword or number), a single punctuation character, or a
// whole non-code segment (literal or quoted identifier; comments and whitespace are skipped).
struct Token {
  enum class Kind { kWord, kPunct, kOpaque };
  Kind kind;
  std::size_t begin;
  std::size_t end;
};

std::vector<Token> tokenize(std::string_view sql) {
  std::vector<Token> tokens;
  for (const SqlSegment& segment : split_sql(sql)) {
    if (segment.kind == SqlSegment::Kind::kComment) continue;
    if (segment.kind != SqlSegment::Kind::kCode) {
      tokens.push_back({Token::Kind::kOpaque, segment.begin, segment.end});
      continue;
    }
    std::size_t i = segment.begin;
    while (i < segment.end) {
      const char c = sql[i];
      if (std::isspace(static_cast<unsigned char>(c)) != 0) {
        ++i;
      } else if (is_ident_char(c)) {
        const std::size_t start = i;
        while (i < segment.end && is_ident_char(sql[i])) ++i;
        tokens.push_back({Token::Kind::kWord, start, i});
      } else {
        tokens.push_back({Token::Kind::kPunct, i, i + 1});
        ++i;
      }
    }
  }
  return tokens;
}

// Indexed by the rewriter below; the order is the documented order.
constexpr std::array kRules = {
    SqlRewriteRule{"CREATEUSER", "SUPERUSER", "CREATE USER / ALTER USER options"},
    SqlRewriteRule{"NOCREATEUSER", "NOSUPERUSER", "CREATE USER / ALTER USER options"},
    SqlRewriteRule{"SYSLOG ACCESS RESTRICTED | UNRESTRICTED", "(removed)",
                   "CREATE USER / ALTER USER options"},
    SqlRewriteRule{"[RESET] SESSION TIMEOUT <n>", "(removed)", "CREATE USER / ALTER USER options"},
    SqlRewriteRule{"CONNECTION LIMIT UNLIMITED", "CONNECTION LIMIT -1",
                   "CREATE USER / ALTER USER options"},
    SqlRewriteRule{"PASSWORD DISABLE", "PASSWORD NULL", "CREATE USER / ALTER USER options"},
    SqlRewriteRule{"getdate()", "now()", "anywhere in code (not schema-qualified)"},
};

struct Edit {
  std::size_t begin;
  std::size_t end;
  std::string_view replacement;
  std::string_view rule;
};

class Rewriter {
 public:
  explicit Rewriter(std::string_view sql) : sql_(sql), tokens_(tokenize(sql)) {}

  RewriteResult run() {
    std::size_t start = 0;
    for (std::size_t i = 0; i <= tokens_.size(); ++i) {
      if (i == tokens_.size() || is_punct(i, ';')) {
        rewrite_statement(start, i);
        start = i + 1;
      }
    }
    std::sort(edits_.begin(), edits_.end(),
              [](const Edit& a, const Edit& b) { return a.begin < b.begin; });
    RewriteResult result;
    std::size_t copied = 0;
    for (const Edit& edit : edits_) {
      result.sql.append(sql_.substr(copied, edit.begin - copied));
      result.sql.append(edit.replacement);
      copied = edit.end;
      result.applied.emplace_back(edit.rule);
    }
    result.sql.append(sql_.substr(copied));
    return result;
  }

 private:
  std::string_view text(std::size_t i) const {
    return sql_.substr(tokens_[i].begin, tokens_[i].end - tokens_[i].begin);
  }
  bool is_word(std::size_t i, std::size_t end, std::string_view word) const {
    return i < end && tokens_[i].kind == Token::Kind::kWord && iequals(text(i), word);
  }
  bool is_punct(std::size_t i, char c) const {
    return i < tokens_.size() && tokens_[i].kind == Token::Kind::kPunct &&
           sql_[tokens_[i].begin] == c;
  }
  bool is_number(std::size_t i, std::size_t end) const {
    if (i >= end || tokens_[i].kind != Token::Kind::kWord) return false;
    const std::string_view t = text(i);
    return std::all_of(t.begin(), t.end(),
                       [](char c) { return std::isdigit(static_cast<unsigned char>(c)) != 0; });
  }
  void replace(std::size_t first, std::size_t last, std::string_view with, std::string_view rule) {
    edits_.push_back({tokens_[first].begin, tokens_[last].end, with, rule});
  }

  // Tokens [begin, end) form one statement.
  void rewrite_statement(std::size_t begin, std::size_t end) {
    for (std::size_t i = begin; i < end; ++i) {
      // getdate() → now(), unless schema-qualified (then it is someone's own function).
      if (is_word(i, end, "getdate") && is_punct(i + 1, '(') && is_punct(i + 2, ')') &&
          !(i > begin && is_punct(i - 1, '.'))) {
        replace(i, i + 2, "now()", kRules[6].redshift);
        i += 2;
      }
    }
    const bool user_statement = end - begin >= 3 &&
                                (is_word(begin, end, "CREATE") || is_word(begin, end, "ALTER")) &&
                                is_word(begin + 1, end, "USER");
    if (!user_statement) return;
    // Token begin+2 is the user name; scan the options after it.
    for (std::size_t i = begin + 3; i < end; ++i) {
      if (is_word(i, end, "TO")) {
        ++i;  // RENAME TO <new name>: a name, not an option
      } else if (is_word(i, end, "CREATEUSER")) {
        replace(i, i, "SUPERUSER", kRules[0].redshift);
      } else if (is_word(i, end, "NOCREATEUSER")) {
        replace(i, i, "NOSUPERUSER", kRules[1].redshift);
      } else if (is_word(i, end, "SYSLOG") && is_word(i + 1, end, "ACCESS") &&
                 (is_word(i + 2, end, "RESTRICTED") || is_word(i + 2, end, "UNRESTRICTED"))) {
        replace(i, i + 2, "", kRules[2].redshift);
        i += 2;
      } else if (is_word(i, end, "RESET") && is_word(i + 1, end, "SESSION") &&
                 is_word(i + 2, end, "TIMEOUT")) {
        replace(i, i + 2, "", kRules[3].redshift);
        i += 2;
      } else if (is_word(i, end, "SESSION") && is_word(i + 1, end, "TIMEOUT") &&
                 is_number(i + 2, end)) {
        replace(i, i + 2, "", kRules[3].redshift);
        i += 2;
      } else if (is_word(i, end, "CONNECTION") && is_word(i + 1, end, "LIMIT") &&
                 is_word(i + 2, end, "UNLIMITED")) {
        replace(i + 2, i + 2, "-1", kRules[4].redshift);
        i += 2;
      } else if (is_word(i, end, "PASSWORD") && is_word(i + 1, end, "DISABLE")) {
        replace(i + 1, i + 1, "NULL", kRules[5].redshift);
        i += 1;
      }
    }
  }

  std::string_view sql_;
  std::vector<Token> tokens_;
  std::vector<Edit> edits_;
};

}  // namespace

std::vector<SqlSegment> split_sql(std::string_view sql) {
  using Kind = SqlSegment::Kind;
  std::vector<SqlSegment> segments;
  std::size_t code_start = 0;
  std::size_t i = 0;
  auto emit = [&](Kind kind, std::size_t begin, std::size_t end) {
    if (begin > code_start) segments.push_back({Kind::kCode, code_start, begin});
    segments.push_back({kind, begin, end});
    code_start = end;
    i = end;
  };
  while (i < sql.size()) {
    const char c = sql[i];
    const char next = i + 1 < sql.size() ? sql[i + 1] : '\0';
    if (c == '-' && next == '-') {
      const std::size_t eol = sql.find('\n', i);
      emit(Kind::kComment, i, eol == std::string_view::npos ? sql.size() : eol);
    } else if (c == '/' && next == '*') {
      emit(Kind::kComment, i, end_of_block_comment(sql, i));
    } else if (c == '\'') {
      // E'...' (any case) takes backslash escapes when the E is not the end of a longer word.
      const bool escape = i > 0 && (sql[i - 1] == 'E' || sql[i - 1] == 'e') &&
                          (i < 2 || !is_ident_char(sql[i - 2]));
      emit(Kind::kStringLiteral, i, end_of_quoted(sql, i, '\'', escape));
    } else if (c == '"') {
      emit(Kind::kQuotedIdentifier, i, end_of_quoted(sql, i, '"', false));
    } else if (c == '$') {
      if (const auto tag = dollar_tag_at(sql, i)) {
        const std::size_t close = sql.find(*tag, i + tag->size());
        emit(Kind::kDollarQuoted, i,
             close == std::string_view::npos ? sql.size() : close + tag->size());
      } else {
        ++i;
      }
    } else {
      ++i;
    }
  }
  if (code_start < sql.size()) segments.push_back({Kind::kCode, code_start, sql.size()});
  return segments;
}

const std::vector<SqlRewriteRule>& supported_rewrites() {
  static const std::vector<SqlRewriteRule> rules(kRules.begin(), kRules.end());
  return rules;
}

RewriteResult rewrite_redshift_sql(std::string_view sql) {
  return Rewriter(sql).run();
}

}  // namespace rstasker::local
