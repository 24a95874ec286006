// CloudFormation custom resources over in-memory fakes and a real Launcher: what runs, what is
// answered at once, what the completion answers, and the response body's limits.
#include "rstasker/tasker/cloudformation.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <filesystem>
#include <map>
#include <mutex>
#include <optional>

#include "rstasker/common/error.hpp"
#include "rstasker/common/text.hpp"
#include "support/fakes.hpp"
#include "support/paths.hpp"
#include "support/process.hpp"

namespace rstasker::tasker {
namespace {

using rstasker::testing::FakeRedshiftData;
using rstasker::testing::MemoryStateTable;
using services::StatementStatus;
using ::testing::ElementsAre;
using ::testing::EndsWith;
using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

const std::string kUrl =
    "https://cloudformation-custom-resource-response-euwest1.s3-eu-west-1.amazonaws.com/"
    "arn%3Aaws%3Acloudformation/x?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Signature=s3cr3t5ig";
const std::string kStack =
    "arn:aws:cloudformation:eu-west-1:012345678910:stack/app/327607c0-c9e2-11eb-becd-0a67c69ba16d";
const std::string kLoaderMd5 = "md5153c434b4b77c89e6b94f12c5393af5b";

// Records every body instead of sending it; can be told to fail. Accepts the URLs production
// accepts (https, S3 hosts).
class RecordingResponder : public services::CfnResponder {
 public:
  std::string url_problem(const std::string& url) const override {
    return services::response_url_problem(url, services::ResponseUrlPolicy::kS3Https);
  }
  struct Sent {
    std::string url;
    std::string body;
  };
  void send(const std::string& url, const std::string& body, const aws::CallContext&) override {
    std::lock_guard lock(mutex_);
    if (failure_) throw *failure_;
    sent_.push_back({url, body});
  }
  void fail_with(Error error) {
    std::lock_guard lock(mutex_);
    failure_ = std::move(error);
  }
  std::vector<Sent> sent() const {
    std::lock_guard lock(mutex_);
    return sent_;
  }

 private:
  mutable std::mutex mutex_;
  std::vector<Sent> sent_;
  std::optional<Error> failure_;
};

Json request(const std::string& type, const std::string& resource_type, Json properties,
             const std::string& request_id = "a60d7949-852f-4c7c-b16b-0f7764cca45e") {
  Json r = {{"RequestType", type},
            {"ServiceToken", "arn:aws:lambda:eu-west-1:012345678910:function:redshift-tasker"},
            {"ResponseURL", kUrl},
            {"StackId", kStack},
            {"RequestId", request_id},
            {"LogicalResourceId", "Thing"},
            {"ResourceType", resource_type},
            {"ResourceProperties", std::move(properties)}};
  if (type != "Create") r["PhysicalResourceId"] = "Thing:0123456789abcdef";
  return r;
}

struct CfnTest : ::testing::Test {
  Config config = rstasker::testing::test_config();
  std::shared_ptr<FakeRedshiftData> redshift = std::make_shared<FakeRedshiftData>();
  std::shared_ptr<MemoryStateTable> state = std::make_shared<MemoryStateTable>();
  Launcher launcher{config, redshift, state};
  std::shared_ptr<RecordingResponder> responder = std::make_shared<RecordingResponder>();
  CustomResources resources{config, launcher, responder, state};
  aws::CallContext context{Deadline::after(std::chrono::seconds(30)), {}};

