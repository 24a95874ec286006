// Custom::RedshiftUser: property checks, the SQL for each operation, and injection attempts.
#include "tasker/redshift_user.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "rstasker/common/error.hpp"

namespace rstasker::tasker {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::Not;

const std::string kMd5 = "md5153c434b4b77c89e6b94f12c5393af5b";
const std::string kSha256 =
    "sha256|fe95f2bc7c4a111b6f0f7d0b60bfedd1935fb295f8dce1d62708ab8d2f564baf|"
    "c721bff5d9042cf541ff7b9d48fa8a6e545c19a763e3710151f9513038b0f6c6";

// Every statement we build must read as keywords, numbers and commas outside literals, names of
// [a-z0-9_$] inside double quotes, and hashes / timestamps inside single quotes. Anything else
// would mean text from a property reached the SQL unchecked.
void expect_safe_sql(const std::string& sql) {
  enum { kCode, kName, kLiteral } where = kCode;
  for (char c : sql) {
    switch (where) {
      case kCode:
        if (c == '"') {
          where = kName;
        } else if (c == '\'') {
          where = kLiteral;
        } else {
          ASSERT_TRUE((c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == ' ' || c == ',')
              << "unexpected '" << c << "' in code of: " << sql;
        }
        break;
      case kName:
        if (c == '"') {
          where = kCode;
        } else {
          ASSERT_TRUE((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_' || c == '$')
              << "unexpected '" << c << "' in a name of: " << sql;
        }
        break;
      case kLiteral:
        if (c == '\'') {
          where = kCode;
        } else {
          ASSERT_TRUE((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '|' || c == ':' ||
                      c == '-' || c == ' ')
              << "unexpected '" << c << "' in a literal of: " << sql;
        }
        break;
    }
  }
  EXPECT_EQ(where, kCode) << "unterminated quote in: " << sql;
}

void expect_safe_sql(const std::vector<std::string>& sqls) {
  for (const auto& sql : sqls) expect_safe_sql(sql);
}

std::string problem_of(const Json& properties) {
  try {
    parse_redshift_user(properties);
  } catch (const Error& e) {
    EXPECT_EQ(e.name(), error_names::kInvalidRequest);
    return e.message();
  }
  ADD_FAILURE() << "accepted: " << properties.dump();
  return {};
}

Json full_user() {
  return {{"ServiceToken", "arn:aws:lambda:eu-west-1:012345678910:function:redshift-tasker"},
          {"username", "etl_loader"},
          {"password", kMd5},
          {"create_db", true},
          {"create_user", false},
          {"unrestricted_syslog_access", true},
          {"groups", {"readers", "loaders"}},
          {"valid_until", "2030-06-30 12:00"},
          {"connection_limit", 3},
          {"session_timeout", 3600}};
}

// What describeStatement returns of a statement's SQL: every password literal hidden, whatever
// its quoting, and nothing else changed.
TEST(RedactPasswordLiterals, HidesEveryLiteralAfterPasswordAndNothingElse) {
  EXPECT_EQ(redact_password_literals("CREATE USER \"u\" PASSWORD 'md5abc' CREATEDB"),
            "CREATE USER \"u\" PASSWORD '***' CREATEDB");
  EXPECT_EQ(redact_password_literals("alter user u password\n\t 'x''y' valid until 'z'"),
            "alter user u password\n\t '***' valid until 'z'");
  EXPECT_EQ(redact_password_literals("ALTER USER u PASSWORD 'a\\'b' CREATEUSER"),
            "ALTER USER u PASSWORD '***' CREATEUSER");
  EXPECT_EQ(redact_password_literals("create user a password 'one'; create user b PaSsWoRd 'two'"),
            "create user a password '***'; create user b PaSsWoRd '***'");
  EXPECT_EQ(redact_password_literals("ALTER USER u PASSWORD 'never closed"),
            "ALTER USER u PASSWORD '***'");
  for (const char* kept :
       {"ALTER USER u PASSWORD DISABLE", "select old_password 'x' from t", "select passwords 'x'",
        "select 'password' as p, 'it''s password ' || 'x'", "", "PASSWORD"}) {
    EXPECT_EQ(redact_password_literals(kept), kept);
  }
}

TEST(RedshiftUserSql, CreateStatesEveryDeclaredOptionInOneStatement) {
  auto sqls = create_user_sql(parse_redshift_user(full_user()));
  EXPECT_THAT(sqls, ElementsAre("CREATE USER \"etl_loader\" PASSWORD "
                                "'md5153c434b4b77c89e6b94f12c5393af5b' CREATEDB SYSLOG ACCESS "
                                "UNRESTRICTED IN GROUP \"loaders\", \"readers\" VALID UNTIL "
                                "'2030-06-30 12:00:00' CONNECTION LIMIT 3 SESSION TIMEOUT 3600"));
  expect_safe_sql(sqls);
}

TEST(RedshiftUserSql, CreateWithoutPasswordDisablesIt) {
  EXPECT_THAT(create_user_sql(parse_redshift_user({{"username", "etl_loader"}})),
              ElementsAre("CREATE USER \"etl_loader\" PASSWORD DISABLE"));
}

TEST(RedshiftUserSql, PropertiesAsCloudFormationStringsMeanTheSame) {
  Json strings = {{"username", "etl_loader"},
                  {"password", kMd5},
                  {"create_db", "true"},
                  {"create_user", "False"},
                  {"unrestricted_syslog_access", "TRUE"},
                  {"groups", {"readers", "loaders", "readers"}},
                  {"valid_until", "2030-06-30T12:00:00"},
                  {"connection_limit", "3"},
                  {"session_timeout", "3600"}};
  EXPECT_EQ(parse_redshift_user(strings), parse_redshift_user(full_user()));
}

TEST(RedshiftUserSql, EmptyStringsMeanNotSet) {
  RedshiftUser user = parse_redshift_user({{"username", "u1"},
                                           {"password", ""},
                                           {"valid_until", ""},
                                           {"connection_limit", ""},
                                           {"session_timeout", ""},
                                           {"groups", ""}});
  RedshiftUser expected;
  expected.username = "u1";
  EXPECT_EQ(user, expected);
}

TEST(RedshiftUserSql, UpdateRenamesThenSetsPasswordOptionsAndGroups) {
  Json before = full_user();
  Json after = full_user();
  after["username"] = "etl_writer";
  after["password"] = "md5aaaabbbbccccddddeeeeffff00001111";  // made for the new name
  after["create_db"] = "false";
  after["connection_limit"] = "UNLIMITED";
  after["session_timeout"] = nullptr;
  after["groups"] = {"loaders", "writers"};
  auto sqls = update_user_sql(parse_redshift_user(before), parse_redshift_user(after));
  EXPECT_THAT(sqls,
              ElementsAre("ALTER USER \"etl_loader\" RENAME TO \"etl_writer\"",
                          "ALTER USER \"etl_writer\" PASSWORD "
                          "'md5aaaabbbbccccddddeeeeffff00001111' VALID UNTIL '2030-06-30 12:00:00'",
                          "ALTER USER \"etl_writer\" NOCREATEDB",
                          "ALTER USER \"etl_writer\" CONNECTION LIMIT UNLIMITED",
                          "ALTER USER \"etl_writer\" RESET SESSION TIMEOUT",
                          "ALTER GROUP \"readers\" DROP USER \"etl_writer\"",
                          "ALTER GROUP \"writers\" ADD USER \"etl_writer\""));
  expect_safe_sql(sqls);
}

TEST(RedshiftUserSql, UpdateWithoutChangeNeedsNoSql) {
  Json same = full_user();
  same["create_db"] = "true";  // a string this time: still the same user
  same["groups"] = {"loaders", "readers", "loaders"};
  EXPECT_TRUE(update_user_sql(parse_redshift_user(full_user()), parse_redshift_user(same)).empty());
}

TEST(RedshiftUserSql, ARenameKeepingTheMd5HashIsRefusedWithInstructions) {
  Json after = full_user();
  after["username"] = "etl_writer";
  try {
    update_user_sql(parse_redshift_user(full_user()), parse_redshift_user(after));
    FAIL() << "accepted an md5 hash salted with the old name";
  } catch (const Error& e) {
    EXPECT_EQ(e.name(), error_names::kInvalidRequest);
    EXPECT_THAT(e.message(), HasSubstr("salted with the user name"));
    EXPECT_THAT(e.message(), HasSubstr("etl_writer | md5sum"));
  }
}

TEST(RedshiftUserSql, ARenameSetsASha256PasswordAgainBecauseRenamingClearsIt) {
  Json before = {{"username", "old_name"}, {"password", kSha256}};
  Json after = {{"username", "new_name"}, {"password", kSha256}};
  EXPECT_THAT(
      update_user_sql(parse_redshift_user(before), parse_redshift_user(after)),
      ElementsAre("ALTER USER \"old_name\" RENAME TO \"new_name\"",
                  "ALTER USER \"new_name\" PASSWORD '" + kSha256 + "' VALID UNTIL 'infinity'"));
}

TEST(RedshiftUserSql, ARenameOnlyRenames) {
  EXPECT_THAT(update_user_sql(parse_redshift_user({{"username", "etl_user"}}),
                              parse_redshift_user({{"username", "etl_loader"}})),
              ElementsAre("ALTER USER \"etl_user\" RENAME TO \"etl_loader\""));
}

TEST(RedshiftUserSql, DroppingPasswordAndExpiryAndOptions) {
  Json before = {{"username", "u1"},
                 {"password", kMd5},
                 {"valid_until", "2031-01-01"},
                 {"create_user", true},
                 {"unrestricted_syslog_access", true},
                 {"session_timeout", 60}};
  Json no_expiry = before;
  no_expiry.erase("valid_until");
  EXPECT_THAT(update_user_sql(parse_redshift_user(before), parse_redshift_user(no_expiry)),
              ElementsAre("ALTER USER \"u1\" PASSWORD 'md5153c434b4b77c89e6b94f12c5393af5b' "
                          "VALID UNTIL 'infinity'"));
  Json bare = {{"username", "u1"}, {"session_timeout", 1728000}};
  auto sqls = update_user_sql(parse_redshift_user(before), parse_redshift_user(bare));
  EXPECT_THAT(sqls,
              ElementsAre("ALTER USER \"u1\" PASSWORD DISABLE", "ALTER USER \"u1\" NOCREATEUSER",
                          "ALTER USER \"u1\" SYSLOG ACCESS RESTRICTED",
                          "ALTER USER \"u1\" SESSION TIMEOUT 1728000"));
  expect_safe_sql(sqls);
}

TEST(RedshiftUserSql, DeleteDropsIfExists) {
  EXPECT_THAT(drop_user_sql(parse_redshift_username({{"username", "cfncreated_user"}})),
              ElementsAre("DROP USER IF EXISTS \"cfncreated_user\""));
  // A Delete needs the name only: other properties are not judged.
  EXPECT_EQ(parse_redshift_username({{"username", "u1"}, {"password", "plain"}}), "u1");
}

TEST(RedshiftUserSql, BuildersRefuseUncheckedInput) {
  RedshiftUser good;
  good.username = "u1";
  good.password = kMd5;
  RedshiftUser bad = good;
  bad.username = "x\"; drop table t; --";
  EXPECT_THROW(create_user_sql(bad), Error);
  EXPECT_THROW(update_user_sql(good, bad), Error);
  EXPECT_THROW(drop_user_sql(bad.username), Error);
  RedshiftUser bad_password = good;
  bad_password.password = "x' or '1'='1";
  EXPECT_THROW(create_user_sql(bad_password), Error);
  EXPECT_THROW(update_user_sql(good, bad_password), Error);
  RedshiftUser bad_group = good;
  bad_group.groups = {"g\" cascade"};
  EXPECT_THROW(create_user_sql(bad_group), Error);
  EXPECT_THROW(update_user_sql(good, bad_group), Error);
  RedshiftUser bad_expiry = good;
  bad_expiry.valid_until = "now'";
  EXPECT_THROW(create_user_sql(bad_expiry), Error);
  EXPECT_THROW(update_user_sql(good, bad_expiry), Error);
}

TEST(RedshiftUserNames, DollarSignsStayInsideTheQuotedName) {
  auto sqls = create_user_sql(parse_redshift_user({{"username", "x$$"}, {"groups", {"g$1"}}}));
  EXPECT_THAT(sqls, ElementsAre("CREATE USER \"x$$\" PASSWORD DISABLE IN GROUP \"g$1\""));
  expect_safe_sql(sqls);
}

TEST(RedshiftUserNames, AcceptedNames) {
  for (std::string name : {"etl_loader", "_x", "a", "a$1", "user", "select", "abc_123$"}) {
    EXPECT_EQ(identifier_problem(name), "") << name;
  }
  EXPECT_EQ(identifier_problem(std::string(127, 'a')), "");
}

TEST(RedshiftUserNames, RefusedNames) {
  const std::vector<std::string> refused = {
      "",
      std::string(128, 'a'),
      "EtlUser",
      "1abc",
      "$abc",
      "etl-user",
      "etl user",
      "etl;drop",
      "a'b",
      "a\"b",
      "a\\b",
      "a--b",
      "a/*b*/",
      "etl\n",
      "etl\r",
      std::string("etl\0x", 5),
      "\xd0\xb5tl",       // Cyrillic е, looks like e
      "\xef\xbd\x85tl",   // fullwidth ｅ
      "e\xcc\x81tl",      // e + combining acute accent
      "etl\xe2\x80\x8b",  // zero-width space
      "public",
      "pg_signal",
  };
  for (const auto& name : refused) {
    EXPECT_NE(identifier_problem(name), "") << name;
  }
  EXPECT_THAT(identifier_problem("EtlUser"), HasSubstr("'etluser'"));
}

TEST(RedshiftUserPasswords, AcceptedHashesAreCanonicalised) {
  EXPECT_EQ(password_problem(kMd5), "");
  EXPECT_EQ(password_problem(kSha256), "");
  EXPECT_EQ(password_problem("MD5153C434B4B77C89E6B94F12C5393AF5B"), "");
  RedshiftUser user = parse_redshift_user(
      {{"username", "u1"}, {"password", "MD5153C434B4B77C89E6B94F12C5393AF5B"}});
  EXPECT_EQ(user.password, kMd5);
}

TEST(RedshiftUserPasswords, PlaintextAndMalformedHashesAreRefusedWithoutRepeatingThem) {
  const std::vector<std::string> refused = {
      "abcD1234",
      "Sup3rSecretPassw0rd",
      "sha256|Mypassword1",
      "md5153c434b4b77c89e6b94f12c5393af5",    // 31 digits
      "md5153c434b4b77c89e6b94f12c5393af5bb",  // 33 digits
      "md5153c434b4b77c89e6b94f12c5393af5g",
      "md5153c434b4b77c89e6b94f12c539' OR '1",
      "sha256|fe95|c721",
      "sha256|" + std::string(64, 'a') + "|" + std::string(64, 'b') + "|x",
      "sha256|" + std::string(64, 'a') + "|" + std::string(63, 'b') + "'",
      "md5" + std::string(32, 'a') + "\n",
  };
  for (const auto& password : refused) {
    std::string message = problem_of({{"username", "etl_loader"}, {"password", password}});
    EXPECT_THAT(message, HasSubstr("password")) << password;
    EXPECT_THAT(message, Not(HasSubstr(password))) << "repeats the password: " << message;
  }
  EXPECT_THAT(problem_of({{"username", "etl_loader"}, {"password", "abcD1234"}}),
              HasSubstr("printf '%s%s' \"$PASSWORD\" etl_loader | md5sum"));
  EXPECT_THAT(problem_of({{"username", "etl_loader"}, {"password", "sha256|Mypassword1"}}),
              HasSubstr("clear text"));
}

TEST(RedshiftUserProperties, EveryProblemIsReportedAtOnce) {
  std::string message = problem_of({{"username", "Bad-Name"},
                                    {"create_db", "yes"},
                                    {"groups", "readers"},
                                    {"connection_limit", "-1"},
                                    {"session_timeout", 59},
                                    {"valid_until", "2030-02-30"},
                                    {"Password", kMd5},
                                    {"colour", "blue"}});
  for (const char* expected :
       {"username 'Bad-Name'", "create_db: must be true or false", "groups: must be a list",
        "connection_limit", "session_timeout", "valid_until '2030-02-30'",
        "unknown property 'Password' (did you mean 'password'?)", "unknown property 'colour'"}) {
    EXPECT_THAT(message, HasSubstr(expected));
  }
}

TEST(RedshiftUserProperties, UsernameIsRequired) {
  EXPECT_THAT(problem_of(Json::object()), HasSubstr("username: required"));
  EXPECT_THAT(problem_of({{"username", 7}}), HasSubstr("must be a string"));
  EXPECT_THAT(problem_of(Json::array()), HasSubstr("ResourceProperties must be an object"));
}

TEST(RedshiftUserProperties, Numbers) {
  for (Json bad : {Json("-1"), Json(-1), Json("3.5"), Json(3.5), Json("1e3"), Json(" 3"),
                   Json("3 "), Json("99999999999"), Json("0x10"), Json(true), Json("3; drop")}) {
    EXPECT_THAT(problem_of({{"username", "u1"}, {"connection_limit", bad}}),
                HasSubstr("connection_limit"))
        << bad.dump();
  }
  EXPECT_EQ(
      parse_redshift_user({{"username", "u1"}, {"connection_limit", "unlimited"}}).connection_limit,
      std::nullopt);
  EXPECT_EQ(parse_redshift_user({{"username", "u1"}, {"connection_limit", "0"}}).connection_limit,
            0);
  for (Json bad : {Json(59), Json("1728001"), Json("sixty"), Json(-60)}) {
    EXPECT_THAT(problem_of({{"username", "u1"}, {"session_timeout", bad}}),
                HasSubstr("from 60 to 1728000"))
        << bad.dump();
  }
  EXPECT_EQ(parse_redshift_user({{"username", "u1"}, {"session_timeout", "60"}}).session_timeout,
            60);
}

TEST(RedshiftUserProperties, ValidUntil) {
  auto expiry = [](const std::string& text) {
    return parse_redshift_user({{"username", "u1"}, {"password", kMd5}, {"valid_until", text}})
        .valid_until;
  };
  EXPECT_EQ(expiry("2030-01-31"), "2030-01-31 00:00:00");
  EXPECT_EQ(expiry("2028-02-29 23:59"), "2028-02-29 23:59:00");
  EXPECT_EQ(expiry("2030-01-31T23:59:59"), "2030-01-31 23:59:59");
  EXPECT_EQ(expiry("infinity"), "");
  EXPECT_EQ(expiry("Infinity"), "");
  for (std::string bad : {"2030-02-29", "2030-13-01", "2030-1-1", "2030-01-01'; drop user x; --",
                          "now", "2030-01-01 24:00", "2030-01-01 23:60", "2030-01-01Z",
                          "2030-01-01 12:00:00+01", "30-01-01", "２０３０-01-01"}) {
    EXPECT_THAT(problem_of({{"username", "u1"}, {"password", kMd5}, {"valid_until", bad}}),
                HasSubstr("valid_until"))
        << bad;
  }
  EXPECT_THAT(problem_of({{"username", "u1"}, {"valid_until", "2030-01-01"}}),
              HasSubstr("needs a password"));
}

TEST(RedshiftUserProperties, Groups) {
  EXPECT_THAT(parse_redshift_user({{"username", "u1"}, {"groups", {"b", "a", "b"}}}).groups,
              ElementsAre("a", "b"));
  EXPECT_THAT(problem_of({{"username", "u1"}, {"groups", {"__internal"}}}), HasSubstr("reserved"));
  EXPECT_THAT(problem_of({{"username", "u1"}, {"groups", {1}}}), HasSubstr("must be a string"));
  EXPECT_THAT(problem_of({{"username", "u1"}, {"groups", {{{"name", "g"}}}}}),
              HasSubstr("must be a string"));
}

// Hostile values in every property: each is refused, and the message stays short and printable.
TEST(RedshiftUserProperties, InjectionAttemptsAreRefusedNotEscaped) {
  const std::vector<std::string> nasty = {
      "x\"; DROP TABLE users; --",
      "x'; DROP TABLE users; --",
      "x\" CREATEUSER --",
      "x /* comment */",
      "x\nCREATEUSER",
      "x;",
      "\xd0\xb0"
      "dmin",          // Cyrillic а
      "adm\xc4\xb1n",  // dotless ı
      std::string(10'000, 'a'),
      std::string(200, '\''),
      "\xff\xfe",
  };
  for (const auto& value : nasty) {
    for (const char* key : {"username", "password", "valid_until", "connection_limit",
                            "session_timeout", "create_db"}) {
      Json properties = {{"username", "u1"}, {"password", kMd5}};
      properties[key] = value;
      std::string message = problem_of(properties);
      EXPECT_LT(message.size(), 2000u) << key;
      for (char c : message) {
        ASSERT_TRUE(static_cast<unsigned char>(c) >= 0x20 && static_cast<unsigned char>(c) < 0x7F)
            << key << ": unprintable byte in " << message;
      }
    }
    EXPECT_THAT(problem_of({{"username", "u1"}, {"groups", {"ok", value}}}), HasSubstr("group"));
  }
}

}  // namespace
}  // namespace rstasker::tasker
