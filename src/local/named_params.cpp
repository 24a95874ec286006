// `:name` → `$n` translation over the code segments of the SQL text.
#include "local/named_params.hpp"

#include <algorithm>
#include <cctype>

#include "local/sql_rewrite.hpp"

namespace rstasker::local {
namespace {

bool is_name_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_';
}

bool contains(const std::vector<std::string>& names, std::string_view name) {
  return std::find(names.begin(), names.end(), name) != names.end();
}

}  // namespace

BoundSql bind_named_parameters(std::string_view sql, const std::vector<std::string>& supplied) {
  BoundSql bound;
  bound.sql.reserve(sql.size());
  for (const SqlSegment& segment : split_sql(sql)) {
    if (segment.kind != SqlSegment::Kind::kCode) {
      bound.sql.append(sql.substr(segment.begin, segment.end - segment.begin));
      continue;
    }
    std::size_t i = segment.begin;
    while (i < segment.end) {
      const char c = sql[i];
      if (c != ':') {
        bound.sql.push_back(c);
        ++i;
        continue;
      }
      if (i + 1 < segment.end && sql[i + 1] == ':') {  // a `::` cast (or a run of colons)
        while (i < segment.end && sql[i] == ':') bound.sql.push_back(sql[i++]);
        continue;
      }
      std::size_t end = i + 1;
      while (end < segment.end && is_name_char(sql[end])) ++end;
      const std::string_view name = sql.substr(i + 1, end - i - 1);
      if (name.empty()) {
        bound.sql.push_back(c);
        ++i;
        continue;
      }
      if (contains(supplied, name)) {
        auto position = std::find(bound.order.begin(), bound.order.end(), name);
        if (position == bound.order.end()) {
          bound.order.emplace_back(name);
          position = bound.order.end() - 1;
        }
        bound.sql.push_back('$');
        bound.sql.append(std::to_string(position - bound.order.begin() + 1));
      } else {
        if (std::isdigit(static_cast<unsigned char>(name.front())) == 0 &&
            !contains(bound.missing, name)) {
          bound.missing.emplace_back(name);
        }
        bound.sql.append(sql.substr(i, end - i));
      }
      i = end;
    }
  }
  for (const std::string& name : supplied) {
    if (!contains(bound.order, name) && !contains(bound.unused, name)) bound.unused.push_back(name);
  }
  return bound;
}

}  // namespace rstasker::local
