// A point in time by which work must be finished (the Lambda invocation deadline).
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace rstasker {

class Deadline {
 public:
  using Clock = std::chrono::steady_clock;

  // No deadline: remaining() is effectively unbounded.
  static Deadline none();
  // `duration` from now.
  static Deadline after(std::chrono::milliseconds duration);
  // From Lambda's `Lambda-Runtime-Deadline-Ms` (milliseconds since the Unix epoch).
  static Deadline from_epoch_ms(std::int64_t epoch_ms);

  // Time left, never negative.
  std::chrono::milliseconds remaining() const;
  bool expired() const { return remaining().count() == 0; }
  bool unbounded() const { return at_ == Clock::time_point::max(); }
  // Milliseconds since the Unix epoch at which this deadline passes (for leases stored in
  // DynamoDB); an unbounded deadline gives now + 15 minutes (Lambda's longest invocation).
  std::int64_t epoch_ms() const;
  // The earlier of this deadline and `duration` from now.
  Deadline capped(std::chrono::milliseconds duration) const;
  // This deadline brought forward by `reserve`, so that time is left after work that respects
  // it (for cleanup, for reporting the outcome). The reserve is at most a quarter of the time
  // left, so a short deadline still leaves most of its time for the work. Unbounded stays
  // unbounded; an expired deadline stays expired.
  Deadline with_reserve(std::chrono::milliseconds reserve) const;

 private:
  explicit Deadline(Clock::time_point at) : at_(at) {}
  Clock::time_point at_;
};

// Wall-clock helpers (UTC).
std::int64_t now_epoch_ms();
std::int64_t now_epoch_seconds();
// `epoch_ms` as ISO 8601 UTC to the second ("2026-11-01T21:14:26Z"), as EventBridge writes times.
std::string iso8601_utc(std::int64_t epoch_ms);

}  // namespace rstasker
