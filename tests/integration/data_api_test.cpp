// tasker-local's Redshift Data API against a real PostgreSQL: statuses, typed results, paging,
// failures, cancel, batches, parameters, listing, idempotency, completion events, validation and
// concurrency, as a Data API client would observe them.
#include "local/data_api.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "rstasker/common/error.hpp"
#include "support/postgres_server.hpp"
#include "support/process.hpp"

namespace rstasker::local {
namespace {

using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::PostgresServer;
using ::testing::StartsWith;

constexpr const char* kCaller = "arn:aws:sts::123456789012:assumed-role/tasker/session-1";
constexpr const char* kOtherCaller = "arn:aws:iam::123456789012:user/someone-else";

// Completion events, captured from the publish callback and awaited with a condition variable.
class EventSink {
 public:
  std::function<void(const services::EventEntry&)> callback() {
    return [this](const services::EventEntry& event) {
      std::lock_guard lock(mutex_);
      events_.push_back(event);
      changed_.notify_all();
    };
  }
  // The first `count` events, waiting up to 30 s for them.
  std::vector<services::EventEntry> wait_for(std::size_t count) {
    std::unique_lock lock(mutex_);
    changed_.wait_for(lock, std::chrono::seconds(30), [&] { return events_.size() >= count; });
    return events_;
  }
  std::vector<services::EventEntry> events() {
    std::lock_guard lock(mutex_);
    return events_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<services::EventEntry> events_;
};

class DataApiTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (!PostgresServer::unavailable_reason()) server_ = std::make_unique<PostgresServer>();
  }
  static void TearDownTestSuite() { server_.reset(); }

  void SetUp() override { RSTASKER_SKIP_IF_UNAVAILABLE(PostgresServer::unavailable_reason()); }

  DataApiOptions options() {
    DataApiOptions options;
    options.pg_conninfo = server_->client_conninfo();
    options.page_rows = 1000;
    options.publish = events_.callback();
    return options;
  }

  DataApi& api() {
    if (!api_) api_ = std::make_unique<DataApi>(options());
    return *api_;
  }

  static Json execute_request(const std::string& sql) {
    return Json{{"ClusterIdentifier", "local-cluster"},
                {"Database", "postgres"},
                {"DbUser", "awsuser"},
                {"Sql", sql}};
  }

  Json execute(const std::string& sql, Json extra = Json::object()) {
    Json request = execute_request(sql);
    request.update(extra);
    return api().handle("ExecuteStatement", request, kCaller);
  }

  Json describe(const std::string& id) {
    return api().handle("DescribeStatement", Json{{"Id", id}}, kCaller);
  }

  // Runs `sql` to completion and returns its DescribeStatement.
  Json run(const std::string& sql, Json extra = Json::object()) {
    const std::string id = execute(sql, std::move(extra))["Id"];
    api().wait_idle();
    return describe(id);
  }

  Json result(const std::string& id, const std::string& next_token = "") {
    Json request{{"Id", id}};
    if (!next_token.empty()) request["NextToken"] = next_token;
    return api().handle("GetStatementResult", request, kCaller);
  }

  // The Error a call throws (fails the test when it does not throw one).
  static Error error_of(const std::function<void()>& call) {
    try {
      call();
    } catch (const Error& error) {
      return error;
    }
    ADD_FAILURE() << "expected an Error";
    return Error("none", "no error");
  }

  Error call_error(const std::string& operation, const Json& request) {
    return error_of([&] { api().handle(operation, request, kCaller); });
  }

  // Polls DescribeStatement, as a Data API client does, until `status` or 10 s.
  Json wait_for_status(const std::string& id, const std::string& status) {
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    Json described = describe(id);
    while (described["Status"] != status && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
      described = describe(id);
    }
    return described;
  }

