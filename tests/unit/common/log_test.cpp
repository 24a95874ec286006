// Redaction at the logging boundary and the Lambda JSON line shape.
#include "rstasker/common/log.hpp"

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <sstream>
#include <thread>
#include <vector>

#include "rstasker/common/json.hpp"

namespace rstasker::log {
namespace {

bool contains(const std::string& text, std::string_view part) {
  return text.find(part) != std::string::npos;
}

TEST(Redact, JsonMembers) {
  std::string out = redact(R"({"taskToken":"AAAAKgAAAAIAAAAA+secret=","sqlStatement":"select 1"})");
  EXPECT_FALSE(contains(out, "AAAAKg")) << out;
  EXPECT_TRUE(contains(out, "select 1")) << out;
  EXPECT_TRUE(contains(out, "<redacted>")) << out;
}

TEST(Redact, EscapedJsonInsideAString) {
  std::string out = redact(R"(body: {\"taskToken\":\"AAAAsecretsecret\",\"x\":1})");
  EXPECT_FALSE(contains(out, "AAAAsecretsecret")) << out;
  EXPECT_TRUE(contains(out, "\\\"x\\\":1")) << out;
}

TEST(Redact, PresignedUrlQueryParameters) {
  std::string out = redact(
      "PUT "
      "https://bucket.s3.amazonaws.com/x?X-Amz-Credential=AKIA%2F2026&X-Amz-Signature=abcdef0123"
      "&X-Amz-Security-Token=FQoGZXIvYXdzEKr failed");
  EXPECT_FALSE(contains(out, "abcdef0123")) << out;
  EXPECT_FALSE(contains(out, "FQoGZXIvYXdzEKr")) << out;
  EXPECT_FALSE(contains(out, "AKIA%2F2026")) << out;
  EXPECT_TRUE(contains(out, "failed")) << out;
}

TEST(Redact, ResponseUrlMember) {
  std::string out = redact(R"({"ResponseURL": "https://s3/x?sig=1", "StackId": "arn:stack"})");
  EXPECT_FALSE(contains(out, "https://s3/x")) << out;
  EXPECT_TRUE(contains(out, "arn:stack")) << out;
}

TEST(Redact, AuthorizationHeaderToEndOfLine) {
  std::string out = redact(
      "Authorization: AWS4-HMAC-SHA256 Credential=AKID/20260101/us-east-1/sts/aws4_request, "
      "SignedHeaders=host, Signature=deadbeef\nnext line");
  EXPECT_FALSE(contains(out, "deadbeef")) << out;
  EXPECT_FALSE(contains(out, "AKID/")) << out;
  EXPECT_TRUE(contains(out, "next line")) << out;
}

TEST(Redact, SqlPasswordClauses) {
  std::string out =
      redact("CREATE USER etl PASSWORD 'md5a1b2c3d4e5f60718293a4b5c6d7e8f90' NOCREATEDB");
  EXPECT_FALSE(contains(out, "md5a1b2")) << out;
  EXPECT_TRUE(contains(out, "NOCREATEDB")) << out;
  EXPECT_TRUE(contains(out, "CREATE USER etl")) << out;
}

TEST(Redact, LeavesProseAlone) {
  EXPECT_EQ(redact("password is required"), "password is required");
  EXPECT_EQ(redact("no secrets here: select 1"), "no secrets here: select 1");
}

TEST(Redact, RegisteredSecretsAnywhere) {
  add_secret("wJalrXUtnFEMI/K7MDENG");
  EXPECT_EQ(redact("key wJalrXUtnFEMI/K7MDENG in prose"), "key <redacted> in prose");
  forget_secret("wJalrXUtnFEMI/K7MDENG");
  EXPECT_EQ(redact("key wJalrXUtnFEMI/K7MDENG"), "key wJalrXUtnFEMI/K7MDENG");
  {
    ScopedSecret guard("token-in-flight-123");
    EXPECT_EQ(redact("token-in-flight-123"), "<redacted>");
  }
  EXPECT_EQ(redact("token-in-flight-123"), "token-in-flight-123");
  add_secret("short");  // too short to register
  EXPECT_EQ(redact("short"), "short");
}

// Captures what the installed logger writes to stderr.
std::string capture_stderr(const std::function<void()>& body) {
  std::fflush(stderr);
  char path[] = "/tmp/rstasker-log-XXXXXX";
  int fd = mkstemp(path);
  int saved = dup(2);
  dup2(fd, 2);
  body();
  spdlog::default_logger()->flush();
  std::fflush(stderr);
  dup2(saved, 2);
  close(saved);
  close(fd);
  std::ifstream in(path);
  std::stringstream text;
  text << in.rdbuf();
  std::remove(path);
  return text.str();
}

TEST(Logger, WritesLambdaJsonLinesWithRequestIdAndRedaction) {
  init(Settings{spdlog::level::info, Format::kJson});
  set_request_id("req-123");
  std::string out = capture_stderr([] {
    spdlog::info("calling back {{\"taskToken\":\"{}\"}}", "AAAAsecrettoken");
    spdlog::debug("below the level");
  });
  set_request_id("");
  std::istringstream lines(out);
  std::string line;
  ASSERT_TRUE(std::getline(lines, line)) << out;
  Json json = Json::parse(line);
  EXPECT_EQ(json["level"], "INFO");
  EXPECT_EQ(json["requestId"], "req-123");
  EXPECT_TRUE(json["timestamp"].get<std::string>().ends_with("Z"));
  EXPECT_FALSE(contains(json["message"].get<std::string>(), "AAAAsecrettoken"));
  EXPECT_FALSE(std::getline(lines, line)) << "debug line was printed: " << line;
}

TEST(Logger, TextFormat) {
  init(Settings{spdlog::level::debug, Format::kText});
  std::string out = capture_stderr([] { spdlog::debug("hello {}", 42); });
  EXPECT_TRUE(contains(out, "DEBUG - hello 42")) << out;
  init(Settings{});
}

TEST(Logger, StructuredFieldsAreMembersOfTheirOwnRedactedAndScoped) {
  init(Settings{spdlog::level::info, Format::kJson});
  set_invocation_field("action", "executeStatement");
  set_invocation_field("coldStart", true);
  set_invocation_field("message", "must not replace the message");
  std::string out = capture_stderr([] {
    {
      ScopedFields fields{{"statementName", "arn:exec:1"},
                          {"statementId", ""},
                          {"waiter", "StepFunctions"},
                          {"errorType", "taskToken=AAAAsecrettoken1"}};
      ScopedFields inner{{"action", "completionBatch"}};
      spdlog::info("inside");
    }
    spdlog::info("outside");
    std::thread([] { spdlog::info("other thread"); }).join();
  });
  clear_invocation_fields();
  std::istringstream lines(out);
  std::vector<Json> json;
  for (std::string line; std::getline(lines, line);) json.push_back(Json::parse(line));
  ASSERT_EQ(json.size(), 3u) << out;
  EXPECT_EQ(json[0]["message"], "inside");
  EXPECT_EQ(json[0]["action"], "completionBatch") << "the scoped field overrides";
  EXPECT_EQ(json[0]["coldStart"], true);
  EXPECT_EQ(json[0]["statementName"], "arn:exec:1");
  EXPECT_EQ(json[0]["waiter"], "StepFunctions");
  EXPECT_FALSE(json[0].contains("statementId")) << "empty values are left out";
  EXPECT_FALSE(contains(json[0]["errorType"].get<std::string>(), "AAAAsecrettoken1"));
  EXPECT_EQ(json[1]["action"], "executeStatement");
  EXPECT_FALSE(json[1].contains("statementName")) << "the scope ended";
  EXPECT_EQ(json[2]["action"], "executeStatement") << "invocation fields hold on every thread";
  EXPECT_FALSE(json[2].contains("statementName"));

  std::string after = capture_stderr([] { spdlog::info("between invocations"); });
  EXPECT_FALSE(Json::parse(after).contains("action")) << after;
}

TEST(Logger, TextFormatLeavesStructuredFieldsOut) {
  init(Settings{spdlog::level::info, Format::kText});
  set_invocation_field("action", "reconcile");
  std::string out = capture_stderr([] {
    ScopedFields fields{{"statementName", "arn:exec:2"}};
    spdlog::info("plain");
  });
  clear_invocation_fields();
  init(Settings{});
  EXPECT_TRUE(contains(out, "INFO - plain")) << out;
  EXPECT_FALSE(contains(out, "reconcile")) << out;
  EXPECT_FALSE(contains(out, "arn:exec:2")) << out;
}

TEST(Settings, LambdaLevelWinsOverLogLevelAndBadValuesAreReported) {
  setenv("AWS_LAMBDA_LOG_LEVEL", "debug", 1);
  setenv("LOG_LEVEL", "ERROR", 1);
  EXPECT_EQ(settings_from_environment().level, spdlog::level::debug);
  unsetenv("AWS_LAMBDA_LOG_LEVEL");
  EXPECT_EQ(settings_from_environment().level, spdlog::level::err);
  setenv("LOG_LEVEL", "WARNING", 1);
  EXPECT_EQ(settings_from_environment().level, spdlog::level::warn);
  setenv("LOG_LEVEL", "loud", 1);
  std::string problems;
  EXPECT_EQ(settings_from_environment(&problems).level, spdlog::level::info);
  EXPECT_TRUE(contains(problems, "LOG_LEVEL=loud")) << problems;
  unsetenv("LOG_LEVEL");
  setenv("AWS_LAMBDA_LOG_FORMAT", "Text", 1);
  EXPECT_EQ(settings_from_environment().format, Format::kText);
  unsetenv("AWS_LAMBDA_LOG_FORMAT");
}

}  // namespace
}  // namespace rstasker::log
