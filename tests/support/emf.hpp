// Checks a JSON document against CloudWatch's Embedded Metric Format specification, and sums
// the values of EMF documents, for the metric tests.
#pragma once

#include <map>
#include <string>
#include <vector>

#include "rstasker/common/json.hpp"

namespace rstasker::testing {

// "" when `doc` is a valid EMF document; otherwise what is wrong. Checked: `_aws` is an object
// with a Timestamp (a non-negative integer, milliseconds) and a non-empty CloudWatchMetrics
// array; each directive has a Namespace (1-1024 characters), Dimensions (an array of dimension
// sets, each an array of at most 30 strings, each naming a top-level string member) and Metrics
// (1 to 100 definitions, each with a Name of 1-1024 characters naming a top-level member that
// is a number or an array of at most 100 numbers, and a Unit among CloudWatch's units); no
// directive or definition carries a member the specification does not define.
std::string emf_problem(const Json& doc);

// Sums each metric's values over `docs`, keyed "Name" plus, for each dimension beyond
// FunctionName in the document's first dimension set, "|Dim=Value".
std::map<std::string, double> emf_totals(const std::vector<Json>& docs);

// The individual values of one metric (by the same key) over `docs`.
std::vector<double> emf_values(const std::vector<Json>& docs, const std::string& key);

}  // namespace rstasker::testing
