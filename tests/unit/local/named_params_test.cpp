// The Data API's `:name` parameters translated to PostgreSQL's `$n`.
#include "local/named_params.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace rstasker::local {
namespace {

using ::testing::ElementsAre;
using ::testing::IsEmpty;

TEST(BindNamedParameters, NumbersDistinctNamesInOrderOfFirstUse) {
  const BoundSql bound =
      bind_named_parameters("select * from t where a = :b and c = :a or d = :b", {"a", "b"});
  EXPECT_EQ(bound.sql, "select * from t where a = $1 and c = $2 or d = $1");
  EXPECT_THAT(bound.order, ElementsAre("b", "a"));
  EXPECT_THAT(bound.missing, IsEmpty());
  EXPECT_THAT(bound.unused, IsEmpty());
}

TEST(BindNamedParameters, LeavesCastsAndAssignmentsAlone) {
  const BoundSql bound = bind_named_parameters("select :id::int, x::text, y := :id", {"id"});
  EXPECT_EQ(bound.sql, "select $1::int, x::text, y := $1");
}

TEST(BindNamedParameters, LeavesLiteralsIdentifiersAndCommentsAlone) {
  const BoundSql bound = bind_named_parameters(
      "select ':id', E'\\':id', \":id\", $$ :id $$ -- :id\n/* :id */ , :id", {"id"});
  EXPECT_EQ(bound.sql, "select ':id', E'\\':id', \":id\", $$ :id $$ -- :id\n/* :id */ , $1");
  EXPECT_THAT(bound.order, ElementsAre("id"));
}

TEST(BindNamedParameters, ReportsMissingAndUnusedNames) {
  const BoundSql bound =
      bind_named_parameters("select :known, :unknown, :unknown2, :unknown", {"known", "spare"});
  EXPECT_EQ(bound.sql, "select $1, :unknown, :unknown2, :unknown");
  EXPECT_THAT(bound.missing, ElementsAre("unknown", "unknown2"));
  EXPECT_THAT(bound.unused, ElementsAre("spare"));
}

TEST(BindNamedParameters, NumericNamesAreParametersOnlyWhenSupplied) {
  // An array slice is not a missing parameter...
  EXPECT_EQ(bind_named_parameters("select a[1:2] from t", {}).sql, "select a[1:2] from t");
  EXPECT_THAT(bind_named_parameters("select a[1:2] from t", {}).missing, IsEmpty());
  // ...but a supplied name made of digits (the API allows it) is bound.
  EXPECT_EQ(bind_named_parameters("select :1", {"1"}).sql, "select $1");
}

TEST(BindNamedParameters, NamesFollowTheApiPattern) {
  // [0-9a-zA-Z_]+: a dot or a dash ends the name.
  const BoundSql bound = bind_named_parameters("select :a_1.x, :a_1-1", {"a_1"});
  EXPECT_EQ(bound.sql, "select $1.x, $1-1");
  // A lone colon stays.
  EXPECT_EQ(bind_named_parameters("select ':' || : ", {"x"}).sql, "select ':' || : ");
}

}  // namespace
}  // namespace rstasker::local