  static std::unique_ptr<PostgresServer> server_;
  EventSink events_;
  std::unique_ptr<DataApi> api_;
};

std::unique_ptr<PostgresServer> DataApiTest::server_;

TEST_F(DataApiTest, StatementFinishesWithTypedResults) {
  server_->psql("create table typed (id int not null, note varchar(20) default 'none')");
  const Json response = execute(
      "select 1::int2 as small, 2::int4 as medium, 3::int8 as big, 1.5::float4 as f4, "
      "2.25::float8 as f8, 12.34::numeric(10,2) as amount, true as flag, 'x'::varchar(10) as v, "
      "'y'::char(3) as c, 'z'::text as t, date '2024-01-02' as d, "
      "timestamp '2024-01-02 03:04:05' as ts, null::int as nothing, '\\x0102ff'::bytea as b");
  EXPECT_EQ(response["ClusterIdentifier"], "local-cluster");
  EXPECT_EQ(response["Database"], "postgres");
  EXPECT_EQ(response["DbUser"], "awsuser");
  EXPECT_TRUE(response["CreatedAt"].is_number_float());
  const std::string id = response["Id"];
  EXPECT_THAT(id, ::testing::MatchesRegex("[a-z0-9]{8}(-[a-z0-9]{4}){3}-[a-z0-9]{12}"));

  api().wait_idle();
  const Json described = describe(id);
  EXPECT_EQ(described["Status"], "FINISHED");
  EXPECT_GT(described["Duration"].get<std::int64_t>(), 0);
  EXPECT_GT(described["RedshiftPid"].get<std::int64_t>(), 0);
  EXPECT_GT(described["RedshiftQueryId"].get<std::int64_t>(), 0);
  EXPECT_EQ(described["HasResultSet"], true);
  EXPECT_EQ(described["ResultRows"], 1);
  EXPECT_GT(described["ResultSize"].get<std::int64_t>(), 0);
  EXPECT_EQ(described["ClusterIdentifier"], "local-cluster");
  EXPECT_EQ(described["Database"], "postgres");
  EXPECT_THAT(described["QueryString"].get<std::string>(), StartsWith("select 1::int2"));
  EXPECT_LE(described["CreatedAt"].get<double>(), described["UpdatedAt"].get<double>());
  EXPECT_FALSE(described.contains("Error"));
  EXPECT_FALSE(described.contains("SubStatements"));

  const Json page = result(id);
  EXPECT_EQ(page["TotalNumRows"], 1);
  EXPECT_FALSE(page.contains("NextToken"));
  const Json& row = page["Records"][0];
  EXPECT_EQ(row[0], Json({{"longValue", 1}}));
  EXPECT_EQ(row[1], Json({{"longValue", 2}}));
  EXPECT_EQ(row[2], Json({{"longValue", 3}}));
  EXPECT_EQ(row[3], Json({{"doubleValue", 1.5}}));
  EXPECT_EQ(row[4], Json({{"doubleValue", 2.25}}));
  EXPECT_EQ(row[5], Json({{"stringValue", "12.34"}}));
  EXPECT_EQ(row[6], Json({{"booleanValue", true}}));
  EXPECT_EQ(row[7], Json({{"stringValue", "x"}}));
  EXPECT_EQ(row[8], Json({{"stringValue", "y  "}}));
  EXPECT_EQ(row[9], Json({{"stringValue", "z"}}));
  EXPECT_EQ(row[10], Json({{"stringValue", "2024-01-02"}}));
  EXPECT_EQ(row[11], Json({{"stringValue", "2024-01-02 03:04:05"}}));
  EXPECT_EQ(row[12], Json({{"isNull", true}}));
  EXPECT_EQ(row[13], Json({{"blobValue", "AQL/"}}));

  const Json& columns = page["ColumnMetadata"];
  ASSERT_EQ(columns.size(), 14U);
  std::vector<std::string> types;
  for (const Json& column : columns) types.push_back(column["typeName"]);
  EXPECT_THAT(types,
              ElementsAre("int2", "int4", "int8", "float4", "float8", "numeric", "bool", "varchar",
                          "bpchar", "text", "date", "timestamp", "int4", "bytea"));
  EXPECT_EQ(columns[0]["name"], "small");
  EXPECT_EQ(columns[0]["label"], "small");
  EXPECT_EQ(columns[0]["isSigned"], true);
  EXPECT_EQ(columns[5]["precision"], 10);
  EXPECT_EQ(columns[5]["scale"], 2);
  EXPECT_EQ(columns[7]["precision"], 10);
  EXPECT_EQ(columns[7]["isCaseSensitive"], true);
  EXPECT_EQ(columns[6]["isCaseSensitive"], false);

  // Columns read from a table carry their schema, table, nullability and default.
  const Json table = run("select id, note from typed");
  const Json table_page = result(table["Id"]);
  EXPECT_EQ(table_page["TotalNumRows"], 0);
  EXPECT_TRUE(table_page["Records"].empty());
  EXPECT_EQ(table_page["ColumnMetadata"][0]["schemaName"], "public");
  EXPECT_EQ(table_page["ColumnMetadata"][0]["tableName"], "typed");
  EXPECT_EQ(table_page["ColumnMetadata"][0]["nullable"], 0);
  EXPECT_EQ(table_page["ColumnMetadata"][1]["nullable"], 1);
  EXPECT_THAT(table_page["ColumnMetadata"][1]["columnDefault"].get<std::string>(),
              HasSubstr("'none'"));
}

TEST_F(DataApiTest, StatusesBeforeCompletionUseTheNullMarkers) {
  const std::string id = execute("select pg_sleep(0.3)")["Id"];
  const Json early = describe(id);
  EXPECT_THAT(early["Status"].get<std::string>(),
              ::testing::AnyOf("SUBMITTED", "PICKED", "STARTED"));
  EXPECT_EQ(early["Duration"], -1);
  EXPECT_EQ(early["ResultRows"], -1);
  EXPECT_EQ(early["ResultSize"], -1);
  EXPECT_EQ(early["HasResultSet"], false);
  const Error not_yet = call_error("GetStatementResult", Json{{"Id", id}});
  EXPECT_EQ(not_yet.name(), "ResourceNotFoundException");
  api().wait_idle();
  EXPECT_EQ(describe(id)["Status"], "FINISHED");
}

TEST_F(DataApiTest, DmlAndDdlReportRowsWithoutAResultSet) {
  EXPECT_EQ(run("create table dml_target (n int)")["Status"], "FINISHED");
  const Json insert = run("insert into dml_target select generate_series(1, 3)");
  EXPECT_EQ(insert["Status"], "FINISHED");
  EXPECT_EQ(insert["HasResultSet"], false);
  EXPECT_EQ(insert["ResultRows"], 3);
  EXPECT_EQ(insert["ResultSize"], 0);
  const Error no_result = call_error("GetStatementResult", Json{{"Id", insert["Id"]}});
  EXPECT_EQ(no_result.name(), "ResourceNotFoundException");
  EXPECT_EQ(no_result.http_status(), 400);
  EXPECT_EQ(no_result.message(),
            "Query does not have result. Please check query status with DescribeStatement.");
}

TEST_F(DataApiTest, PagesThroughFiveThousandRows) {
  const Json described = run("select g as n, 'row ' || g as label from generate_series(1, 5000) g");
  ASSERT_EQ(described["Status"], "FINISHED");
  EXPECT_EQ(described["ResultRows"], 5000);
  std::vector<std::int64_t> seen;
  std::string token;
  int pages = 0;
  do {
    const Json page = result(described["Id"], token);
    EXPECT_EQ(page["TotalNumRows"], 5000);
    EXPECT_EQ(page["ColumnMetadata"].size(), 2U);
    for (const Json& record : page["Records"]) seen.push_back(record[0]["longValue"]);
    token = page.value("NextToken", "");
    ++pages;
  } while (!token.empty() && pages < 100);
  EXPECT_EQ(pages, 5);
  ASSERT_EQ(seen.size(), 5000U);
  for (std::size_t i = 0; i < seen.size(); ++i)
    ASSERT_EQ(seen[i], static_cast<std::int64_t>(i + 1));

  const Error bad =
      call_error("GetStatementResult", Json{{"Id", described["Id"]}, {"NextToken", "not-a-token"}});
  EXPECT_EQ(bad.name(), "ValidationException");
  EXPECT_EQ(bad.http_status(), 400);
  // A token of another statement is refused too.
  const Json other = run("select g from generate_series(1, 1500) g");
  const std::string other_token = result(other["Id"])["NextToken"];
  EXPECT_EQ(
      call_error("GetStatementResult", Json{{"Id", described["Id"]}, {"NextToken", other_token}})
          .name(),
      "ValidationException");
}

TEST_F(DataApiTest, FailedStatementCarriesPostgresErrorText) {
  const Json described = run("select * from nope");
  EXPECT_EQ(described["Status"], "FAILED");
  EXPECT_EQ(described["Error"], "ERROR: relation \"nope\" does not exist\n  Position: 15");
  EXPECT_EQ(described["ResultRows"], -1);
  EXPECT_GE(described["Duration"].get<std::int64_t>(), 0);
  EXPECT_EQ(call_error("GetStatementResult", Json{{"Id", described["Id"]}}).name(),
            "ResourceNotFoundException");

  const Json hinted = run("select round(1, 2, 3)");
  EXPECT_THAT(hinted["Error"].get<std::string>(),
              AllOf(StartsWith("ERROR: function round(integer, integer, integer) does not exist"),
                    HasSubstr("\n  Hint: No function matches")));

  const Json no_database = run("select 1", Json{{"Database", "no_such_db"}});
  EXPECT_EQ(no_database["Status"], "FAILED");
  EXPECT_EQ(no_database["Error"], "FATAL: database \"no_such_db\" does not exist");
}

TEST_F(DataApiTest, CancelAbortsARunningQueryQuickly) {
  const auto started = std::chrono::steady_clock::now();
  const std::string id = execute("select pg_sleep(30)")["Id"];
  const Json running = wait_for_status(id, "STARTED");
  ASSERT_EQ(running["Status"], "STARTED");
  EXPECT_GT(running["RedshiftPid"].get<std::int64_t>(), 0);
  EXPECT_EQ(api().handle("CancelStatement", Json{{"Id", id}}, kCaller), Json({{"Status", true}}));
  api().wait_idle();
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(10));
  const Json described = describe(id);
  EXPECT_EQ(described["Status"], "ABORTED");