  std::size_t responses() const { return responder->sent().size(); }
  // The body last sent, checked to have gone to `url`.
  Json last_response(const std::string& url = kUrl) const {
    auto sent = responder->sent();
    if (sent.empty()) {
      ADD_FAILURE() << "nothing was sent to CloudFormation";
      return Json::object();
    }
    EXPECT_EQ(sent.back().url, url);
    EXPECT_LE(sent.back().body.size(), services::kMaxCfnResponseBytes);
    return Json::parse(sent.back().body);
  }
  std::vector<std::string> executed_sqls(std::size_t index = 0) const {
    auto executed = redshift->executed();
    if (index >= executed.size()) {
      ADD_FAILURE() << "statement " << index << " was not started";
      return {};
    }
    return executed[index].sqls;
  }
  // The record of the newest statement started for a CloudFormation request.
  StatementRecord newest_record() const {
    auto records = state->records();
    EXPECT_FALSE(records.empty());
    if (records.empty()) return {};
    // Invocation ids increase strictly within the process (same width, so text order works).
    auto newest = std::max_element(
        records.begin(), records.end(),
        [](const auto& a, const auto& b) { return a.key.invocation_id < b.key.invocation_id; });
    return *newest;
  }
  // What the completion path does once the statement of `record` ends.
  static Outcome outcome_of(const StatementRecord& record, StatementStatus status,
                            std::string error = {}) {
    Outcome outcome;
    outcome.status = status;
    outcome.statement_id = record.statement_id;
    outcome.statement_name = record.key.statement_name();
    outcome.error = std::move(error);
    return outcome;
  }
  Json complete(const StatementRecord& record, StatementStatus status, std::string error = {}) {
    EXPECT_EQ(record.waiter.kind, WaiterKind::kCloudFormation);
    resources.respond_completion(record.waiter.cloudformation,
                                 outcome_of(record, status, std::move(error)), context);
    return last_response(record.waiter.cloudformation.value("ResponseURL", ""));
  }
  void expect_shape(const Json& body, const Json& req) {
    EXPECT_EQ(body["StackId"], req["StackId"]);
    EXPECT_EQ(body["RequestId"], req["RequestId"]);
    EXPECT_EQ(body["LogicalResourceId"], req["LogicalResourceId"]);
    EXPECT_EQ(body["NoEcho"], false);
    EXPECT_TRUE(body["Data"].is_object());
    EXPECT_TRUE(body["PhysicalResourceId"].is_string());
    EXPECT_FALSE(body["PhysicalResourceId"].get<std::string>().empty());
    if (body["Status"] == "FAILED") {
      EXPECT_FALSE(body.value("Reason", "").empty());
    } else {
      EXPECT_EQ(body["Status"], "SUCCESS");
    }
  }
};

// ---- the shared example events ----

TEST_F(CfnTest, SharedExampleEventsGetTheOutcomesTheProductDescribes) {
  auto shared = rstasker::testing::shared_dir();
  // A user's clone has no ../shared: skipped there, a failure under RSTASKER_REQUIRE_SERVERS=1.
  if (!shared)
    RSTASKER_SKIP_IF_UNAVAILABLE(
        std::optional<std::string>("../shared is absent: no example events to check"));
  std::vector<std::filesystem::path> files;
  for (const auto& entry : std::filesystem::directory_iterator(*shared / "events")) {
    const std::string name = entry.path().filename().string();
    if (name.starts_with("cfn-") && name.ends_with(".json")) files.push_back(entry.path());
  }
  std::sort(files.begin(), files.end());
  ASSERT_FALSE(files.empty());

  // What each example must start; answered when the statement completes, with these ids.
  struct Expected {
    std::vector<std::string> sqls;
    std::string physical_id;  // "" → a new one (a Create)
  };
  const std::map<std::string, Expected> expected = {
      {"cfn-create-sql.json", {{"create schema if not exists reporting;"}, ""}},
      {"cfn-delete-user.json",
       {{"DROP USER IF EXISTS \"etl_loader\""}, "EtlUser:1793654066.123456"}},
      {"cfn-seed-sqlstatement.json",
       {{"DROP USER IF EXISTS cfncreated_user;"}, "rscfncreateduser:1631885785.837462"}},
      {"cfn-update-user-rename.json",
       {{"ALTER USER \"etl_user\" RENAME TO \"etl_loader\""}, "EtlUser:1793654066.123456"}},
  };

  for (const auto& file : files) {
    SCOPED_TRACE(file.filename().string());
    const Json event = Json::parse(rstasker::testing::read_file(file));
    const std::size_t started_before = redshift->executed().size();
    const std::size_t answered_before = responses();
    Json out = resources.handle(event, context);

    auto it = expected.find(file.filename().string());
    if (it == expected.end()) {
      // A newer example: it must be handled one way or the other, and answered if not started.
      if (out["Status"] != "STARTED") {
        EXPECT_EQ(responses(), answered_before + 1);
      }
      continue;
    }
    ASSERT_EQ(out["Status"], "STARTED") << out.dump();
    ASSERT_EQ(redshift->executed().size(), started_before + 1);
    EXPECT_EQ(executed_sqls(started_before), it->second.sqls);
    EXPECT_TRUE(redshift->executed()[started_before].with_event);
    EXPECT_THAT(redshift->executed()[started_before].statement_name, StartsWith("cfn:"));
    EXPECT_EQ(responses(), answered_before) << "answered before the SQL ran";

    Json body = complete(newest_record(), StatementStatus::kFinished);
    expect_shape(body, event);
    EXPECT_EQ(body["Status"], "SUCCESS");
    if (it->second.physical_id.empty()) {
      EXPECT_THAT(body["PhysicalResourceId"].get<std::string>(),
                  StartsWith(event["LogicalResourceId"].get<std::string>() + ":"));
    } else {
      EXPECT_EQ(body["PhysicalResourceId"], it->second.physical_id);
    }
    EXPECT_EQ(body["PhysicalResourceId"], out["PhysicalResourceId"]);
    EXPECT_EQ(body["Data"]["StatementId"], newest_record().statement_id);
  }
}

// ---- lifecycle of physical ids ----

TEST_F(CfnTest, CreateAnswersWithANewIdThatUpdateAndDeleteKeep) {
  Json out = resources.handle(request("Create", "Custom::RedshiftSql", {{"CreateSql", "select 1"}}),
                              context);
  ASSERT_EQ(out["Status"], "STARTED");
  const std::string id = out["PhysicalResourceId"];
  EXPECT_THAT(id, StartsWith("Thing:"));
  EXPECT_THAT(id, Not(HasSubstr("create-failed")));
  EXPECT_LE(id.size(), 1024u);
  Json body = complete(newest_record(), StatementStatus::kFinished);
  EXPECT_EQ(body["PhysicalResourceId"], id);
  EXPECT_THAT(body["Reason"].get<std::string>(), HasSubstr("finished"));

  // A redelivery of the same request answers with the same id; another request gets another.
  EXPECT_EQ(resources.handle(request("Create", "Custom::RedshiftSql", {{"CreateSql", "select 1"}}),
                             context)["PhysicalResourceId"],
            id);
  EXPECT_NE(resources.handle(request("Create", "Custom::RedshiftSql", {{"CreateSql", "select 1"}},
                                     "another-request"),
                             context)["PhysicalResourceId"],
            id);

  Json update = request("Update", "Custom::RedshiftSql", {{"UpdateSql", "select 2"}});
  update["PhysicalResourceId"] = id;
  EXPECT_EQ(resources.handle(update, context)["PhysicalResourceId"], id);
  EXPECT_EQ(complete(newest_record(), StatementStatus::kFailed, "boom")["PhysicalResourceId"], id)
      << "a failed Update keeps its id";
}

TEST_F(CfnTest, ARetriedInvocationOfTheSameRequestDoesNotRunTheSqlTwice) {
  Json create = request("Create", "Custom::RedshiftSql", {{"CreateSql", "create table t (a int)"}});
  Json first = resources.handle(create, context);
  // Lambda retries an asynchronous invocation that failed after the SQL started.
  Json retried = resources.handle(create, context);
  EXPECT_EQ(retried["StatementName"], first["StatementName"]);
  EXPECT_EQ(retried["StatementId"], first["StatementId"]);
  EXPECT_EQ(redshift->executed().size(), 1u) << "the SQL ran twice";
  EXPECT_EQ(state->records().size(), 1u);
  EXPECT_EQ(responses(), 0u) << "nothing is answered before the SQL ends";
}

TEST_F(CfnTest, ACreateWhoseSqlFailsIsDeletedWithoutSql) {
  Json create = request("Create", "Custom::RedshiftSql",
                        {{"CreateSql", "create schema s"}, {"DeleteSql", "drop schema s"}});
  ASSERT_EQ(resources.handle(create, context)["Status"], "STARTED");
  Json body = complete(newest_record(), StatementStatus::kFailed,
                       "ERROR: permission denied for database dev");
  expect_shape(body, create);
  EXPECT_EQ(body["Status"], "FAILED");
  EXPECT_THAT(body["Reason"].get<std::string>(), HasSubstr("FAILED"));
  EXPECT_THAT(body["Reason"].get<std::string>(), HasSubstr("ERROR: permission denied"));
  const std::string failed_id = body["PhysicalResourceId"];
  EXPECT_THAT(failed_id, HasSubstr("create-failed"));

  Json remove =
      request("Delete", "Custom::RedshiftSql",
              {{"CreateSql", "create schema s"}, {"DeleteSql", "drop schema s"}}, "delete-request");
  remove["PhysicalResourceId"] = failed_id;
  Json out = resources.handle(remove, context);
  EXPECT_EQ(out["Status"], "SUCCESS");
  EXPECT_EQ(redshift->executed().size(), 1u) << "the Delete ran SQL";
  Json answer = last_response();
  expect_shape(answer, remove);
  EXPECT_EQ(answer["Status"], "SUCCESS");
  EXPECT_EQ(answer["PhysicalResourceId"], failed_id);
}

TEST_F(CfnTest, ACreateRefusedAtOnceIsDeletedWithoutSql) {
  Json create = request("Create", "Custom::RedshiftUser",
                        {{"username", "etl_loader"}, {"password", "Plaintext1"}});
  EXPECT_EQ(resources.handle(create, context)["Status"], "FAILED");
  Json body = last_response();
  const std::string failed_id = body["PhysicalResourceId"];
  EXPECT_THAT(failed_id, HasSubstr("create-failed"));

  // Whatever the resource type says, even a seed-style sqlStatement is not run.
  Json remove = request("Delete", "Custom::RedshiftUser", {{"username", "etl_loader"}});
  remove["PhysicalResourceId"] = failed_id;
  remove["sqlStatement"] = "DROP USER etl_loader";
  EXPECT_EQ(resources.handle(remove, context)["Status"], "SUCCESS");
  EXPECT_TRUE(redshift->executed().empty());
  EXPECT_EQ(last_response()["Status"], "SUCCESS");
}

TEST_F(CfnTest, AForeignPhysicalIdIsDeletedWithSql) {
  Json remove = request("Delete", "Custom::RedshiftUser", {{"username", "cfncreated_user"}});
  remove["PhysicalResourceId"] = "rscfncreateduser:1631885785.837462";
  EXPECT_EQ(resources.handle(remove, context)["Status"], "STARTED");
  EXPECT_THAT(executed_sqls(), ElementsAre("DROP USER IF EXISTS \"cfncreated_user\""));
}

// ---- answered at once ----

TEST_F(CfnTest, EmptySqlPropertiesSucceedWithoutSql) {
  for (Json sql : {Json(""), Json("   \n"), Json::array(), Json(nullptr)}) {
    Json out =
        resources.handle(request("Update", "Custom::RedshiftSql", {{"UpdateSql", sql}}), context);
    EXPECT_EQ(out["Status"], "SUCCESS") << sql.dump();
    EXPECT_EQ(last_response()["Status"], "SUCCESS");
    EXPECT_EQ(last_response()["PhysicalResourceId"], "Thing:0123456789abcdef");
  }
  Json out = resources.handle(request("Create", "Custom::RedshiftSql", Json::object()), context);
  EXPECT_EQ(out["Status"], "SUCCESS");
  EXPECT_THAT(out["PhysicalResourceId"].get<std::string>(), Not(HasSubstr("create-failed")));
  EXPECT_TRUE(redshift->executed().empty());
}

TEST_F(CfnTest, AListOfStatementsRunsAsOneTransaction) {
  resources.handle(request("Create", "Custom::RedshiftSql",
                           {{"CreateSql", {"create schema s", "create table s.t (x int)"}}}),
                   context);
  EXPECT_THAT(executed_sqls(), ElementsAre("create schema s", "create table s.t (x int)"));
  EXPECT_THAT(redshift->calls().back(), StartsWith("BatchExecuteStatement cfn:"));
}

TEST_F(CfnTest, BadSqlPropertiesFailAtOnce) {
  const std::vector<Json> bad = {
      {{"CreateSQL", "select 1"}},
      {{"CreateSql", 5}},
      {{"CreateSql", {"select 1", ""}}},
      {{"CreateSql", {{{"sql", "select 1"}}}}},
      {{"CreateSql", std::vector<std::string>(41, "select 1")}},
      {{"CreateSql", std::string(100'001, 'x')}},
  };
  for (const Json& properties : bad) {
    Json out = resources.handle(request("Create", "Custom::RedshiftSql", properties), context);
    EXPECT_EQ(out["Status"], "FAILED") << properties.dump().substr(0, 200);
    EXPECT_EQ(last_response()["Status"], "FAILED");
  }
  EXPECT_THAT(last_response()["Reason"].get<std::string>(), HasSubstr("100000"));
  EXPECT_TRUE(redshift->executed().empty());
}

// Every property name is checked on every request, not only the one the request type uses: a
// Create with a misspelt DeleteSql would succeed and its Delete later drop nothing.
TEST_F(CfnTest, EveryPropertyNameIsCheckedOnEveryRequest) {
  const std::vector<std::pair<Json, std::string>> bad = {
      {{{"CreateSql", "create schema s"}, {"deleteSql", "drop schema s"}},
       "did you mean 'DeleteSql'?"},
      {{{"CreateSql", "create schema s"}, {"Delete_Sql", "drop schema s"}},
       "did you mean 'DeleteSql'?"},
      {{{"CreateSql", "create schema s"}, {"DropSql", "drop schema s"}},
       "supported: CreateSql, UpdateSql, DeleteSql"},
      {{{"CreateSql", "create schema s"}, {"DeleteSql", 5}}, "DeleteSql must be SQL text"},
      {{{"CreateSql", "create schema s"}, {"UpdateSql", {"select 1", ""}}},
       "UpdateSql[1] must be a non-empty SQL string"},
  };
  for (const auto& [properties, why] : bad) {
    Json out = resources.handle(request("Create", "Custom::RedshiftSql", properties), context);
    EXPECT_EQ(out["Status"], "FAILED") << properties.dump();
    EXPECT_THAT(last_response()["Reason"].get<std::string>(), HasSubstr(why)) << properties.dump();
    EXPECT_THAT(last_response()["PhysicalResourceId"].get<std::string>(),
                HasSubstr("create-failed"));
  }
  // An Update to such properties fails too (its rollback brings the old, good ones back).
  Json update = request("Update", "Custom::RedshiftSql",
                        {{"UpdateSql", "select 1"}, {"deleteSql", "drop schema s"}});
  EXPECT_EQ(resources.handle(update, context)["Status"], "FAILED");
  EXPECT_THAT(last_response()["Reason"].get<std::string>(), HasSubstr("'deleteSql'"));
  EXPECT_TRUE(redshift->executed().empty());
  // CloudFormation's own properties are not ours to refuse.
  Json create = request("Create", "Custom::RedshiftSql",
                        {{"ServiceToken", "arn:aws:lambda:eu-west-1:1:function:f"},
                         {"ServiceTimeout", "600"},
                         {"CreateSql", "create schema s"}});
  EXPECT_EQ(resources.handle(create, context)["Status"], "STARTED");
}

// A resource created (by an earlier version) with a property name it cannot use: its Delete
// fails saying what to fix, rather than succeeding without running the DeleteSql it was given.
// A Delete of a Create that failed (as every Create with such properties now does) succeeds.
TEST_F(CfnTest, ADeleteWithBadPropertiesFailsUnlessItsCreateFailed) {
  Json remove = request("Delete", "Custom::RedshiftSql",
                        {{"CreateSql", "create schema s"}, {"deleteSql", "drop schema s"}});
  EXPECT_EQ(resources.handle(remove, context)["Status"], "FAILED");
  Json body = last_response();
  EXPECT_THAT(body["Reason"].get<std::string>(), HasSubstr("did you mean 'DeleteSql'?"));
  EXPECT_EQ(body["PhysicalResourceId"], "Thing:0123456789abcdef");
  EXPECT_TRUE(redshift->executed().empty());

  resources.handle(request("Create", "Custom::RedshiftSql",
                           {{"CreateSql", "create schema s"}, {"deleteSql", "drop schema s"}}),
                   context);
  remove["PhysicalResourceId"] = last_response()["PhysicalResourceId"];
  EXPECT_EQ(resources.handle(remove, context)["Status"], "SUCCESS");
  EXPECT_TRUE(redshift->executed().empty());
}

TEST_F(CfnTest, UnknownResourceTypeFailsListingTheSupportedOnes) {
  Json out = resources.handle(request("Create", "Custom::Whatever", {{"x", "y"}}), context);
  EXPECT_EQ(out["Status"], "FAILED");
  const std::string reason = last_response()["Reason"];
  EXPECT_THAT(reason, HasSubstr("Custom::Whatever"));
  EXPECT_THAT(reason, HasSubstr("Custom::RedshiftSql"));
  EXPECT_THAT(reason, HasSubstr("Custom::RedshiftUser"));
  EXPECT_THAT(reason, HasSubstr("sqlStatement"));
}

TEST_F(CfnTest, MalformedCommonFieldsFailAtOnce) {
  Json bad_type = request("Destroy", "Custom::RedshiftSql", {{"DeleteSql", "x"}});
  EXPECT_EQ(resources.handle(bad_type, context)["Status"], "FAILED");
  EXPECT_THAT(last_response()["Reason"].get<std::string>(), HasSubstr("RequestType"));

  Json no_physical = request("Update", "Custom::RedshiftSql", {{"UpdateSql", "x"}});
  no_physical.erase("PhysicalResourceId");
  EXPECT_EQ(resources.handle(no_physical, context)["Status"], "FAILED");
  EXPECT_THAT(last_response()["Reason"].get<std::string>(), HasSubstr("PhysicalResourceId"));

  Json no_stack = request("Create", "Custom::RedshiftSql", {{"CreateSql", "x"}});
  no_stack["StackId"] = 12;
  EXPECT_EQ(resources.handle(no_stack, context)["Status"], "FAILED");
  EXPECT_THAT(last_response()["Reason"].get<std::string>(), HasSubstr("StackId"));

  Json seed = request("Create", "AWS::CloudFormation::CustomResource", Json::object());
  seed["sqlStatement"] = "";
  EXPECT_EQ(resources.handle(seed, context)["Status"], "FAILED");
  EXPECT_THAT(last_response()["Reason"].get<std::string>(), HasSubstr("sqlStatement"));
  EXPECT_TRUE(redshift->executed().empty());
}

TEST(ResponseUrlPolicy, ProductionTakesHttpsS3UrlsAndTheLocalStackAnyHttpUrl) {
  using services::ResponseUrlPolicy;
  for (const char* url :
       {"https://cloudformation-custom-resource-response-euwest1.s3-eu-west-1.amazonaws.com/a?b=c",
        "https://bucket.s3.amazonaws.com/x", "https://bucket.s3.eu-west-1.amazonaws.com/x",
        "https://s3.eu-west-1.amazonaws.com/bucket/x", "https://bucket.S3.AmazonAWS.com:443/x",
        "https://bucket.s3.dualstack.us-east-1.amazonaws.com/x",
        "https://bucket.s3.cn-north-1.amazonaws.com.cn/x"}) {
    EXPECT_EQ(services::response_url_problem(url, ResponseUrlPolicy::kS3Https), "") << url;
  }
  for (const char* url : {"http://bucket.s3.amazonaws.com/x", "https://amazonaws.com/x",
                          "https://bucket.nots3.amazonaws.com/x", "https://example.com/x",
                          "https://bucket.s3.amazonaws.com.example/x", "https://10.0.0.1/x"}) {
    EXPECT_NE(services::response_url_problem(url, ResponseUrlPolicy::kS3Https), "") << url;
  }
  EXPECT_EQ(services::response_url_problem("http://127.0.0.1:4567/r?X-Amz-Signature=a",
                                           ResponseUrlPolicy::kAnyHttpUrl),
            "");
  EXPECT_NE(services::response_url_problem("ftp://x/y", ResponseUrlPolicy::kAnyHttpUrl), "");
  auto env = [](const char* value) -> aws::EnvLookup {
    return [value](std::string_view) -> std::optional<std::string> {
      if (value == nullptr) return std::nullopt;
      return std::string(value);
    };
  };
  EXPECT_EQ(services::response_url_policy_from_env(env(nullptr)), ResponseUrlPolicy::kS3Https);
  EXPECT_EQ(services::response_url_policy_from_env(env("any")), ResponseUrlPolicy::kAnyHttpUrl);
  EXPECT_THROW(services::response_url_policy_from_env(env("all")), Error);
}

TEST_F(CfnTest, NoUsableResponseUrlIsAnInvalidRequest) {
  const std::vector<Json> urls = {
      Json(nullptr), Json(5), Json("ftp://bucket/x?X-Amz-Signature=a"), Json("https://"),
      Json("https:///x?X-Amz-Signature=a"), Json("https://host/a b?X-Amz-Signature=a"),
      Json("s3://bucket/key?X-Amz-Signature=abcdef"),
      // Not CloudFormation's: plain http, or a host that is not S3.
      Json("http://bucket.s3.amazonaws.com/x?X-Amz-Signature=a"),
      Json("https://169.254.169.254/latest?X-Amz-Signature=a"),
      Json("https://bucket.s3.amazonaws.com.evil.example/x"),
      Json("https://s3.evil.example/x?X-Amz-Signature=a"),
      Json("https://bucket.s3.amazonaws.com:8443/x"), Json("https://me@bucket.s3.amazonaws.com/x")};
  for (const Json& url : urls) {
    Json event = request("Create", "Custom::RedshiftSql", {{"CreateSql", "select 1"}});
    if (url.is_null()) {
      event.erase("ResponseURL");
    } else {
      event["ResponseURL"] = url;
    }
    try {
      resources.handle(event, context);
      ADD_FAILURE() << "accepted " << url.dump();
    } catch (const Error& e) {
      EXPECT_EQ(e.name(), error_names::kInvalidRequest);
      EXPECT_THAT(e.message(), HasSubstr("ResponseURL"));
      EXPECT_THAT(e.message(), Not(HasSubstr("X-Amz-Signature"))) << "the URL leaked";
    }
  }
  EXPECT_EQ(responses(), 0u);
  EXPECT_TRUE(redshift->executed().empty());
}

TEST_F(CfnTest, ARefusedStartFailsTheCreateWhileATransientOneIsRetried) {
  redshift->fail_next_execute(Error("ValidationException", "Sql is invalid", 400, false));
  Json out =
      resources.handle(request("Create", "Custom::RedshiftSql", {{"CreateSql", "selec"}}), context);
  EXPECT_EQ(out["Status"], "FAILED");
  Json body = last_response();
  EXPECT_THAT(body["Reason"].get<std::string>(), HasSubstr("ValidationException: Sql is invalid"));
  EXPECT_THAT(body["PhysicalResourceId"].get<std::string>(), HasSubstr("create-failed"));

  redshift->fail_next_execute(Error("ThrottlingException", "slow down", 400, true));
  const std::size_t answered = responses();
  EXPECT_THROW(resources.handle(request("Create", "Custom::RedshiftSql",
                                        {{"CreateSql", "select 1"}}, "second-request"),
                                context),
               Error);
  EXPECT_EQ(responses(), answered) << "answered although the invocation will be retried";
}

TEST_F(CfnTest, AnUndeliverableAnswerFailsTheInvocation) {
  responder->fail_with(
      Error("HttpError403", "CloudFormation response upload failed: HTTP 403", 403, false));
  EXPECT_THROW(resources.handle(request("Create", "Custom::Unknown", Json::object()), context),
               Error);
}

TEST_F(CfnTest, AMisconfiguredTargetFailsAtOnce) {
  config.target.db_user.clear();
  Json out = resources.handle(request("Create", "Custom::RedshiftSql", {{"CreateSql", "select 1"}}),
                              context);
  EXPECT_EQ(out["Status"], "FAILED");
  EXPECT_THAT(last_response()["Reason"].get<std::string>(), HasSubstr("misconfigured"));
}

TEST_F(CfnTest, StatementNamesStayShortWhateverTheRequestId) {
  resources.handle(request("Create", "Custom::RedshiftSql", {{"CreateSql", "select 1"}},
                           std::string(5000, 'r') + ":x"),
                   context);
  ASSERT_EQ(redshift->executed().size(), 1u);
  EXPECT_LE(redshift->executed()[0].statement_name.size(), services::kMaxStatementNameLength);
  EXPECT_TRUE(StatementKey::from_statement_name(redshift->executed()[0].statement_name));
}

// ---- Custom::RedshiftUser ----

TEST_F(CfnTest, UserCreateStartsOneStatementAndAnswersWithTheUsername) {
  Json create = request("Create", "Custom::RedshiftUser",
                        {{"ServiceToken", "arn:aws:lambda:eu-west-1:012345678910:function:f"},
                         {"username", "etl_loader"},
                         {"password", kLoaderMd5},
                         {"groups", {"loaders"}},
                         {"connection_limit", "3"}});
  Json out = resources.handle(create, context);
  EXPECT_EQ(out["Status"], "STARTED");
  EXPECT_THAT(out.dump(), Not(HasSubstr(kUrl)));
  EXPECT_THAT(executed_sqls(), ElementsAre("CREATE USER \"etl_loader\" PASSWORD '" + kLoaderMd5 +
                                           "' IN GROUP \"loaders\" CONNECTION LIMIT 3"));
  Json waiter = newest_record().waiter.cloudformation;
  EXPECT_EQ(waiter["ResponseURL"], kUrl);
  EXPECT_EQ(waiter["RequestType"], "Create");
  EXPECT_EQ(waiter["PhysicalResourceId"], out["PhysicalResourceId"]);
  EXPECT_THAT(waiter["FailedPhysicalResourceId"].get<std::string>(), HasSubstr("create-failed"));

  Json body = complete(newest_record(), StatementStatus::kFinished);
  EXPECT_EQ(body["Data"]["Username"], "etl_loader");
  EXPECT_FALSE(body["Data"]["StatementId"].get<std::string>().empty());
}

TEST_F(CfnTest, UserPlaintextPasswordFailsAtOnceWithoutRepeatingIt) {
  Json out = resources.handle(request("Create", "Custom::RedshiftUser",
                                      {{"username", "etl_loader"}, {"password", "Hunter2Secret"}}),
                              context);
  EXPECT_EQ(out["Status"], "FAILED");
  EXPECT_THAT(responder->sent().back().body, Not(HasSubstr("Hunter2Secret")));
  EXPECT_THAT(out.dump(), Not(HasSubstr("Hunter2Secret")));
  EXPECT_THAT(last_response()["Reason"].get<std::string>(), HasSubstr("md5"));
  EXPECT_TRUE(redshift->executed().empty());
}

TEST_F(CfnTest, UserUpdateRenamesAndChangesInOneTransaction) {
  Json update = request("Update", "Custom::RedshiftUser",
                        {{"username", "etl_writer"}, {"create_db", "true"}, {"groups", {"w"}}});
  update["OldResourceProperties"] = {{"username", "etl_loader"}, {"groups", {"r"}}};
  EXPECT_EQ(resources.handle(update, context)["Status"], "STARTED");
  EXPECT_THAT(executed_sqls(), ElementsAre("ALTER USER \"etl_loader\" RENAME TO \"etl_writer\"",
                                           "ALTER USER \"etl_writer\" CREATEDB",
                                           "ALTER GROUP \"r\" DROP USER \"etl_writer\"",
                                           "ALTER GROUP \"w\" ADD USER \"etl_writer\""));
  EXPECT_THAT(redshift->calls().back(), StartsWith("BatchExecuteStatement"));
  Json body = complete(newest_record(), StatementStatus::kFinished);
  EXPECT_EQ(body["PhysicalResourceId"], "Thing:0123456789abcdef");
  EXPECT_EQ(body["Data"]["Username"], "etl_writer");
}

TEST_F(CfnTest, UserUpdateWithoutChangeSucceedsAtOnce) {
  Json update = request("Update", "Custom::RedshiftUser",
                        {{"username", "etl_loader"}, {"create_db", "true"}});
  update["OldResourceProperties"] = {{"username", "etl_loader"}, {"create_db", true}};
  EXPECT_EQ(resources.handle(update, context)["Status"], "SUCCESS");
  Json body = last_response();
  EXPECT_EQ(body["PhysicalResourceId"], "Thing:0123456789abcdef");
  EXPECT_EQ(body["Data"]["Username"], "etl_loader");
  EXPECT_TRUE(redshift->executed().empty());
}

TEST_F(CfnTest, RollingBackARefusedUserUpdateSucceedsAtOnce) {
  // The forward update (to an invalid name) was refused before any SQL ran; its rollback swaps
  // the properties and must not try to rename a user that was never renamed.
  Json rollback = request("Update", "Custom::RedshiftUser", {{"username", "etl_loader"}});
  rollback["OldResourceProperties"] = {{"username", "Etl-Loader"}};
  EXPECT_EQ(resources.handle(rollback, context)["Status"], "SUCCESS");
  EXPECT_TRUE(redshift->executed().empty());

  Json no_old = request("Update", "Custom::RedshiftUser", {{"username", "etl_loader"}});
  EXPECT_EQ(resources.handle(no_old, context)["Status"], "FAILED");
  EXPECT_THAT(last_response()["Reason"].get<std::string>(), HasSubstr("OldResourceProperties"));
}

// ---- rolling back a failed Custom::RedshiftUser Update ----

TEST_F(CfnTest, RollingBackAUserUpdateWhoseSqlFailedRunsNoSql) {
  // The forward update renames etl_loader to etl_writer and adds a group; Redshift refuses the
  // group, so the one transaction changes nothing: the user is still etl_loader.
  Json update = request("Update", "Custom::RedshiftUser",
                        {{"username", "etl_writer"}, {"groups", {"no_such_group"}}});
  update["OldResourceProperties"] = {{"username", "etl_loader"}};
  ASSERT_EQ(resources.handle(update, context)["Status"], "STARTED");
  Json failed = complete(newest_record(), StatementStatus::kFailed,
                         "ERROR: group \"no_such_group\" does not exist");
  EXPECT_EQ(failed["Status"], "FAILED");
  EXPECT_EQ(failed["PhysicalResourceId"], "Thing:0123456789abcdef");

  // CloudFormation's rollback swaps the properties. Its reverse diff would rename etl_writer,
  // which never existed, back to etl_loader and fail the rollback too.
  Json rollback =
      request("Update", "Custom::RedshiftUser", {{"username", "etl_loader"}}, "rollback-request");
  rollback["OldResourceProperties"] = {{"username", "etl_writer"}, {"groups", {"no_such_group"}}};
  Json out = resources.handle(rollback, context);
  EXPECT_EQ(out["Status"], "SUCCESS");
  EXPECT_EQ(redshift->executed().size(), 1u) << "the rollback ran SQL";
  Json body = last_response();
  expect_shape(body, rollback);
  EXPECT_EQ(body["Status"], "SUCCESS");
  EXPECT_EQ(body["PhysicalResourceId"], "Thing:0123456789abcdef");
  EXPECT_EQ(body["Data"]["Username"], "etl_loader");
  // A retried rollback (the answer got lost) is recognised again.
  EXPECT_EQ(resources.handle(rollback, context)["Status"], "SUCCESS");
  EXPECT_EQ(redshift->executed().size(), 1u);
}

TEST_F(CfnTest, OnlyTheExactRollbackOfAFailedUserUpdateIsSkipped) {
  Json forward = request("Update", "Custom::RedshiftUser", {{"username", "etl_writer"}});
  forward["OldResourceProperties"] = {{"username", "etl_loader"}};
  ASSERT_EQ(resources.handle(forward, context)["Status"], "STARTED");
  complete(newest_record(), StatementStatus::kFailed, "ERROR: user \"etl_writer\" exists");

  // Another physical id, or other target properties: SQL as usual.
  Json other_resource =
      request("Update", "Custom::RedshiftUser", {{"username", "etl_loader"}}, "other-resource");
  other_resource["PhysicalResourceId"] = "Other:0123456789abcdef";
  other_resource["OldResourceProperties"] = {{"username", "etl_writer"}};
  EXPECT_EQ(resources.handle(other_resource, context)["Status"], "STARTED");
  Json elsewhere =
      request("Update", "Custom::RedshiftUser", {{"username", "etl_reader"}}, "elsewhere");
  elsewhere["OldResourceProperties"] = {{"username", "etl_writer"}};
  EXPECT_EQ(resources.handle(elsewhere, context)["Status"], "STARTED");
  EXPECT_EQ(redshift->executed().size(), 3u);

  // The same update again, and this time it works: the record is forgotten, so changing the user
  // back later really renames it.
  Json again = request("Update", "Custom::RedshiftUser", {{"username", "etl_writer"}}, "again");
  again["OldResourceProperties"] = {{"username", "etl_loader"}};
  ASSERT_EQ(resources.handle(again, context)["Status"], "STARTED");
  EXPECT_EQ(complete(newest_record(), StatementStatus::kFinished)["Status"], "SUCCESS");
  EXPECT_TRUE(state->failed_updates().empty());
  Json back = request("Update", "Custom::RedshiftUser", {{"username", "etl_loader"}}, "back");
  back["OldResourceProperties"] = {{"username", "etl_writer"}};
  EXPECT_EQ(resources.handle(back, context)["Status"], "STARTED");
  EXPECT_THAT(executed_sqls(4), ElementsAre("ALTER USER \"etl_writer\" RENAME TO \"etl_loader\""));
}

TEST_F(CfnTest, RollingBackAUserUpdateRefusedAtOnceRunsNoSql) {
  // Refused before any SQL: an md5 hash is salted with the user name, so it cannot survive a
  // rename. The rollback's reverse diff is the same rename with the same hash, refused again.
  Json forward = request("Update", "Custom::RedshiftUser",
                         {{"username", "etl_writer"}, {"password", kLoaderMd5}});
  forward["OldResourceProperties"] = {{"username", "etl_loader"}, {"password", kLoaderMd5}};
  EXPECT_EQ(resources.handle(forward, context)["Status"], "FAILED");
  Json rollback = request("Update", "Custom::RedshiftUser",
                          {{"username", "etl_loader"}, {"password", kLoaderMd5}}, "rollback");
  rollback["OldResourceProperties"] = {{"username", "etl_writer"}, {"password", kLoaderMd5}};
  EXPECT_EQ(resources.handle(rollback, context)["Status"], "SUCCESS");
  EXPECT_EQ(last_response()["Status"], "SUCCESS");
  EXPECT_TRUE(redshift->executed().empty());
}

TEST_F(CfnTest, AFailedUserUpdateIsRecordedBeforeItIsAnswered) {
  Json forward = request("Update", "Custom::RedshiftUser", {{"username", "etl_writer"}});
  forward["OldResourceProperties"] = {{"username", "etl_loader"}};
  ASSERT_EQ(resources.handle(forward, context)["Status"], "STARTED");
  // The state table is unavailable for now: nothing is answered, the completion is retried.
  state->before_operation = [](std::string_view operation) {
    if (operation == "record_failed_update") {
      throw Error("ProvisionedThroughputExceededException", "slow down", 400, true);
    }
  };
  StatementRecord record = newest_record();
  const Outcome outcome = outcome_of(record, StatementStatus::kFailed);
  EXPECT_THROW(resources.respond_completion(record.waiter.cloudformation, outcome, context), Error);
  EXPECT_EQ(responses(), 0u) << "FAILED answered without the record its rollback needs";
  state->before_operation = nullptr;
  resources.respond_completion(record.waiter.cloudformation, outcome, context);
  EXPECT_EQ(last_response()["Status"], "FAILED");
  EXPECT_EQ(state->failed_updates().size(), 1u);
}

// A successful Update must not leave the record of an earlier failed one behind: it would answer
// a later, real change back to the old properties without running its SQL. So the SUCCESS answer
// waits until the record is gone, even when forgetting fails with an error DynamoDB calls final.
TEST_F(CfnTest, ASuccessfulUserUpdateIsAnsweredOnlyOnceTheFailedOneIsForgotten) {
  Json failing = request("Update", "Custom::RedshiftUser", {{"username", "etl_writer"}});
  failing["OldResourceProperties"] = {{"username", "etl_loader"}};
  ASSERT_EQ(resources.handle(failing, context)["Status"], "STARTED");
  complete(newest_record(), StatementStatus::kFailed, "ERROR: permission denied");
  ASSERT_EQ(state->failed_updates().size(), 1u);

  Json retry = request("Update", "Custom::RedshiftUser", {{"username", "etl_writer"}}, "retry-1");
  retry["OldResourceProperties"] = {{"username", "etl_loader"}};
  ASSERT_EQ(resources.handle(retry, context)["Status"], "STARTED");
  const std::size_t answered = responses();
  state->before_operation = [](std::string_view operation) {
    if (operation == "forget_failed_update") {
      throw Error("AccessDeniedException", "not allowed", 400, false);
    }
  };
  StatementRecord record = newest_record();
  const Outcome outcome = outcome_of(record, StatementStatus::kFinished);
  try {
    resources.respond_completion(record.waiter.cloudformation, outcome, context);
    FAIL() << "SUCCESS answered with the failed update still recorded";
  } catch (const Error& e) {
    EXPECT_TRUE(e.retryable()) << "the completion must come back: " << e.what();
  }
  EXPECT_EQ(responses(), answered);
  state->before_operation = nullptr;
  resources.respond_completion(record.waiter.cloudformation, outcome, context);
  EXPECT_EQ(last_response()["Status"], "SUCCESS");
  EXPECT_TRUE(state->failed_updates().empty());
}

TEST_F(CfnTest, UserRenameKeepingTheMd5HashFailsAtOnce) {
  Json update = request("Update", "Custom::RedshiftUser",
                        {{"username", "etl_writer"}, {"password", kLoaderMd5}});
  update["OldResourceProperties"] = {{"username", "etl_loader"}, {"password", kLoaderMd5}};
  EXPECT_EQ(resources.handle(update, context)["Status"], "FAILED");
  EXPECT_EQ(last_response()["PhysicalResourceId"], "Thing:0123456789abcdef");
  EXPECT_THAT(last_response()["Reason"].get<std::string>(), HasSubstr("salted with the user name"));
}

// ---- completion answers ----

TEST_F(CfnTest, CompletionAnswersAreDeterministicSoARedeliveryIsHarmless) {
  resources.handle(request("Create", "Custom::RedshiftSql", {{"CreateSql", "select 1"}}), context);
  StatementRecord record = newest_record();
  Json first = complete(record, StatementStatus::kFailed, "ERROR: relation \"x\" does not exist");
  Json second = complete(record, StatementStatus::kFailed, "ERROR: relation \"x\" does not exist");
  auto sent = responder->sent();
  ASSERT_EQ(sent.size(), 2u);
  EXPECT_EQ(sent[0].body, sent[1].body);
}

TEST_F(CfnTest, AnAbortedStatementFails) {
  resources.handle(request("Create", "Custom::RedshiftSql", {{"CreateSql", "select 1"}}), context);
  Json body = complete(newest_record(), StatementStatus::kAborted);
  EXPECT_EQ(body["Status"], "FAILED");
  EXPECT_THAT(body["Reason"].get<std::string>(), HasSubstr("ABORTED"));
  EXPECT_THAT(body["Reason"].get<std::string>(), HasSubstr("cancelled"));
}

TEST_F(CfnTest, AHugeErrorTextStillFitsTheBody) {
  resources.handle(request("Create", "Custom::RedshiftSql", {{"CreateSql", "select 1"}}), context);
  Json body = complete(newest_record(), StatementStatus::kFailed, std::string(50'000, 'e'));
  EXPECT_THAT(body["Reason"].get<std::string>(), EndsWith("[truncated]"));
  EXPECT_FALSE(body["Data"]["StatementId"].get<std::string>().empty());
}

TEST_F(CfnTest, AWaiterWithoutAUrlCannotBeAnswered) {
  Outcome outcome;
  outcome.status = StatementStatus::kFinished;
  EXPECT_THROW(resources.respond_completion({{"RequestId", "r"}}, outcome, context), Error);
  EXPECT_EQ(responses(), 0u);
}

// ---- cfn_response_body ----

Json shaped_request() {
  return {{"StackId", kStack}, {"RequestId", "req-1"}, {"LogicalResourceId", "Thing"}};
}

Json parse_checked(const std::string& body) {
  EXPECT_LE(body.size(), services::kMaxCfnResponseBytes);
  EXPECT_TRUE(is_valid_utf8(body));
  Json parsed = Json::parse(body, nullptr, false);
  EXPECT_FALSE(parsed.is_discarded()) << body.substr(0, 300);
  return parsed;
}

TEST(CfnResponseBody, HasEveryFieldCloudFormationReads) {
  Json body = parse_checked(
      cfn_response_body(shaped_request(), true, "ok", "Thing:1", {{"StatementId", "abc"}}));
  EXPECT_EQ(body, Json({{"Status", "SUCCESS"},
                        {"Reason", "ok"},
                        {"PhysicalResourceId", "Thing:1"},
                        {"StackId", kStack},
                        {"RequestId", "req-1"},
                        {"LogicalResourceId", "Thing"},
                        {"NoEcho", false},
                        {"Data", {{"StatementId", "abc"}}}}));
}

TEST(CfnResponseBody, AFailureAlwaysHasAReason) {
  Json body = parse_checked(cfn_response_body(shaped_request(), false, "", "Thing:1"));
  EXPECT_EQ(body["Status"], "FAILED");
  EXPECT_FALSE(body["Reason"].get<std::string>().empty());
  EXPECT_FALSE(
      parse_checked(cfn_response_body(shaped_request(), false, "x", ""))["PhysicalResourceId"]
          .get<std::string>()
          .empty());
}

TEST(CfnResponseBody, AHugeReasonIsShortenedFirst) {
  const std::string reason = "ERROR: " + std::string(100'000, 'x');
  Json body = parse_checked(
      cfn_response_body(shaped_request(), false, reason, "Thing:1", {{"StatementId", "abc"}}));
  const std::string kept = body["Reason"];
  EXPECT_THAT(kept, StartsWith("ERROR: xxx"));
  EXPECT_THAT(kept, EndsWith(" [truncated]"));
  EXPECT_GT(kept.size(), 3000u) << "shortened more than needed";
  EXPECT_EQ(body["Data"]["StatementId"], "abc");
  EXPECT_EQ(body["StackId"], kStack);
}

TEST(CfnResponseBody, MultibyteEscapedAndInvalidTextNeverBreaksTheJson) {
  const std::vector<std::string> reasons = {
      [] {
        std::string s;
        for (int i = 0; i < 3000; ++i) s += "\xc3\xa9\xf0\x9f\x98\x80";  // é 😀
        return s;
      }(),
      std::string(5000, '\x01'),  // each becomes \u0001 in JSON
      std::string(5000, '"'),
      std::string(5000, '\\'),
      std::string(5000, '\xff'),  // not UTF-8 at all
      "\xe2\x82" + std::string(5000, 'a') + "\xe2",
  };
  for (const auto& reason : reasons) {
    Json body = parse_checked(cfn_response_body(shaped_request(), false, reason, "Thing:1"));
    EXPECT_EQ(body["Status"], "FAILED");
    EXPECT_FALSE(body["Reason"].get<std::string>().empty());
  }
}

TEST(CfnResponseBody, DataGivesWayWhenTheReasonIsAlreadyShort) {
  Json data = {{"StatementId", "abc"},
               {"Big", std::string(6000, 'd')},
               {"Bigger", std::string(7000, 'd')},
               {"Username", "etl_loader"}};
  const std::string reason(3000, 'r');
  Json body = parse_checked(cfn_response_body(shaped_request(), true, reason, "Thing:1", data));
  EXPECT_EQ(body["Data"]["StatementId"], "abc");
  EXPECT_EQ(body["Data"]["Username"], "etl_loader");
  EXPECT_FALSE(body["Data"].contains("Bigger"));
  EXPECT_GE(body["Reason"].get<std::string>().size(), 1024u);
}

TEST(CfnResponseBody, EvenAbsurdRequestsGiveAWholeBodyWithinTheLimit) {
  Json absurd = {{"StackId", std::string(10'000, 's')},
                 {"RequestId", std::string(10'000, '\x02')},
                 {"LogicalResourceId", std::string(10'000, 'l')}};
  parse_checked(cfn_response_body(absurd, false, std::string(10'000, 'r'), std::string(10'000, 'p'),
                                  {{"k", std::string(10'000, 'v')}}));
}

TEST(CfnResponseBody, EverySizeFitsAndTheSameInputGivesTheSameBody) {
  for (std::size_t reason_size : {0u, 100u, 3800u, 3900u, 4000u, 4096u, 5000u, 20000u}) {
    for (std::size_t data_size : {0u, 100u, 2000u, 4000u, 9000u}) {
      const std::string reason(reason_size, 'r');
      Json data = {{"StatementId", "abc"}, {"Extra", std::string(data_size, 'd')}};
      std::string once = cfn_response_body(shaped_request(), false, reason, "Thing:1", data);
      parse_checked(once);
      EXPECT_EQ(once, cfn_response_body(shaped_request(), false, reason, "Thing:1", data));
    }
  }
}

}  // namespace
}  // namespace rstasker::tasker
