// Fuzz target: Custom::RedshiftUser properties -> SQL. Property checked on every statement built:
// it is one statement (no ';' and no comment outside quotes), every quote is closed, and the
// double-quoted identifiers are exactly the user and group names the properties gave.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <set>
#include <string>
#include <string_view>

#include "rstasker/common/error.hpp"
#include "tasker/redshift_user.hpp"

namespace {

using rstasker::Json;
using rstasker::tasker::RedshiftUser;

[[noreturn]] void finding(const std::string& what, const std::string& sql) {
  std::fprintf(stderr, "%s: %s\n", what.c_str(), sql.c_str());
  std::abort();
}

// The double-quoted identifiers of `sql`, after checking its quoting and that it is one statement.
std::set<std::string> identifiers_of(const std::string& sql) {
  std::set<std::string> names;
  for (std::size_t i = 0; i < sql.size(); ++i) {
    const char c = sql[i];
    if (c == '"' || c == '\'') {
      const std::size_t close = sql.find(c, i + 1);
      if (close == std::string::npos) finding("an unclosed quote", sql);
      if (c == '"') names.insert(sql.substr(i + 1, close - i - 1));
      i = close;
    } else if (c == ';' || sql.compare(i, 2, "--") == 0 || sql.compare(i, 2, "/*") == 0) {
      finding("a second statement or a comment outside quotes", sql);
    } else if (static_cast<unsigned char>(c) < 0x20 || static_cast<unsigned char>(c) >= 0x7F) {
      finding("a control or non-ASCII byte outside quotes", sql);
    }
  }
  return names;
}

void check(const std::vector<std::string>& sqls, const std::set<std::string>& allowed) {
  for (const std::string& sql : sqls) {
    for (const std::string& name : identifiers_of(sql)) {
      if (!allowed.contains(name)) finding("an identifier not given: " + name, sql);
    }
  }
}

std::set<std::string> names_of(const RedshiftUser& user) {
  std::set<std::string> names(user.groups.begin(), user.groups.end());
  names.insert(user.username);
  return names;
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  std::optional<Json> properties =
      rstasker::try_parse_json({reinterpret_cast<const char*>(data), size});
  if (!properties) return 0;
  try {
    const RedshiftUser user = rstasker::tasker::parse_redshift_user(*properties);
    const std::set<std::string> names = names_of(user);
    check(rstasker::tasker::create_user_sql(user), names);
    check(rstasker::tasker::drop_user_sql(user.username), {user.username});
    // CREATE USER names every group the user is in, and only those.
    const std::vector<std::string> create = rstasker::tasker::create_user_sql(user);
    std::set<std::string> quoted;
    for (const std::string& sql : create) quoted.merge(identifiers_of(sql));
    if (quoted != names)
      finding("CREATE USER does not name exactly the user and its groups", create[0]);

    RedshiftUser before;
    before.username = "fuzz_before";
    before.groups = {"fuzz_group"};
    std::set<std::string> both = names_of(before);
    both.merge(std::set<std::string>(names));
    try {
      check(rstasker::tasker::update_user_sql(before, user), both);
      check(rstasker::tasker::update_user_sql(user, before), both);
    } catch (const rstasker::Error&) {
      // A change that cannot work (an md5 hash kept across a rename) is refused by name.
    }
  } catch (const rstasker::Error&) {
  }
  return 0;
}