  const Error again = call_error("CancelStatement", Json{{"Id", id}});
  EXPECT_EQ(again.name(), "ValidationException");
  EXPECT_EQ(again.http_status(), 400);
  EXPECT_EQ(again.message(),
            "Could not cancel a query that is already in ABORTED state with ID: " + id);

  const std::string done = run("select 1")["Id"];
  EXPECT_EQ(call_error("CancelStatement", Json{{"Id", done}}).message(),
            "Could not cancel a query that is already in FINISHED state with ID: " + done);
  const Error unknown =
      call_error("CancelStatement", Json{{"Id", "00000000-0000-4000-8000-000000000000"}});
  EXPECT_EQ(unknown.name(), "ResourceNotFoundException");
  EXPECT_EQ(unknown.message(), "Query does not exist.");
}

TEST_F(DataApiTest, BatchRunsInOneTransaction) {
  server_->psql("create table batch_target (n int)");
  const Json ok = api().handle(
      "BatchExecuteStatement",
      Json{{"ClusterIdentifier", "local-cluster"},
           {"Database", "postgres"},
           {"Sqls", {"insert into batch_target values (1)", "select n from batch_target"}}},
      kCaller);
  api().wait_idle();
  const std::string ok_id = ok["Id"];
  const Json finished = describe(ok_id);
  EXPECT_EQ(finished["Status"], "FINISHED");
  EXPECT_EQ(finished["HasResultSet"], true);
  ASSERT_EQ(finished["SubStatements"].size(), 2U);
  EXPECT_EQ(finished["SubStatements"][0]["Id"], ok_id + ":1");
  EXPECT_EQ(finished["SubStatements"][0]["Status"], "FINISHED");
  EXPECT_EQ(finished["SubStatements"][0]["ResultRows"], 1);
  EXPECT_EQ(finished["SubStatements"][1]["HasResultSet"], true);
  EXPECT_EQ(result(ok_id + ":2")["Records"][0][0]["longValue"], 1);
  EXPECT_EQ(describe(ok_id + ":2")["Status"], "FINISHED");
  const Error parent_result = call_error("GetStatementResult", Json{{"Id", ok_id}});
  EXPECT_EQ(parent_result.name(), "ValidationException");
  EXPECT_EQ(parent_result.message(),
            "BatchExecuteStatement result can only be retrieved with sub-statement id.");
  EXPECT_EQ(call_error("DescribeStatement", Json{{"Id", ok_id + ":3"}}).name(),
            "ResourceNotFoundException");

  // A failing second statement rolls back the first; the third never runs.
  const std::string failed_id =
      api().handle("BatchExecuteStatement",
                   Json{{"ClusterIdentifier", "local-cluster"},
                        {"Database", "postgres"},
                        {"Sqls",
                         {"insert into batch_target values (2)", "insert into nope values (3)",
                          "insert into batch_target values (4)"}}},
                   kCaller)["Id"];
  api().wait_idle();
  const Json failed = describe(failed_id);
  EXPECT_EQ(failed["Status"], "FAILED");
  EXPECT_THAT(failed["Error"].get<std::string>(),
              StartsWith("ERROR: relation \"nope\" does not exist"));
  EXPECT_EQ(failed["SubStatements"][0]["Status"], "FINISHED");
  EXPECT_EQ(failed["SubStatements"][1]["Status"], "FAILED");
  EXPECT_EQ(failed["SubStatements"][1]["Error"], failed["Error"]);
  EXPECT_EQ(failed["SubStatements"][2]["Status"], "ABORTED");
  EXPECT_EQ(server_->psql("select string_agg(n::text, ',' order by n) from batch_target"), "1\n");

  const Json listed = api().handle("ListStatements", Json{{"Status", "ALL"}}, kCaller);
  ASSERT_FALSE(listed["Statements"].empty());
  const Json& newest = listed["Statements"][0];
  EXPECT_EQ(newest["Id"], failed_id);
  EXPECT_EQ(newest["IsBatchStatement"], true);
  EXPECT_EQ(newest["QueryStrings"].size(), 3U);
  EXPECT_FALSE(newest.contains("QueryString"));
}

