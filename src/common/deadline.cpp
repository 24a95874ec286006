// Deadline arithmetic between the steady clock (for waiting) and the wall clock (for Lambda).
#include "rstasker/common/deadline.hpp"

#include <algorithm>
#include <array>
#include <ctime>

namespace rstasker {

namespace {
constexpr std::chrono::minutes kLongestInvocation{15};
}

Deadline Deadline::none() {
  return Deadline(Clock::time_point::max());
}

Deadline Deadline::after(std::chrono::milliseconds duration) {
  return Deadline(Clock::now() + duration);
}

Deadline Deadline::from_epoch_ms(std::int64_t epoch_ms) {
  return after(std::chrono::milliseconds(epoch_ms - now_epoch_ms()));
}

std::chrono::milliseconds Deadline::remaining() const {
  if (unbounded()) return std::chrono::milliseconds::max();
  auto left = std::chrono::duration_cast<std::chrono::milliseconds>(at_ - Clock::now());
  return std::max(left, std::chrono::milliseconds(0));
}

std::int64_t Deadline::epoch_ms() const {
  if (unbounded()) {
    return now_epoch_ms() + std::chrono::milliseconds(kLongestInvocation).count();
  }
  return now_epoch_ms() + remaining().count();
}

Deadline Deadline::capped(std::chrono::milliseconds duration) const {
  // Also keeps `now + duration` from overflowing the clock for huge durations.
  if (duration >= remaining()) return *this;
  return Deadline(Clock::now() + std::max(duration, std::chrono::milliseconds(0)));
}

Deadline Deadline::with_reserve(std::chrono::milliseconds reserve) const {
  if (unbounded()) return *this;
  auto kept = std::clamp(reserve, std::chrono::milliseconds(0), remaining() / 4);
  return Deadline(at_ - kept);
}

std::int64_t now_epoch_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

std::int64_t now_epoch_seconds() {
  return now_epoch_ms() / 1000;
}

std::string iso8601_utc(std::int64_t epoch_ms) {
  std::time_t seconds = static_cast<std::time_t>(epoch_ms / 1000);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  std::array<char, 32> buf{};
  std::size_t n = std::strftime(buf.data(), buf.size(), "%Y-%m-%dT%H:%M:%SZ", &utc);
  return std::string(buf.data(), n);
}

}  // namespace rstasker
