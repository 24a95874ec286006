// The process-wide EMF recorder: aggregates an invocation's values, then writes them as EMF.
#include "rstasker/common/metrics.hpp"

#include <algorithm>
#include <chrono>
#include <map>
#include <mutex>

namespace rstasker::metrics {

namespace {

constexpr std::string_view kFunctionName = "FunctionName";

struct Series {
  Unit unit = Unit::kCount;
  std::vector<double> values;  // a count keeps one running sum
};

struct Group {
  std::vector<std::pair<std::string, std::string>> dimensions;  // beyond FunctionName
  std::map<std::string, Series, std::less<>> metrics;
};

struct State {
  std::mutex mutex;
  Settings settings;
  std::map<std::string, Group, std::less<>> groups;  // by dimension values
};

State& state() {
  static State instance;
  return instance;
}

std::string group_key(std::initializer_list<Dimension> dimensions) {
  std::string key;
  for (const Dimension& d : dimensions) {
    key.append(d.name).push_back('\x1f');
    key.append(d.value).push_back('\x1e');
  }
  return key;
}

// One document of `group`: the metrics [first, first + kMaxMetricsPerDocument) of its list and
// their values [value_from, value_from + kMaxValuesPerMetric).
Json document(const Settings& settings, const Group& group,
              const std::vector<const std::pair<const std::string, Series>*>& metrics,
              std::size_t value_from, std::int64_t timestamp_ms) {
  Json full = Json::array({kFunctionName});
  for (const auto& [name, value] : group.dimensions) full.push_back(name);
  Json dimension_sets = Json::array({full});
  if (full.size() > 1) dimension_sets.push_back(Json::array({kFunctionName}));

  Json out = Json::object();
  out[std::string(kFunctionName)] = settings.function_name;
  for (const auto& [name, value] : group.dimensions) out[name] = value;
  Json definitions = Json::array();
  for (const auto* metric : metrics) {
    const auto& values = metric->second.values;
    if (value_from >= values.size()) continue;
    const std::size_t end = std::min(values.size(), value_from + kMaxValuesPerMetric);
    definitions.push_back(
        {{"Name", metric->first}, {"Unit", std::string(to_string(metric->second.unit))}});
    if (end - value_from == 1) {
      out[metric->first] = values[value_from];
    } else {
      out[metric->first] =
          std::vector<double>(values.begin() + static_cast<std::ptrdiff_t>(value_from),
                              values.begin() + static_cast<std::ptrdiff_t>(end));
    }
  }
  if (definitions.empty()) return nullptr;
  if (!settings.level.empty()) out["level"] = settings.level;
  out["_aws"] = {{"Timestamp", timestamp_ms},
                 {"CloudWatchMetrics", Json::array({{{"Namespace", settings.name_space},
                                                     {"Dimensions", dimension_sets},
                                                     {"Metrics", definitions}}})}};
  return out;
}

}  // namespace

std::string_view to_string(Unit unit) {
  switch (unit) {
    case Unit::kCount:
      return "Count";
    case Unit::kMilliseconds:
      return "Milliseconds";
  }
  return "None";
}

void init(Settings settings) {
  std::lock_guard lock(state().mutex);
  state().settings = std::move(settings);
  if (state().settings.function_name.empty()) state().settings.function_name = "redshift-tasker";
  state().groups.clear();
}

bool enabled() {
  std::lock_guard lock(state().mutex);
  return state().settings.enabled;
}

void put(std::string_view name, Unit unit, double value,
         std::initializer_list<Dimension> dimensions) {
  auto& s = state();
  std::lock_guard lock(s.mutex);
  if (!s.settings.enabled) return;
  // FunctionName is on every metric: a set holds at most kMaxDimensionsPerSet keys.
  if (dimensions.size() >= kMaxDimensionsPerSet) return;
  std::string key = group_key(dimensions);
  auto it = s.groups.find(key);
  if (it == s.groups.end()) {
    Group group;
    for (const Dimension& d : dimensions) group.dimensions.emplace_back(d.name, d.value);
    it = s.groups.emplace(std::move(key), std::move(group)).first;
  }
  auto metric = it->second.metrics.find(name);
  if (metric == it->second.metrics.end()) {
    metric = it->second.metrics.emplace(std::string(name), Series{unit, {}}).first;
  }
  Series& series = metric->second;
  if (series.unit == Unit::kCount && !series.values.empty()) {
    series.values.front() += value;
  } else {
    series.values.push_back(value);
  }
}

std::vector<Json> take_documents(std::int64_t timestamp_ms) {
  Settings settings;
  std::map<std::string, Group, std::less<>> groups;
  {
    std::lock_guard lock(state().mutex);
    settings = state().settings;
    groups.swap(state().groups);
  }
  std::vector<Json> documents;
  for (const auto& [key, group] : groups) {
    std::vector<const std::pair<const std::string, Series>*> all;
    std::size_t most_values = 0;
    for (const auto& metric : group.metrics) {
      all.push_back(&metric);
      most_values = std::max(most_values, metric.second.values.size());
    }
    for (std::size_t first = 0; first < all.size(); first += kMaxMetricsPerDocument) {
      const std::vector<const std::pair<const std::string, Series>*> slice(
          all.begin() + static_cast<std::ptrdiff_t>(first),
          all.begin() +
              static_cast<std::ptrdiff_t>(std::min(all.size(), first + kMaxMetricsPerDocument)));
      for (std::size_t from = 0; from < most_values; from += kMaxValuesPerMetric) {
        Json doc = document(settings, group, slice, from, timestamp_ms);
        if (!doc.is_null()) documents.push_back(std::move(doc));
      }
    }
  }
  return documents;
}

void flush() {
  std::FILE* out = nullptr;
  {
    std::lock_guard lock(state().mutex);
    if (!state().settings.enabled) return;
    out = state().settings.out;
  }
  try {
    const auto now = std::chrono::duration_cast<std::chrono::milliseconds>(
                         std::chrono::system_clock::now().time_since_epoch())
                         .count();
    std::string text;
    for (const Json& doc : take_documents(now)) text += dump_json(doc) + '\n';
    if (out != nullptr && !text.empty()) {
      std::fwrite(text.data(), 1, text.size(), out);
      std::fflush(out);
    }
  } catch (...) {
    // Metrics are worth less than the invocation they describe: never fail it for them.
  }
}

}  // namespace rstasker::metrics