TEST_F(DataApiTest, NamedParametersBindAsText) {
  const Json described =
      run("select :id::int + 1 as next, ':notaparam' as literal, :name as name, :id as again",
          Json{{"Parameters",
                {{{"name", "id"}, {"value", "41"}}, {{"name", "name"}, {"value", "bob"}}}}});
  ASSERT_EQ(described["Status"], "FINISHED") << described.dump();
  EXPECT_EQ(described["QueryParameters"][0], Json({{"name", "id"}, {"value", "41"}}));
  const Json row = result(described["Id"])["Records"][0];
  EXPECT_EQ(row[0], Json({{"longValue", 42}}));
  EXPECT_EQ(row[1], Json({{"stringValue", ":notaparam"}}));
  EXPECT_EQ(row[2], Json({{"stringValue", "bob"}}));
  // One name is one placeholder with one type: PostgreSQL infers it from the `::int` use.
  EXPECT_EQ(row[3], Json({{"longValue", 41}}));

  // A parameter the SQL uses but the request lacks is refused before anything runs.
  const Error missing = error_of([&] {
    execute("select :a, :b", Json{{"Parameters", {{{"name", "a"}, {"value", "1"}}}}});
  });
  EXPECT_EQ(missing.name(), "ValidationException");
  EXPECT_THAT(missing.message(), HasSubstr(":b"));
  // Values are data, never SQL.
  const Json injected = run(
      "select :v as v", Json{{"Parameters", {{{"name", "v"}, {"value", "1'; drop table x; --"}}}}});
  EXPECT_EQ(result(injected["Id"])["Records"][0][0],
            Json({{"stringValue", "1'; drop table x; --"}}));
}

