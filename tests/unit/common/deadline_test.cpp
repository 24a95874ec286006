// Deadlines between the steady and the wall clock.
#include "rstasker/common/deadline.hpp"

#include <gtest/gtest.h>

namespace rstasker {
namespace {

TEST(Deadline, NoneIsUnbounded) {
  Deadline d = Deadline::none();
  EXPECT_TRUE(d.unbounded());
  EXPECT_FALSE(d.expired());
  EXPECT_GT(d.remaining(), std::chrono::hours(24 * 365));
}

TEST(Deadline, FromEpochMillisecondsMatchesTheWallClock) {
  Deadline d = Deadline::from_epoch_ms(now_epoch_ms() + 5000);
  EXPECT_GT(d.remaining(), std::chrono::milliseconds(4000));
  EXPECT_LE(d.remaining(), std::chrono::milliseconds(5000));
  EXPECT_NEAR(static_cast<double>(d.epoch_ms()), static_cast<double>(now_epoch_ms() + 5000), 1000);
}

TEST(Deadline, PastDeadlinesAreExpiredWithNothingRemaining) {
  Deadline d = Deadline::from_epoch_ms(now_epoch_ms() - 1000);
  EXPECT_TRUE(d.expired());
  EXPECT_EQ(d.remaining().count(), 0);
}

TEST(Deadline, CappedTakesTheEarlier) {
  Deadline far = Deadline::after(std::chrono::seconds(60));
  EXPECT_LE(far.capped(std::chrono::seconds(1)).remaining(), std::chrono::seconds(1));
  Deadline near = Deadline::after(std::chrono::seconds(1));
  EXPECT_LE(near.capped(std::chrono::seconds(60)).remaining(), std::chrono::seconds(1));
  EXPECT_FALSE(Deadline::none().capped(std::chrono::seconds(1)).unbounded());
}

TEST(Deadline, CappedByAHugeDurationKeepsTheDeadline) {
  EXPECT_TRUE(Deadline::none().capped(std::chrono::milliseconds::max()).unbounded());
  Deadline near = Deadline::after(std::chrono::seconds(1));
  EXPECT_LE(near.capped(std::chrono::milliseconds::max()).remaining(), std::chrono::seconds(1));
  EXPECT_FALSE(near.capped(std::chrono::milliseconds::max()).expired());
}

TEST(Deadline, WithReserveBringsItForward) {
  Deadline minute = Deadline::after(std::chrono::seconds(60));
  Deadline work = minute.with_reserve(std::chrono::seconds(1));
  EXPECT_LE(work.remaining(), std::chrono::seconds(59));
  EXPECT_GT(work.remaining(), std::chrono::seconds(50));
  EXPECT_GE(minute.remaining() - work.remaining(), std::chrono::milliseconds(990));
}

TEST(Deadline, WithReserveKeepsAtMostAQuarterOfAShortDeadline) {
  Deadline short_one = Deadline::after(std::chrono::milliseconds(2000));
  Deadline work = short_one.with_reserve(std::chrono::seconds(1));
  EXPECT_GT(work.remaining(), std::chrono::milliseconds(1400));
  EXPECT_LE(work.remaining(), std::chrono::milliseconds(1500));
  EXPECT_TRUE(Deadline::none().with_reserve(std::chrono::seconds(1)).unbounded());
  EXPECT_TRUE(Deadline::after(std::chrono::milliseconds(0))
                  .with_reserve(std::chrono::seconds(1))
                  .expired());
}

TEST(Deadline, UnboundedEpochIsTheLongestInvocation) {
  auto ms = Deadline::none().epoch_ms() - now_epoch_ms();
  EXPECT_NEAR(static_cast<double>(ms), 15 * 60 * 1000.0, 1000);
}

}  // namespace
}  // namespace rstasker
