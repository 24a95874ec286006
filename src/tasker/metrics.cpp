// The tasker's compound metric records (names in tasker/metrics.hpp).
#include "rstasker/tasker/metrics.hpp"

#include <algorithm>
#include <charconv>
#include <ctime>

#include "rstasker/common/deadline.hpp"
#include "rstasker/common/json.hpp"

namespace rstasker::tasker::metric {

namespace {

bool read_int(std::string_view text, std::size_t pos, std::size_t length, int* out) {
  if (pos + length > text.size()) return false;
  auto [end, ec] = std::from_chars(text.data() + pos, text.data() + pos + length, *out);
  return ec == std::errc() && end == text.data() + pos + length;
}

}  // namespace

std::string_view waiter_name(WaiterKind kind) {
  switch (kind) {
    case WaiterKind::kStepFunctions:
      return "StepFunctions";
    case WaiterKind::kCloudFormation:
      return "CloudFormation";
    case WaiterKind::kNone:
      return "None";
  }
  return "None";
}

void count_for(std::string_view name, WaiterKind kind) {
  metrics::count(name, {{kWaiterDimension, waiter_name(kind)}});
}

std::optional<std::int64_t> event_time_ms(const Json& event) {
  const std::string text = string_member(event, "time");
  // YYYY-MM-DDTHH:MM:SS[.fff]Z
  std::tm tm{};
  int year = 0, month = 0, day = 0, hour = 0, minute = 0, second = 0;
  if (text.size() < 20 || text[4] != '-' || text[7] != '-' || text[10] != 'T' || text[13] != ':' ||
      text[16] != ':' || text.back() != 'Z' || !read_int(text, 0, 4, &year) ||
      !read_int(text, 5, 2, &month) || !read_int(text, 8, 2, &day) ||
      !read_int(text, 11, 2, &hour) || !read_int(text, 14, 2, &minute) ||
      !read_int(text, 17, 2, &second)) {
    return std::nullopt;
  }
  int millis = 0;
  if (text.size() > 20) {
    // A fraction: ".f" to ".fffffffff"; milliseconds are kept.
    if (text[19] != '.' || text.size() < 22) return std::nullopt;
    const std::size_t digits = text.size() - 21;
    int fraction = 0;
    if (digits > 9 || !read_int(text, 20, digits, &fraction)) return std::nullopt;
    for (std::size_t d = digits; d < 3; ++d) fraction *= 10;
    for (std::size_t d = 3; d < digits; ++d) fraction /= 10;
    millis = fraction;
  }
  tm.tm_year = year - 1900;
  tm.tm_mon = month - 1;
  tm.tm_mday = day;
  tm.tm_hour = hour;
  tm.tm_min = minute;
  tm.tm_sec = second;
  return static_cast<std::int64_t>(timegm(&tm)) * 1000 + millis;
}

void record_callback(WaiterKind kind, const Outcome& outcome) {
  if (!metrics::enabled()) return;
  const std::string_view status = services::to_string(outcome.status);
  metrics::count(kCallbacksSent,
                 {{kWaiterDimension, waiter_name(kind)}, {kOutcomeDimension, status}});
  if (auto at = event_time_ms(outcome.event)) {
    metrics::put(kCallbackLatency, metrics::Unit::kMilliseconds,
                 static_cast<double>(std::max<std::int64_t>(0, now_epoch_ms() - *at)),
                 {{kWaiterDimension, waiter_name(kind)}, {kOutcomeDimension, status}});
  }
}

void record_completion(WaiterKind kind, const Outcome& outcome, std::int64_t started_at_ms) {
  if (!metrics::enabled()) return;
  const std::string_view status = services::to_string(outcome.status);
  metrics::count(kStatementsCompleted,
                 {{kWaiterDimension, waiter_name(kind)}, {kOutcomeDimension, status}});
  auto at = event_time_ms(outcome.event);
  if (at && started_at_ms > 0) {
    metrics::put(kStatementDuration, metrics::Unit::kMilliseconds,
                 static_cast<double>(std::max<std::int64_t>(0, *at - started_at_ms)),
                 {{kWaiterDimension, waiter_name(kind)}, {kOutcomeDimension, status}});
  }
}

}  // namespace rstasker::tasker::metric