TEST_F(DataApiTest, RedshiftUserSyntaxIsRewritten) {
  const Json created =
      run("CREATE USER rewritten_user PASSWORD 'md5c4ca4238a0b923820dcc509a6f75849b' CREATEUSER "
          "SYSLOG ACCESS UNRESTRICTED CONNECTION LIMIT UNLIMITED SESSION TIMEOUT 600");
  ASSERT_EQ(created["Status"], "FINISHED") << created.value("Error", "");
  EXPECT_EQ(server_->psql("select rolsuper, rolconnlimit from pg_roles where rolname = "
                          "'rewritten_user'"),
            "t|-1\n");
  EXPECT_EQ(run("ALTER USER rewritten_user NOCREATEUSER RESET SESSION TIMEOUT")["Status"],
            "FINISHED");
  EXPECT_EQ(server_->psql("select rolsuper from pg_roles where rolname = 'rewritten_user'"), "f\n");
  const Json now = run("select getdate() <= now() as ok");
  EXPECT_EQ(result(now["Id"])["Records"][0][0], Json({{"booleanValue", true}}));
  // Redshift-only syntax outside the list fails as PostgreSQL fails.
  const Json unsupported = run("select * from svv_table_info");
  EXPECT_EQ(unsupported["Status"], "FAILED");
  EXPECT_THAT(unsupported["Error"].get<std::string>(), HasSubstr("svv_table_info"));
}

TEST_F(DataApiTest, ListStatementsFiltersByPrefixStatusAndCaller) {
  run("select 1", Json{{"StatementName", "list-a-1"}});
  run("select * from nope", Json{{"StatementName", "list-a-2"}});
  run("select 3", Json{{"StatementName", "list-b-1"}});
  run("select 4", Json{{"StatementName", "LIST-a-3"}});

  const auto list = [&](Json request, const std::string& caller = kCaller) {
    return api().handle("ListStatements", request, caller);
  };
  const Json all_a = list(Json{{"StatementName", "list-a"}, {"Status", "ALL"}});
  ASSERT_EQ(all_a["Statements"].size(), 2U);
  EXPECT_EQ(all_a["Statements"][0]["StatementName"], "list-a-2");  // newest first
  EXPECT_EQ(all_a["Statements"][0]["Status"], "FAILED");
  EXPECT_EQ(all_a["Statements"][0]["QueryString"], "select * from nope");
  EXPECT_EQ(all_a["Statements"][0]["IsBatchStatement"], false);
  EXPECT_EQ(all_a["Statements"][1]["StatementName"], "list-a-1");
  EXPECT_FALSE(all_a.contains("NextToken"));

  const Json failed = list(Json{{"StatementName", "list-"}, {"Status", "FAILED"}});
  ASSERT_EQ(failed["Statements"].size(), 1U);
  EXPECT_EQ(failed["Statements"][0]["StatementName"], "list-a-2");
  // Without Status only FINISHED statements are listed, as the API reference says.
  EXPECT_EQ(list(Json{{"StatementName", "list-"}})["Statements"].size(), 2U);

  // Paging, one at a time, newest first, no repeats.
  std::vector<std::string> names;
  std::string token;
  do {
    Json request{{"StatementName", "list-"}, {"Status", "ALL"}, {"MaxResults", 1}};
    if (!token.empty()) request["NextToken"] = token;
    const Json page = list(request);
    for (const Json& statement : page["Statements"]) names.push_back(statement["StatementName"]);
    token = page.value("NextToken", "");
  } while (!token.empty() && names.size() < 10);
  EXPECT_THAT(names, ElementsAre("list-b-1", "list-a-2", "list-a-1"));

  // Another principal sees none of them; another session of the same role does.
  EXPECT_TRUE(list(Json{{"StatementName", "list-"}, {"Status", "ALL"}}, kOtherCaller)["Statements"]
                  .empty());
  const std::string same_role = "arn:aws:sts::123456789012:assumed-role/tasker/session-2";
  EXPECT_EQ(
      list(Json{{"StatementName", "list-"}, {"Status", "ALL"}}, same_role)["Statements"].size(),
      3U);
  EXPECT_TRUE(list(Json{{"StatementName", "list-"}, {"Status", "ALL"}, {"RoleLevel", false}},
                   same_role)["Statements"]
                  .empty());

  EXPECT_EQ(call_error("ListStatements", Json{{"MaxResults", 101}}).name(), "ValidationException");
  EXPECT_EQ(call_error("ListStatements", Json{{"Status", "DONE"}}).name(), "ValidationException");
  EXPECT_EQ(call_error("ListStatements", Json{{"NextToken", "garbage"}}).name(),
            "ValidationException");
}

