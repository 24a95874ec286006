// The SQL lexer and the Redshift → PostgreSQL rewrites of tasker-local's Data API.
#include "local/sql_rewrite.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace rstasker::local {
namespace {

using Kind = SqlSegment::Kind;

// The text of every segment of `kind`, in order.
std::vector<std::string> pieces(std::string_view sql, Kind kind) {
  std::vector<std::string> out;
  for (const SqlSegment& segment : split_sql(sql)) {
    if (segment.kind == kind)
      out.emplace_back(sql.substr(segment.begin, segment.end - segment.begin));
  }
  return out;
}

TEST(SplitSql, SegmentsCoverTheTextWithoutGaps) {
  const std::string_view sql =
      "select 'a''b', E'c\\'d', \"q\"\"i\", $$x$$, $t$y$t$ -- c\n/* a /* b */ c */ 1";
  std::size_t expected_begin = 0;
  for (const SqlSegment& segment : split_sql(sql)) {
    EXPECT_EQ(segment.begin, expected_begin);
    EXPECT_LT(segment.begin, segment.end);
    expected_begin = segment.end;
  }
  EXPECT_EQ(expected_begin, sql.size());
}

TEST(SplitSql, RecognisesLiteralsIdentifiersAndComments) {
  const std::string_view sql =
      "select 'it''s', E'a\\'b', \"Col\"\"x\", $$body ' \"$$, $fn$ $$ $fn$ -- tail ' \n"
      "/* outer /* inner */ still */ 2";
  EXPECT_THAT(pieces(sql, Kind::kStringLiteral), ::testing::ElementsAre("'it''s'", "'a\\'b'"));
  EXPECT_THAT(pieces(sql, Kind::kQuotedIdentifier), ::testing::ElementsAre("\"Col\"\"x\""));
  EXPECT_THAT(pieces(sql, Kind::kDollarQuoted),
              ::testing::ElementsAre("$$body ' \"$$", "$fn$ $$ $fn$"));
  EXPECT_THAT(pieces(sql, Kind::kComment),
              ::testing::ElementsAre("-- tail ' ", "/* outer /* inner */ still */"));
}

TEST(SplitSql, BackslashesEscapeOnlyInEStrings) {
  // Standard strings: a backslash is an ordinary character, so the literal ends at the second '.
  EXPECT_THAT(pieces("select 'a\\', 1", Kind::kStringLiteral), ::testing::ElementsAre("'a\\'"));
  // A word ending in E is not an E prefix.
  EXPECT_THAT(pieces("select CASE'a\\' end", Kind::kStringLiteral),
              ::testing::ElementsAre("'a\\'"));
}

TEST(SplitSql, DollarSignsThatDoNotQuote) {
  EXPECT_TRUE(pieces("select $1, a$b$c from t", Kind::kDollarQuoted).empty());
}

TEST(SplitSql, UnterminatedPiecesRunToTheEnd) {
  EXPECT_THAT(pieces("select 'abc", Kind::kStringLiteral), ::testing::ElementsAre("'abc"));
  EXPECT_THAT(pieces("select /* abc", Kind::kComment), ::testing::ElementsAre("/* abc"));
  EXPECT_THAT(pieces("select $$abc", Kind::kDollarQuoted), ::testing::ElementsAre("$$abc"));
}

TEST(RewriteRedshiftSql, CreateUserOptions) {
  const RewriteResult result = rewrite_redshift_sql(
      "CREATE USER alice WITH PASSWORD 'md5abc' CREATEDB CREATEUSER SYSLOG ACCESS UNRESTRICTED "
      "IN GROUP analysts VALID UNTIL 'infinity' CONNECTION LIMIT UNLIMITED SESSION TIMEOUT 3600");
  EXPECT_EQ(result.sql,
            "CREATE USER alice WITH PASSWORD 'md5abc' CREATEDB SUPERUSER  IN GROUP analysts VALID "
            "UNTIL 'infinity' CONNECTION LIMIT -1 ");
  EXPECT_THAT(result.applied,
              ::testing::ElementsAre("CREATEUSER", "SYSLOG ACCESS RESTRICTED | UNRESTRICTED",
                                     "CONNECTION LIMIT UNLIMITED", "[RESET] SESSION TIMEOUT <n>"));
}

TEST(RewriteRedshiftSql, AlterUserOptionsAnyCase) {
  EXPECT_EQ(rewrite_redshift_sql("alter user bob nocreateuser syslog access restricted").sql,
            "alter user bob NOSUPERUSER ");
  EXPECT_EQ(rewrite_redshift_sql("ALTER USER bob RESET SESSION TIMEOUT;").sql, "ALTER USER bob ;");
  EXPECT_EQ(rewrite_redshift_sql("ALTER USER bob PASSWORD DISABLE").sql,
            "ALTER USER bob PASSWORD NULL");
}

TEST(RewriteRedshiftSql, UserNamesAreNotOptions) {
  // A user may be called createuser; only options after the name are rewritten.
  EXPECT_EQ(rewrite_redshift_sql("CREATE USER createuser CREATEUSER").sql,
            "CREATE USER createuser SUPERUSER");
  EXPECT_EQ(rewrite_redshift_sql("ALTER USER a RENAME TO createuser").sql,
            "ALTER USER a RENAME TO createuser");
}

TEST(RewriteRedshiftSql, OnlyUserStatementsGetUserRewrites) {
  const std::string sql = "select createuser, syslog from t where session = 'timeout'";
  EXPECT_EQ(rewrite_redshift_sql(sql).sql, sql);
  EXPECT_TRUE(rewrite_redshift_sql(sql).applied.empty());
  // The second statement is a CREATE USER, the first is not.
  EXPECT_EQ(rewrite_redshift_sql("select 1 createuser; create user x createuser").sql,
            "select 1 createuser; create user x SUPERUSER");
}

TEST(RewriteRedshiftSql, GetdateAnywhereInCode) {
  EXPECT_EQ(rewrite_redshift_sql("select getdate(), GETDATE ( ) from t").sql,
            "select now(), now() from t");
  EXPECT_EQ(rewrite_redshift_sql("insert into t values (getdate())").sql,
            "insert into t values (now())");
}

TEST(RewriteRedshiftSql, NeverTouchesLiteralsIdentifiersOrComments) {
  const std::string sql =
      "select 'getdate()', \"getdate()\", $$ CREATEUSER getdate() $$ -- getdate()\n"
      "/* getdate() */, myschema.getdate(), getdate";
  EXPECT_EQ(rewrite_redshift_sql(sql).sql, sql);
  const std::string user =
      "CREATE USER u PASSWORD 'SYSLOG ACCESS RESTRICTED CREATEUSER' /* SESSION TIMEOUT 5 */";
  EXPECT_EQ(rewrite_redshift_sql(user).sql, user);
}

TEST(RewriteRedshiftSql, UnrelatedSqlIsUnchanged) {
  const std::string sql = "CREATE TABLE t (id int primary key, at timestamp default now())";
  const RewriteResult result = rewrite_redshift_sql(sql);
  EXPECT_EQ(result.sql, sql);
  EXPECT_TRUE(result.applied.empty());
}

TEST(SupportedRewrites, ListsEveryRuleOnceForDocs) {
  const auto& rules = supported_rewrites();
  ASSERT_EQ(rules.size(), 7U);
  EXPECT_EQ(rules.front().redshift, "CREATEUSER");
  EXPECT_EQ(rules.front().postgresql, "SUPERUSER");
  EXPECT_EQ(rules.back().redshift, "getdate()");
  for (const SqlRewriteRule& rule : rules) {
    EXPECT_FALSE(rule.redshift.empty());
    EXPECT_FALSE(rule.postgresql.empty());
    EXPECT_FALSE(rule.scope.empty());
  }
}

}  // namespace
}  // namespace rstasker::local
