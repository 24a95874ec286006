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

TEST(Deadline, UnboundedEpochIsTheLongestInvocation) {
  auto ms = Deadline::none().epoch_ms() - now_epoch_ms();
  EXPECT_NEAR(static_cast<double>(ms), 15 * 60 * 1000.0, 1000);
}

}  // namespace
}  // namespace rstasker