TEST_F(DataApiTest, ClientTokenMakesExecuteIdempotent) {
  server_->psql("create table idempotent (n int)");
  const Json token{{"ClientToken", "retry-token-1"}};
  const Json first = execute("insert into idempotent values (1)", token);
  const Json second = execute("insert into idempotent values (1)", token);
  EXPECT_EQ(first, second);
  api().wait_idle();
  EXPECT_EQ(server_->psql("select count(*) from idempotent"), "1\n");
  // The token is the caller's own: another principal's same token is another statement.
  Json request = execute_request("insert into idempotent values (1)");
  request["ClientToken"] = "retry-token-1";
  const Json other = api().handle("ExecuteStatement", request, kOtherCaller);
  EXPECT_NE(other["Id"], first["Id"]);
  api().wait_idle();
  EXPECT_EQ(server_->psql("select count(*) from idempotent"), "2\n");
}

TEST_F(DataApiTest, WithEventPublishesOneEventPerStatement) {
  const auto before = std::chrono::duration_cast<std::chrono::seconds>(
                          std::chrono::system_clock::now().time_since_epoch())
                          .count();
  const std::string finished_id =
      execute("select g from generate_series(1, 3) g",
              Json{{"WithEvent", true}, {"StatementName", "exec-1:inv-1"}})["Id"];
  const std::string failed_id = execute(
      "select * from nope", Json{{"WithEvent", true}, {"StatementName", "exec-1:inv-2"}})["Id"];
  execute("select 1", Json{{"StatementName", "no-event"}});
  Json serverless = execute_request("select 1");
  serverless.erase("ClusterIdentifier");
  serverless.erase("DbUser");
  serverless["WorkgroupName"] = "local-wg";
  serverless["WithEvent"] = true;
  const std::string serverless_id = api().handle("ExecuteStatement", serverless, kCaller)["Id"];

  const auto events = events_.wait_for(3);
  api().wait_idle();
  ASSERT_EQ(events_.events().size(), 3U);
  std::map<std::string, Json> details;
  std::map<std::string, std::vector<std::string>> resources;
  for (const auto& event : events) {
    EXPECT_EQ(event.source, "aws.redshift-data");
    EXPECT_EQ(event.detail_type, "Redshift Data Statement Status Change");
    EXPECT_TRUE(event.event_bus_name.empty());
    const Json detail = Json::parse(event.detail);
    details[detail["statementId"]] = detail;
    resources[detail["statementId"]] = event.resources;
  }
  ASSERT_EQ(details.size(), 3U);
  const Json& finished = details.at(finished_id);
  EXPECT_EQ(finished["principal"], kCaller);
  EXPECT_EQ(finished["statementName"], "exec-1:inv-1");
  EXPECT_EQ(finished["state"], "FINISHED");
  EXPECT_EQ(finished["rows"], 3);
  EXPECT_GT(finished["redshiftQueryId"].get<std::int64_t>(), 0);
  EXPECT_NEAR(finished["expireAt"].get<double>(), static_cast<double>(before + 86400), 60.0);
  EXPECT_THAT(resources.at(finished_id),
              ElementsAre("arn:aws:redshift:us-east-1:123456789012:cluster:local-cluster"));
  EXPECT_EQ(details.at(failed_id)["state"], "FAILED");
  EXPECT_EQ(details.at(failed_id)["statementName"], "exec-1:inv-2");
  EXPECT_THAT(resources.at(serverless_id).at(0),
              ::testing::MatchesRegex("arn:aws:redshift-serverless:us-east-1:123456789012:"
                                      "workgroup/[0-9a-f-]{36}"));
}

