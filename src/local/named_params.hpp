// The Data API's `:name` parameters on PostgreSQL: `:name` placeholders in code become `$n`, bound
// as text values, which PostgreSQL casts as it would an untyped literal (like Redshift does).
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace rstasker::local {

struct BoundSql {
  std::string sql;                   // `:name` replaced by `$n`
  std::vector<std::string> order;    // order[k] is the parameter bound to $(k+1)
  std::vector<std::string> missing;  // names used in the SQL but not supplied (first-use order)
  std::vector<std::string> unused;   // names supplied but never used (supplied order)
};

// Replaces each `:name` (name: [0-9A-Za-z_]+, the API's pattern) found in code with `$n`, one n
// per distinct supplied name, in order of first use. Never touches string literals, quoted
// identifiers, dollar-quoted bodies, comments, `::` casts or `:=`. A `:123` whose name is not
// supplied is left alone (an array slice such as a[1:123]); any other unsupplied `:name` is
// reported in `missing` and left in the text.
BoundSql bind_named_parameters(std::string_view sql, const std::vector<std::string>& supplied);

}  // namespace rstasker::local
