// Event shapes and action-event validation: every malformed event is an InvalidRequest that says
// what is wrong.
#include "rstasker/tasker/events.hpp"

#include <gtest/gtest.h>

#include <filesystem>

#include "rstasker/common/error.hpp"
#include "support/paths.hpp"
#include "support/process.hpp"

namespace rstasker::tasker {
namespace {

// The InvalidRequest message parse_action gives for `event`, or fails the test.
std::string invalid(const Json& event) {
  try {
    parse_action(event);
  } catch (const Error& e) {
    EXPECT_EQ(e.name(), "InvalidRequest") << e.message();
    return e.message();
  }
  ADD_FAILURE() << "accepted: " << event.dump();
  return {};
}

std::string invalid_shape(const Json& event) {
  try {
    classify_event(event);
  } catch (const Error& e) {
    EXPECT_EQ(e.name(), "InvalidRequest");
    return e.message();
  }
  ADD_FAILURE() << "classified: " << event.dump();
  return {};
}

bool mentions(const std::string& message, std::string_view part) {
  return message.find(part) != std::string::npos;
}

const char* kArn =
    "arn:aws:states:eu-west-1:012345678910:execution:MachineName:fb69bfdf-e22c-4362-8f9e";

TEST(Classify, RecognisesEachShape) {
  EXPECT_EQ(classify_event({{"action", "describeStatement"}}), EventShape::kAction);
  EXPECT_EQ(classify_event({{"sqlStatement", "select 1"}}), EventShape::kAction);
  EXPECT_EQ(classify_event({{"Records", {{{"eventSource", "aws:sqs"}, {"body", "{}"}}}}}),
            EventShape::kSqsBatch);
  EXPECT_EQ(classify_event({{"RequestType", "Create"}, {"ResponseURL", "https://x"}}),
            EventShape::kCloudFormation);
}

TEST(Classify, RejectsNonObjectsEmptyAndUnknownShapes) {
  EXPECT_TRUE(mentions(invalid_shape(Json::array({1, 2})), "JSON object, not array"));
  EXPECT_TRUE(mentions(invalid_shape("text"), "not string"));
  EXPECT_TRUE(mentions(invalid_shape(nullptr), "not null"));
  EXPECT_TRUE(mentions(invalid_shape(Json::object()), "empty object"));
  EXPECT_TRUE(mentions(invalid_shape({{"hello", "world"}}), "unrecognised event"));
  EXPECT_TRUE(mentions(invalid_shape({{"Records", Json::array()}}), "SQS records"));
  EXPECT_TRUE(
      mentions(invalid_shape({{"Records", {{{"eventSource", "aws:sns"}}}}}), "SQS records"));
}

TEST(ParseAction, SeedDefaultIsExecuteStatement) {
  ActionRequest r = parse_action(
      {{"sqlStatement", "select 1;"}, {"executionArn", kArn}, {"taskToken", "AAAAtoken="}});
  EXPECT_EQ(r.kind, ActionKind::kExecuteStatement);
  EXPECT_EQ(r.sqls, std::vector<std::string>{"select 1;"});
  EXPECT_FALSE(r.batch);
  EXPECT_EQ(r.execution_arn, kArn);
  EXPECT_EQ(r.task_token, "AAAAtoken=");
}

TEST(ParseAction, BatchParametersAndOverrides) {
  ActionRequest r = parse_action({{"action", "executeSingletonStatement"},
                                  {"sqlStatements", {"begin work", "select 2"}},
                                  {"clusterIdentifier", "c2"},
                                  {"database", "db2"},
                                  {"secretArn", "arn:aws:secretsmanager:x"}});
  EXPECT_EQ(r.kind, ActionKind::kExecuteSingletonStatement);
  EXPECT_TRUE(r.batch);
  EXPECT_EQ(r.sqls.size(), 2u);
  EXPECT_EQ(r.target.cluster_identifier, "c2");
  EXPECT_EQ(r.target.database, "db2");
  EXPECT_EQ(r.target.secret_arn, "arn:aws:secretsmanager:x");

  ActionRequest p = parse_action({{"sqlStatement", "select :a, :b, :c"},
                                  {"parameters",
                                   {{{"name", "a"}, {"value", "x"}},
                                    {{"name", "b"}, {"value", 42}},
                                    {{"name", "c"}, {"value", true}}}}});
  ASSERT_EQ(p.parameters.size(), 3u);
  EXPECT_EQ(p.parameters[1].value, "42");
  EXPECT_EQ(p.parameters[2].value, "true");
}

TEST(ParseAction, StatementActions) {
  ActionRequest d = parse_action({{"action", "getStatementResult"},
                                  {"statementId", "LATEST"},
                                  {"executionArn", kArn},
                                  {"nextToken", "t2"}});
  EXPECT_EQ(d.kind, ActionKind::kGetStatementResult);
  EXPECT_EQ(d.statement_id, "LATEST");
  EXPECT_EQ(d.next_token, "t2");
  EXPECT_EQ(parse_action({{"action", "cancelStatement"}, {"statementId", "abc"}}).statement_id,
            "abc");
  EXPECT_EQ(parse_action({{"action", "reconcile"}, {"olderThanSeconds", 60}}).older_than_seconds,
            60);
}

// The InvalidRequest message read_event gives for `payload`, or fails the test.
std::string unreadable(std::string_view payload) {
  try {
    read_event(payload);
  } catch (const Error& e) {
    EXPECT_EQ(e.name(), "InvalidRequest") << e.message();
    return e.message();
  }
  ADD_FAILURE() << "accepted: " << payload;
  return {};
}

TEST(ReadEvent, TheSharedInvalidEventsAreAllRejected) {
  auto shared = rstasker::testing::shared_dir();
  // A user's clone has no ../shared: skipped there, a failure under RSTASKER_REQUIRE_SERVERS=1.
  if (!shared)
    RSTASKER_SKIP_IF_UNAVAILABLE(
        std::optional<std::string>("../shared is absent (a user's clone): nothing to read"));
  int seen = 0;
  for (const auto& entry : std::filesystem::directory_iterator(*shared / "events" / "invalid")) {
    std::string message = unreadable(rstasker::testing::read_file(entry.path()));
    EXPECT_FALSE(message.empty()) << entry.path();
    ++seen;
  }
  EXPECT_GE(seen, 5);
}

// The same kinds of mistakes as the shared files, each with the message that says what is wrong.
TEST(ReadEvent, MalformedEventsSayWhatIsWrong) {
  struct Case {
    std::string_view payload;
    std::string_view says;
  };
  const Case cases[] = {
      {R"([1,2)", "not valid JSON at byte"},
      {R"({"action":"describeStatement","statementId":"LATEST"})", "\"LATEST\" needs"},
      {R"({"action":"executeStatement"})", "needs 'sqlStatement'"},
      {R"({"action":"dropEverything","sqlStatement":"select 1"})", "unknown action"},
      {R"({"sqlStatement": 42, "taskToken": "t", "executionArn": "not-an-arn"})",
       "not a Step Functions execution ARN"},
      {R"({"sqlStatement": 42, "executionArn": "arn:aws:states:eu-west-1:1:execution:M:n"})",
       "'sqlStatement' must be a string, not number"},
      {R"({"action":"ExecuteStatement","sqlStatement":"select 1"})",
       "did you mean 'executeStatement'"},
      {R"({"action":"describestatement","statementId":"x"})", "did you mean 'describeStatement'"},
      {R"({"action":["executeStatement"],"sqlStatement":"select 1"})",
       "'action' must be a string, not array"},
      {R"({"sqlStatement":"select 1","parameters":{"name":"a","value":"1"}})",
       "'parameters' must be a list"},
      {R"({"sqlStatements":[1]})", "sqlStatements[0] must be a string, not number"},
      {R"({"action":"getStatementResult","statementId":7})", "'statementId' must be a string"},
      {R"({"action":"describeStatement","statementId":"LATEST","executionArn":""})",
       "'executionArn' must not be empty"},
      {R"({"sqlStatement":"select 1","taskToken":"AAAA-token"})",
       "'taskToken' needs 'executionArn'"},
      {R"({"sqlStatement":"select 1","taskToken":7,"executionArn":"arn:aws:states:eu-west-1:1:execution:M:n"})",
       "'taskToken' must be a string"},
      {R"({})", "empty object"},
      {R"([])", "JSON object, not array"},
      {R"("executeStatement")", "JSON object, not string"},
      {R"(null)", "JSON object, not null"},
      {R"(42)", "JSON object, not number"},
      {"", "not valid JSON at byte"},
      {"   ", "not valid JSON at byte"},
      {R"({"a":1} {"b":2})", "not valid JSON at byte"},
      {"{\"sqlStatement\":\"select '\xc3\x28'\"}", "UTF-8"},
      {"{\"sqlStatement\":\"select 1\"}\xff", "not valid JSON at byte"},
      {R"({"hello":"world"})", "unrecognised event"},
      {R"({"Records":"not a list"})", "SQS records"},
  };
  for (const auto& c : cases) {
    const std::string message = unreadable(c.payload);
    EXPECT_TRUE(mentions(message, c.says)) << c.payload << " gave: " << message;
  }
}

TEST(ReadEvent, AbsurdNestingIsRefusedWithoutRecursing) {
  std::string deep = R"({"sqlStatement":"select 1","parameters":)";
  deep += std::string(100000, '[');
  EXPECT_TRUE(mentions(unreadable(deep), "nested deeper than"));
  // Within the parser's limit but nested where a flat value belongs.
  EXPECT_TRUE(mentions(unreadable(R"({"sqlStatement":[[["select 1"]]]})"),
                       "'sqlStatement' must be a string, not array"));
}

TEST(ReadEvent, ChecksWhatItCanWithoutConfiguration) {
  CheckedEvent action = read_event(R"({"sqlStatements":["select 1"],"database":"dev"})");
  EXPECT_EQ(action.shape(), EventShape::kAction);
  ASSERT_NE(action.action(), nullptr);
  EXPECT_TRUE(action.action()->batch);
  EXPECT_EQ(action.event()["database"], "dev");
  CheckedEvent sqs = read_event(R"({"Records":[{"eventSource":"aws:sqs","body":"{}"}]})");
  EXPECT_EQ(sqs.shape(), EventShape::kSqsBatch);
  EXPECT_EQ(sqs.action(), nullptr);
  EXPECT_EQ(check_event({{"RequestType", "Create"}, {"ResponseURL", "https://x"}}).shape(),
            EventShape::kCloudFormation);
}

// An unknown action is quoted by its start only, however long it is.
TEST(ParseAction, AHugeUnknownActionIsQuotedInPart) {
  const std::string message = invalid({{"action", std::string(300000, 'a')}});
  EXPECT_LT(message.size(), 1000u);
  EXPECT_TRUE(mentions(message, "[cut, 300000 characters in all]"));
}

TEST(ParseAction, UnknownAndMisCasedActions) {
  EXPECT_TRUE(mentions(invalid({{"action", "dropEverything"}, {"sqlStatement", "select 1"}}),
                       "unknown action 'dropEverything'; expected one of"));
  EXPECT_TRUE(mentions(invalid({{"action", "ExecuteStatement"}, {"sqlStatement", "select 1"}}),
                       "did you mean 'executeStatement'"));
  EXPECT_TRUE(mentions(invalid({{"action", 3}}), "'action' must be a string, not number"));
  EXPECT_TRUE(mentions(invalid({{"action", ""}}), "unknown action ''"));
}

TEST(ParseAction, UnknownMisCasedAndMisplacedFields) {
  EXPECT_TRUE(mentions(invalid({{"SqlStatement", "select 1"}, {"action", "executeStatement"}}),
                       "did you mean 'sqlStatement'"));
  EXPECT_TRUE(mentions(
      invalid(
          {{"action", "describeStatement"}, {"statementId", "x"}, {"sqlStatement", "select 1"}}),
      "'sqlStatement' is not used by action 'describeStatement'"));
  EXPECT_TRUE(mentions(invalid({{"sqlStatement", "select 1"}, {"colour", "blue"}}),
                       "unknown field 'colour'"));
}

TEST(ParseAction, WrongTypes) {
  EXPECT_TRUE(
      mentions(invalid({{"sqlStatement", 42}}), "'sqlStatement' must be a string, not number"));
  EXPECT_TRUE(mentions(invalid({{"sqlStatements", "select 1"}}), "must be a list of strings"));
  EXPECT_TRUE(mentions(invalid({{"sqlStatements", {"select 1", 2}}}), "sqlStatements[1]"));
  EXPECT_TRUE(mentions(invalid({{"sqlStatement", "x"}, {"executionArn", 1}}),
                       "'executionArn' must be a string"));
  EXPECT_TRUE(mentions(invalid({{"sqlStatement", "x"}, {"parameters", {{"a", "b"}}}}),
                       "'parameters' must be a list"));
  EXPECT_TRUE(mentions(invalid({{"sqlStatement", "x"}, {"parameters", {{{"name", "a"}}}}}),
                       "has no value"));
  EXPECT_TRUE(
      mentions(invalid({{"sqlStatement", "x"}, {"parameters", {{{"name", "a"}, {"value", {1}}}}}}),
               "must be a string, number or boolean"));
  EXPECT_TRUE(
      mentions(invalid({{"action", "reconcile"}, {"olderThanSeconds", "60"}}), "olderThanSeconds"));
}

TEST(ParseAction, MissingAndConflictingFields) {
  EXPECT_TRUE(mentions(invalid({{"action", "executeStatement"}}), "needs 'sqlStatement'"));
  EXPECT_TRUE(mentions(invalid({{"action", "describeStatement"}}), "needs 'statementId'"));
  EXPECT_TRUE(mentions(invalid({{"sqlStatement", "a"}, {"sqlStatements", {"b"}}}), "not both"));
  EXPECT_TRUE(
      mentions(invalid({{"sqlStatement", "a"}, {"clusterIdentifier", "c"}, {"workgroupName", "w"}}),
               "not both"));
  EXPECT_TRUE(mentions(
      invalid({{"sqlStatements", {"a"}}, {"parameters", {{{"name", "a"}, {"value", "1"}}}}}),
      "cannot be used with 'sqlStatements'"));
  EXPECT_TRUE(mentions(
      invalid({{"sqlStatement", "a"},
               {"parameters", {{{"name", "a"}, {"value", "1"}}, {{"name", "a"}, {"value", "2"}}}}}),
      "given twice"));
}

TEST(ParseAction, LatestAndTaskTokenNeedAnExecutionArn) {
  EXPECT_TRUE(mentions(invalid({{"action", "describeStatement"}, {"statementId", "LATEST"}}),
                       "\"LATEST\" needs 'executionArn'"));
  EXPECT_TRUE(mentions(invalid({{"sqlStatement", "select 1"}, {"taskToken", "t"}}),
                       "'taskToken' needs 'executionArn'"));
  EXPECT_TRUE(mentions(
      invalid({{"sqlStatement", "select 1"}, {"taskToken", "t"}, {"executionArn", "not-an-arn"}}),
      "not a Step Functions execution ARN"));
}

TEST(ParseAction, DataApiLimitsAreCheckedLocally) {
  EXPECT_TRUE(mentions(invalid({{"sqlStatement", ""}}), "is empty"));
  EXPECT_TRUE(mentions(invalid({{"sqlStatement", " \n\t"}}), "is empty"));
  std::string huge(100001, 'x');
  EXPECT_TRUE(mentions(invalid({{"sqlStatement", huge}}), "at most 100000"));
  // 100,000 characters of two bytes each is within the limit (characters, not bytes).
  std::string wide;
  for (int i = 0; i < 100000; ++i) wide += "ä";
  EXPECT_NO_THROW(parse_action({{"sqlStatement", wide}}));
  Json many = Json::array();
  for (int i = 0; i < 41; ++i) many.push_back("select 1");
  EXPECT_TRUE(mentions(invalid({{"sqlStatements", many}}), "1 to 40"));
  EXPECT_TRUE(mentions(invalid({{"sqlStatements", Json::array()}}), "1 to 40"));
  std::string long_arn = std::string(kArn) + std::string(500, 'x');
  EXPECT_TRUE(
      mentions(invalid({{"sqlStatement", "x"}, {"executionArn", long_arn}}), "longer than"));
}

// Step Functions' SendTaskSuccess / SendTaskFailure / SendTaskHeartbeat accept task tokens of 1
// to 2,048 characters: a token as long as that is taken, a longer one refused before anything runs.
TEST(ParseAction, TaskTokensUpToStepFunctionsLimitAreAccepted) {
  const std::string longest(2048, 'T');
  ActionRequest r =
      parse_action({{"sqlStatement", "select 1"}, {"executionArn", kArn}, {"taskToken", longest}});
  EXPECT_EQ(r.task_token, longest);
  EXPECT_TRUE(mentions(
      invalid({{"sqlStatement", "select 1"}, {"executionArn", kArn}, {"taskToken", longest + "T"}}),
      "'taskToken' is longer than 2048 characters"));
}

// As the Data API's SqlParameter: name [0-9a-zA-Z_]+, value at least one character.
TEST(ParseAction, ParametersFollowTheDataApiConstraints) {
  ActionRequest r = parse_action({{"sqlStatement", "select :1a, :_b, :C_9"},
                                  {"parameters",
                                   {{{"name", "1a"}, {"value", "x"}},
                                    {{"name", "_b"}, {"value", " "}},
                                    {{"name", "C_9"}, {"value", 0}}}}});
  ASSERT_EQ(r.parameters.size(), 3u);
  EXPECT_EQ(r.parameters[0].name, "1a");
  EXPECT_EQ(r.parameters[2].value, "0");
  for (std::string_view name : {"a-b", "a b", "n\u00e4me", "a.b", "$1"}) {
    EXPECT_TRUE(mentions(
        invalid({{"sqlStatement", "x"}, {"parameters", {{{"name", name}, {"value", "1"}}}}}),
        "must be letters, digits and underscores only ([0-9a-zA-Z_]+)"))
        << name;
  }
  EXPECT_TRUE(
      mentions(invalid({{"sqlStatement", "x"}, {"parameters", {{{"name", "a"}, {"value", ""}}}}}),
               "the value of 'a' is empty"));
  EXPECT_TRUE(
      mentions(invalid({{"sqlStatement", "x"}, {"parameters", {{{"name", ""}, {"value", "1"}}}}}),
               "'name' must be a non-empty string"));
}

TEST(ParseAction, OneStatementInSqlStatementsIsStillABatch) {
  ActionRequest r = parse_action({{"sqlStatements", {"insert into t values (1)"}}});
  EXPECT_TRUE(r.batch);
  EXPECT_EQ(r.sqls.size(), 1u);
}

TEST(ApplyOverride, ReplacesOnlyWhatIsGivenAndKeepsTargetsConsistent) {
  services::RedshiftTarget defaults{"cluster", "", "dev", "admin", ""};
  TargetOverride workgroup;
  workgroup.workgroup_name = "wg";
  auto t = apply_override(defaults, workgroup);
  EXPECT_EQ(t.cluster_identifier, "");
  EXPECT_EQ(t.workgroup_name, "wg");
  EXPECT_EQ(t.database, "dev");
  TargetOverride secret;
  secret.secret_arn = "arn:secret";
  t = apply_override(defaults, secret);
  EXPECT_EQ(t.db_user, "");
  EXPECT_EQ(t.secret_arn, "arn:secret");
  EXPECT_EQ(t.cluster_identifier, "cluster");
}

}  // namespace
}  // namespace rstasker::tasker