TEST_F(DataApiTest, PublishFailureDoesNotChangeTheStatement) {
  DataApiOptions failing = options();
  failing.publish = [](const services::EventEntry&) { throw std::runtime_error("bus down"); };
  DataApi local(failing);
  const std::string id = local.handle(
      "ExecuteStatement",
      [] {
        Json request = execute_request("select 1");
        request["WithEvent"] = true;
        return request;
      }(),
      kCaller)["Id"];
  local.wait_idle();
  EXPECT_EQ(local.handle("DescribeStatement", Json{{"Id", id}}, kCaller)["Status"], "FINISHED");
}

TEST_F(DataApiTest, ValidationErrorsNameTheProblem) {
  struct Case {
    std::string operation;
    Json request;
    std::string message_part;
  };
  const Json base = execute_request("select 1");
  auto with = [&](const Json& changes) {
    Json request = base;
    for (const auto& [key, value] : changes.items()) {
      if (value.is_null()) {
        request.erase(key);
      } else {
        request[key] = value;
      }
    }
    return request;
  };
  const std::vector<Case> cases = {
      {"ExecuteStatement", with({{"Sql", nullptr}}),
       "Value null at 'sql' failed to satisfy constraint: Member must not be null"},
      {"ExecuteStatement", with({{"Sql", ""}}),
       "Member must have length greater than or equal to 1"},
      {"ExecuteStatement", with({{"Sql", std::string(100001, 'x')}}),
       "Member must have length less than or equal to 100000"},
      {"ExecuteStatement", with({{"Sql", 5}}), "Sql"},
      {"ExecuteStatement", with({{"WithEvent", "yes"}}), "WithEvent"},
      {"ExecuteStatement", with({{"WorkgroupName", "wg-1"}}), "cannot both be specified"},
      {"ExecuteStatement", with({{"ClusterIdentifier", nullptr}}),
       "Either ClusterIdentifier or WorkgroupName"},
      {"ExecuteStatement", with({{"Database", nullptr}}), "'database'"},
      {"ExecuteStatement", with({{"ClusterIdentifier", "Bad_Cluster"}}), "'clusterIdentifier'"},
      {"ExecuteStatement",
       with({{"SecretArn", "arn:aws:secretsmanager:us-east-1:123456789012:secret:x"}}),
       "DbUser and SecretArn"},
      {"ExecuteStatement", with({{"StatementName", std::string(501, 'n')}}), "'statementName'"},
      {"ExecuteStatement", with({{"ClientToken", ""}}), "'clientToken'"},
      {"ExecuteStatement", with({{"ClientToken", std::string(65, 't')}}), "'clientToken'"},
      {"ExecuteStatement", with({{"Parameters", Json::array()}}), "'parameters'"},
      {"ExecuteStatement", with({{"Parameters", {{{"name", "a-b"}, {"value", "1"}}}}}),
       "'parameters.1.member.name'"},
      {"ExecuteStatement", with({{"Parameters", {{{"name", "a"}, {"value", ""}}}}}),
       "'parameters.1.member.value'"},
      {"ExecuteStatement", with({{"Parameters", {{{"name", "a"}}}}}), "'value'"},
      {"ExecuteStatement",
       with({{"Parameters", {{{"name", "a"}, {"value", "1"}}, {{"name", "a"}, {"value", "2"}}}}}),
       "more than once"},
      {"ExecuteStatement", with({{"SessionKeepAliveSeconds", 60}}), "not supported"},
      {"BatchExecuteStatement", with({{"Sql", nullptr}, {"Sqls", Json::array()}}), "'sqls'"},
      {"BatchExecuteStatement",
       with({{"Sql", nullptr}, {"Sqls", std::vector<std::string>(41, "select 1")}}),
       "less than or equal to 40"},
      {"BatchExecuteStatement", with({{"Sql", nullptr}, {"Sqls", {"select 1", ""}}}),
       "'sqls.2.member'"},
      {"DescribeStatement", Json::object(), "Value null at 'id'"},
      {"DescribeStatement", Json{{"Id", "not-an-id"}}, "id must satisfy regex pattern: "},
      {"GetStatementResult", Json{{"Id", "ABCDEFGH-0000-4000-8000-000000000000"}},
       "id must satisfy regex pattern"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.operation + " " + c.request.dump().substr(0, 200));
    const Error error = call_error(c.operation, c.request);
    EXPECT_EQ(error.name(), "ValidationException");
    EXPECT_EQ(error.http_status(), 400);
    EXPECT_THAT(error.message(), HasSubstr(c.message_part));
  }

  const Error unknown =
      call_error("DescribeStatement", Json{{"Id", "00000000-0000-4000-8000-000000000000"}});
  EXPECT_EQ(unknown.name(), "ResourceNotFoundException");
  EXPECT_EQ(unknown.http_status(), 400);
  EXPECT_EQ(unknown.message(), "Query does not exist.");
  EXPECT_EQ(call_error("DescribeTable", Json::object()).name(), "UnknownOperationException");
  EXPECT_EQ(call_error("RedshiftData.DescribeStatement", Json{{"Id", "x"}}).name(),
            "ValidationException");
  EXPECT_EQ(call_error("ExecuteStatement", Json::array()).name(), "ValidationException");
  api().wait_idle();
}

