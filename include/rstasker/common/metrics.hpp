// Metrics in CloudWatch's Embedded Metric Format (EMF): values recorded during an invocation are
// written, when it ends, as JSON log lines that CloudWatch Logs turns into metrics (no API call,
// no extra permission).
//
// Like logging, recording goes through free functions (`metrics::count("StatementsStarted")`)
// on one process-wide recorder: the invocation in progress is the Lambda lifecycle's state.
// Recording is thread-safe and does nothing until init() enabled it.
#pragma once

#include <cstdint>
#include <cstdio>
#include <initializer_list>
#include <string>
#include <string_view>
#include <vector>

#include "rstasker/common/json.hpp"

namespace rstasker::metrics {

// The CloudWatch units used here (EMF accepts CloudWatch's standard unit names).
enum class Unit { kCount, kMilliseconds };
std::string_view to_string(Unit unit);

// A dimension beyond the function name. Values must be of low cardinality (a kind, an outcome:
// never an id), since every combination becomes a metric of its own.
struct Dimension {
  std::string_view name;
  std::string_view value;
};

// EMF limits (CloudWatch's specification): metrics per directive, values per metric, dimension
// keys per dimension set.
inline constexpr std::size_t kMaxMetricsPerDocument = 100;
inline constexpr std::size_t kMaxValuesPerMetric = 100;
inline constexpr std::size_t kMaxDimensionsPerSet = 30;

struct Settings {
  bool enabled = false;
  std::string name_space = "RedshiftTasker";
  std::string function_name;  // the FunctionName dimension, on every metric
  std::FILE* out = stdout;    // where flush() writes (one document per line)
  // The document's "level" member. Lambda's log-level filter treats a JSON line without one as
  // INFO and drops it under a higher ApplicationLogLevel: the metrics carry the level in force
  // (INFO or above) so they always pass. "" leaves the member out.
  std::string level = "INFO";
};

// Replaces the settings; recording starts (or stops) with it. What was recorded is discarded.
void init(Settings settings);
bool enabled();

// Records one value of `name` for the invocation in progress. Counts recorded under the same
// name and dimensions add up; other values (durations) are kept one by one.
void put(std::string_view name, Unit unit, double value,
         std::initializer_list<Dimension> dimensions = {});
inline void count(std::string_view name, std::initializer_list<Dimension> dimensions = {},
                  double n = 1) {
  put(name, Unit::kCount, n, dimensions);
}

// The EMF documents for everything recorded since the last take (then forgotten): one per
// combination of dimension values (EMF gives each dimension one value per document), split
// further so that no document exceeds the limits above. Each has the `_aws` metadata (Timestamp
// `timestamp_ms`, one directive with the namespace, the dimension sets — all the dimensions and,
// when there are more, the function name alone — and each metric's name and unit), the
// dimension values and each metric's value (a number, or an array of numbers) as top-level
// members. Empty when nothing was recorded.
std::vector<Json> take_documents(std::int64_t timestamp_ms);

// Writes take_documents(now) to the configured output, one line each. Never throws.
void flush();

}  // namespace rstasker::metrics