TEST_F(DataApiTest, ActiveStatementsAreLimited) {
  DataApiOptions limited = options();
  limited.max_active = 1;
  DataApi local(limited);
  const std::string sleeping =
      local.handle("ExecuteStatement", execute_request("select pg_sleep(30)"), kCaller)["Id"];
  const Error refused =
      error_of([&] { local.handle("ExecuteStatement", execute_request("select 1"), kCaller); });
  EXPECT_EQ(refused.name(), "ActiveStatementsExceededException");
  EXPECT_EQ(refused.http_status(), 400);
  local.handle("CancelStatement", Json{{"Id", sleeping}}, kCaller);
  local.wait_idle();
  EXPECT_EQ(local.handle("DescribeStatement", Json{{"Id", sleeping}}, kCaller)["Status"],
            "ABORTED");
  const std::string next =
      local.handle("ExecuteStatement", execute_request("select 1"), kCaller)["Id"];
  local.wait_idle();
  EXPECT_EQ(local.handle("DescribeStatement", Json{{"Id", next}}, kCaller)["Status"], "FINISHED");
}

TEST_F(DataApiTest, ConcurrentCallsFromManyThreads) {
  DataApiOptions wide = options();
  wide.max_active = 64;
  DataApi local(wide);
  constexpr int kThreads = 6;
  constexpr int kPerThread = 8;
  std::vector<std::vector<std::string>> ids(kThreads);
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      for (int i = 0; i < kPerThread; ++i) {
        const int value = t * 100 + i;
        Json request = execute_request("select " + std::to_string(value) + " as v");
        request["StatementName"] = "concurrent-" + std::to_string(t);
        const std::string id = local.handle("ExecuteStatement", request, kCaller)["Id"];
        ids[t].push_back(id);
        local.handle("DescribeStatement", Json{{"Id", id}}, kCaller);
        local.handle("ListStatements", Json{{"StatementName", "concurrent-"}, {"Status", "ALL"}},
                     kCaller);
      }
    });
  }
  for (std::thread& thread : threads) thread.join();
  local.wait_idle();
  std::set<std::string> unique;
  for (int t = 0; t < kThreads; ++t) {
    for (int i = 0; i < kPerThread; ++i) {
      const std::string& id = ids[t][i];
      unique.insert(id);
      const Json page = local.handle("GetStatementResult", Json{{"Id", id}}, kCaller);
      EXPECT_EQ(page["Records"][0][0]["longValue"], t * 100 + i);
    }
  }
  EXPECT_EQ(unique.size(), static_cast<std::size_t>(kThreads * kPerThread));
}

TEST_F(DataApiTest, DestructionAbortsRunningStatementsAndPublishesTheirEvents) {
  EventSink sink;
  DataApiOptions opts = options();
  opts.publish = sink.callback();
  const auto started = std::chrono::steady_clock::now();
  {
    DataApi local(opts);
    Json request = execute_request("select pg_sleep(30)");
    request["WithEvent"] = true;
    const std::string id = local.handle("ExecuteStatement", request, kCaller)["Id"];
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    while (local.handle("DescribeStatement", Json{{"Id", id}}, kCaller)["Status"] != "STARTED" &&
           std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }
  EXPECT_LT(std::chrono::steady_clock::now() - started, std::chrono::seconds(10));
  const auto events = sink.events();
  ASSERT_EQ(events.size(), 1U);
  EXPECT_EQ(Json::parse(events[0].detail)["state"], "ABORTED");
}

}  // namespace
}  // namespace rstasker::local
