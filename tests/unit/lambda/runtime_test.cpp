// The runtime loop against the fake Runtime API: what it posts for each kind of handler outcome,
// and how it behaves when the API misbehaves or goes away.
#include "rstasker/lambda/runtime.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/spdlog.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <mutex>
#include <sstream>
#include <thread>

#include "rstasker/common/error.hpp"
#include "rstasker/common/json.hpp"
#include "rstasker/common/log.hpp"
#include "rstasker/version.hpp"
#include "support/emf.hpp"
#include "support/paths.hpp"
#include "support/process.hpp"
#include "support/runtime_api_server.hpp"

namespace rstasker::lambda {
namespace {

using rstasker::testing::FakeInvocation;
using rstasker::testing::PostedOutcome;
using rstasker::testing::RuntimeApiServer;
using ::testing::HasSubstr;
using ::testing::Not;

// The transport the binary uses for the Runtime API.
std::shared_ptr<aws::HttpTransport> long_poll_transport() {
  return aws::make_plain_http_transport();
}

FakeInvocation invocation(std::string request_id, std::string payload = "{}") {
  FakeInvocation fake;
  fake.request_id = std::move(request_id);
  fake.payload = std::move(payload);
  return fake;
}

// What a handler saw, copied out of the loop's thread.
struct Seen {
  Invocation invocation;
  std::optional<std::string> trace_env;  // _X_AMZN_TRACE_ID during the handler
};

class RuntimeTest : public ::testing::Test {
 protected:
  void SetUp() override {
    unsetenv("_X_AMZN_TRACE_ID");
    previous_logger_ = spdlog::default_logger();
    log_ = std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(1000);
    log_->set_pattern("%l %v");
    spdlog::set_default_logger(std::make_shared<spdlog::logger>("runtime_test", log_));
  }

  void TearDown() override {
    stop_runtime();
    spdlog::set_default_logger(previous_logger_);
    unsetenv("_X_AMZN_TRACE_ID");
  }

  // Runs the loop on its own thread; `respond` computes the response of each invocation.
  void start(std::function<std::string(const Invocation&)> respond) {
    runtime_ = std::thread([this, respond = std::move(respond)] {
      exit_code_ = run(client_, [&](const Invocation& invocation) {
        {
          std::lock_guard lock(mutex_);
          const char* trace = std::getenv("_X_AMZN_TRACE_ID");
          seen_.push_back({invocation, trace ? std::optional<std::string>(trace) : std::nullopt});
        }
        return respond(invocation);
      });
    });
  }

  // Makes the Runtime API go away and waits for the loop to end; returns its exit code.
  int stop_runtime() {
    server_.stop();
    if (runtime_.joinable()) runtime_.join();
    return exit_code_;
  }

  std::vector<Seen> seen() {
    std::lock_guard lock(mutex_);
    return seen_;
  }

  std::string log_text() {
    std::string text;
    for (const std::string& line : log_->last_formatted()) text += line;
    return text;
  }

  // The outcome of `request_id`, failing the test when none arrives.
  PostedOutcome outcome_of(const std::string& request_id) {
    auto outcome = server_.wait_for_outcome(request_id);
    if (!outcome) {
      ADD_FAILURE() << "no outcome posted for " << request_id;
      return {};
    }
    return *outcome;
  }

  static Json parse(const std::string& body) { return Json::parse(body); }

  RuntimeApiServer server_;
  RuntimeClient client_{server_.address(), long_poll_transport()};

 private:
  std::shared_ptr<spdlog::logger> previous_logger_;
  std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> log_;
  std::thread runtime_;
  int exit_code_ = -1;
  std::mutex mutex_;
  std::vector<Seen> seen_;
};

TEST_F(RuntimeTest, PostsTheResponseAndPassesTheInvocationDetails) {
  std::int64_t deadline = now_epoch_ms() + 120'000;
  FakeInvocation fake = invocation("req-1", R"({"action":"describeStatement"})");
  fake.deadline_epoch_ms = deadline;
  fake.function_arn = "arn:aws:lambda:eu-west-1:111122223333:function:tasker";
  fake.trace_id = "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1";
  server_.enqueue(fake);
  start([](const Invocation& invocation) { return "echo:" + invocation.payload; });

  PostedOutcome outcome = outcome_of("req-1");
  EXPECT_EQ(outcome.kind, PostedOutcome::Kind::kResponse);
  EXPECT_EQ(outcome.body, R"(echo:{"action":"describeStatement"})");
  EXPECT_EQ(outcome.error_type, "");

  auto seen = this->seen();
  ASSERT_EQ(seen.size(), 1u);
  const Invocation& invocation = seen[0].invocation;
  EXPECT_EQ(invocation.request_id, "req-1");
  EXPECT_EQ(invocation.deadline_epoch_ms, deadline);
  EXPECT_FALSE(invocation.deadline.unbounded());
  EXPECT_GT(invocation.deadline.remaining().count(), 100'000);
  EXPECT_LE(invocation.deadline.remaining().count(), 120'000);
  EXPECT_EQ(invocation.function_arn, "arn:aws:lambda:eu-west-1:111122223333:function:tasker");
  EXPECT_EQ(invocation.trace_id, "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1");
  EXPECT_EQ(seen[0].trace_env, "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1");
  EXPECT_EQ(stop_runtime(), 0);
}

TEST_F(RuntimeTest, TagsLogLinesWithTheRequestIdOnlyDuringTheInvocation) {
  // The project's own log format, written to stderr, which the test diverts into a file.
  std::filesystem::path file = std::filesystem::temp_directory_path() /
                               ("runtime_test_log_" + std::to_string(getpid()) + ".txt");
  std::fflush(stderr);
  int saved_stderr = dup(STDERR_FILENO);
  std::FILE* sink = std::fopen(file.c_str(), "w");
  ASSERT_NE(sink, nullptr);
  dup2(fileno(sink), STDERR_FILENO);
  log::init({.level = spdlog::level::info, .format = log::Format::kText});

  server_.enqueue(invocation("req-log"));
  start([](const Invocation&) {
    spdlog::info("inside the handler");
    return "{}";
  });
  outcome_of("req-log");
  EXPECT_EQ(stop_runtime(), 0);

  std::fflush(stderr);
  dup2(saved_stderr, STDERR_FILENO);
  close(saved_stderr);
  std::fclose(sink);
  std::string text = rstasker::testing::read_file(file);
  std::filesystem::remove(file);
  EXPECT_THAT(text, HasSubstr(" INFO req-log inside the handler\n"));
  EXPECT_THAT(text, HasSubstr(" WARN - Lambda Runtime API at "));
}

TEST_F(RuntimeTest, ClearsTheTraceIdWhenAnInvocationHasNone) {
  FakeInvocation traced = invocation("traced");
  traced.trace_id = "Root=1-aaaaaaaa-bbbbbbbbbbbbbbbbbbbbbbbb";
  server_.enqueue(traced);
  server_.enqueue(invocation("untraced"));
  start([](const Invocation&) { return "{}"; });

  outcome_of("untraced");
  auto seen = this->seen();
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[0].trace_env, "Root=1-aaaaaaaa-bbbbbbbbbbbbbbbbbbbbbbbb");
  EXPECT_EQ(seen[1].invocation.trace_id, "");
  EXPECT_EQ(seen[1].trace_env, std::nullopt);
}

TEST_F(RuntimeTest, ReportsAnErrorByItsName) {
  server_.enqueue(invocation("busy"));
  start([](const Invocation&) -> std::string {
    throw Error(error_names::kConcurrentExecution, "another statement is running");
  });

  PostedOutcome outcome = outcome_of("busy");
  EXPECT_EQ(outcome.kind, PostedOutcome::Kind::kError);
  EXPECT_EQ(outcome.error_type, "ConcurrentExecution");
  Json body = parse(outcome.body);
  EXPECT_EQ(body["errorType"], "ConcurrentExecution");
  EXPECT_EQ(body["errorMessage"], "another statement is running");
  EXPECT_EQ(body["stackTrace"], Json::array());
}

TEST_F(RuntimeTest, ReportsAStandardExceptionAsInternalError) {
  server_.enqueue(invocation("broken"));
  start([](const Invocation&) -> std::string { throw std::runtime_error("map::at"); });

  PostedOutcome outcome = outcome_of("broken");
  EXPECT_EQ(outcome.kind, PostedOutcome::Kind::kError);
  EXPECT_EQ(outcome.error_type, "InternalError");
  Json body = parse(outcome.body);
  EXPECT_EQ(body["errorType"], "InternalError");
  EXPECT_EQ(body["errorMessage"], "map::at");
}

TEST_F(RuntimeTest, ReportsAnythingElseThrownAsInternalErrorAndKeepsServing) {
  server_.enqueue(invocation("weird"));
  server_.enqueue(invocation("fine"));
  start([](const Invocation& invocation) -> std::string {
    if (invocation.request_id == "weird") throw 42;
    return R"({"ok":true})";
  });

  PostedOutcome weird = outcome_of("weird");
  EXPECT_EQ(weird.kind, PostedOutcome::Kind::kError);
  EXPECT_EQ(weird.error_type, "InternalError");
  EXPECT_THAT(parse(weird.body)["errorMessage"].get<std::string>(),
              HasSubstr("not a std::exception"));
  PostedOutcome fine = outcome_of("fine");
  EXPECT_EQ(fine.kind, PostedOutcome::Kind::kResponse);
  EXPECT_EQ(fine.body, R"({"ok":true})");
}

TEST_F(RuntimeTest, ErrorBodyStaysValidJsonWhateverTheMessageHolds) {
  server_.enqueue(invocation("bytes"));
  start([](const Invocation&) -> std::string {
    throw std::runtime_error("bad \xff byte, \"quotes\" and a\nnewline");
  });

  PostedOutcome outcome = outcome_of("bytes");
  Json body = parse(outcome.body);
  EXPECT_THAT(body["errorMessage"].get<std::string>(), HasSubstr("\"quotes\" and a\nnewline"));
}

// The caller sees the posted error: it is redacted and bounded like a log line, whatever the
// handler's error holds (a password from a remote answer, a whole payload).
TEST_F(RuntimeTest, ThePostedErrorIsRedactedAndBounded) {
  server_.enqueue(invocation("secret"));
  server_.enqueue(invocation("long"));
  start([](const Invocation& invocation) -> std::string {
    if (invocation.request_id == "secret") {
      throw std::runtime_error("CREATE USER u PASSWORD\n'md5SECRETHASH0123456789abcdef'");
    }
    throw std::runtime_error(std::string(300000, 'x'));
  });

  Json secret = parse(outcome_of("secret").body);
  EXPECT_THAT(secret["errorMessage"].get<std::string>(), Not(HasSubstr("SECRETHASH")));
  EXPECT_THAT(secret["errorMessage"].get<std::string>(), HasSubstr("<redacted>"));
  std::string long_message = parse(outcome_of("long").body)["errorMessage"];
  EXPECT_LE(long_message.size(), log::kMaxMessageBytes);
  EXPECT_THAT(long_message, HasSubstr("[cut]"));
}

// Lambda's synchronous response limit is 6,291,556 bytes; a response of exactly that size is
// delivered (the limit used to be taken as 6 MiB, 100 bytes short).
TEST_F(RuntimeTest, AResponseOfExactlyLambdasLimitIsDelivered) {
  server_.enqueue(invocation("limit"));
  start([](const Invocation&) -> std::string { return std::string(6'291'556, 'x'); });
  PostedOutcome limit = outcome_of("limit");
  EXPECT_EQ(limit.kind, PostedOutcome::Kind::kResponse);
  EXPECT_EQ(limit.status, 202);
  EXPECT_EQ(limit.body.size(), 6'291'556u);
}

TEST_F(RuntimeTest, ReplacesAnOversizedResponseByResponseTooLargeAndKeepsServing) {
  server_.enqueue(invocation("huge"));
  server_.enqueue(invocation("small"));
  start([](const Invocation& invocation) -> std::string {
    if (invocation.request_id == "huge") return std::string(kMaxResponseBytes + 1, 'x');
    return "{}";
  });

  PostedOutcome huge = outcome_of("huge");
  EXPECT_EQ(huge.kind, PostedOutcome::Kind::kError);
  EXPECT_EQ(huge.error_type, "ResponseTooLarge");
  EXPECT_LT(huge.body.size(), 1024u);
  std::string message = parse(huge.body)["errorMessage"];
  EXPECT_THAT(message, HasSubstr(std::to_string(kMaxResponseBytes + 1)));
  EXPECT_THAT(message, HasSubstr(std::to_string(kMaxResponseBytes)));

  PostedOutcome small = outcome_of("small");
  EXPECT_EQ(small.kind, PostedOutcome::Kind::kResponse);
  EXPECT_EQ(small.body, "{}");
  // Nothing oversized was ever sent.
  for (const PostedOutcome& outcome : server_.outcomes()) EXPECT_LT(outcome.body.size(), 1024u);
}

TEST_F(RuntimeTest, AResponseOfExactlyTheLimitIsPosted) {
  server_.enqueue(invocation("full"));
  start([](const Invocation&) { return std::string(kMaxResponseBytes, 'x'); });

  PostedOutcome outcome = outcome_of("full");
  EXPECT_EQ(outcome.kind, PostedOutcome::Kind::kResponse);
  EXPECT_EQ(outcome.status, 202);
  EXPECT_EQ(outcome.body.size(), kMaxResponseBytes);
}

TEST_F(RuntimeTest, ShutsDownCleanlyWhenTheRuntimeApiGoesAway) {
  server_.enqueue(invocation("last"));
  start([](const Invocation&) { return "{}"; });
  outcome_of("last");

  std::string address = server_.address();
  EXPECT_EQ(stop_runtime(), 0);
  EXPECT_THAT(log_text(), HasSubstr("warning Lambda Runtime API at " + address + " is gone ("));
  EXPECT_THAT(log_text(), HasSubstr("); shutting down"));
}

TEST_F(RuntimeTest, ReportsAnInitErrorWithItsType) {
  {
    // Its own client, closed before the server stops (as the process would exit).
    RuntimeClient client(server_.address(), long_poll_transport());
    client.post_init_error(error_names::kConfigurationError, "DDB_TABLE_NAME is not set");
  }

  auto outcome = server_.wait_for_init_error();
  ASSERT_TRUE(outcome.has_value());
  EXPECT_EQ(outcome->kind, PostedOutcome::Kind::kInitError);
  EXPECT_EQ(outcome->error_type, "ConfigurationError");
  Json body = parse(outcome->body);
  EXPECT_EQ(body, (Json{{"errorMessage", "DDB_TABLE_NAME is not set"},
                        {"errorType", "ConfigurationError"},
                        {"stackTrace", Json::array()}}));
}

TEST_F(RuntimeTest, SkipsAnInvocationWithoutRequestId) {
  server_.enqueue(invocation("", R"({"orphan":true})"));
  server_.enqueue(invocation("after", R"({"orphan":false})"));
  start([](const Invocation& invocation) { return invocation.payload; });

  PostedOutcome after = outcome_of("after");
  EXPECT_EQ(after.body, R"({"orphan":false})");
  auto seen = this->seen();
  ASSERT_EQ(seen.size(), 1u);
  EXPECT_EQ(seen[0].invocation.request_id, "after");
  EXPECT_EQ(server_.outcomes().size(), 1u);
  EXPECT_THAT(log_text(), HasSubstr("error skipping an invocation"));
  EXPECT_THAT(log_text(), HasSubstr("Lambda-Runtime-Aws-Request-Id"));
}

TEST_F(RuntimeTest, KeepsServingWhenThePostIsRefused) {
  server_.set_post_status(413);
  server_.enqueue(invocation("refused"));
  start([](const Invocation&) { return R"({"n":1})"; });
  EXPECT_EQ(outcome_of("refused").status, 413);

  server_.set_post_status(202);
  server_.enqueue(invocation("accepted"));
  PostedOutcome accepted = outcome_of("accepted");
  EXPECT_EQ(accepted.status, 202);
  EXPECT_EQ(accepted.body, R"({"n":1})");
  EXPECT_THAT(log_text(), HasSubstr("could not report the outcome of invocation refused"));
  EXPECT_THAT(log_text(), HasSubstr("HTTP 413"));
}

TEST_F(RuntimeTest, ShutsDownWhenTheRuntimeApiWasNeverThere) {
  RuntimeApiServer gone;
  std::string address = gone.address();
  gone.stop();
  RuntimeClient client(address, long_poll_transport());

  bool handled = false;
  EXPECT_EQ(run(client,
                [&](const Invocation&) {
                  handled = true;
                  return "{}";
                }),
            0);
  EXPECT_FALSE(handled);
  EXPECT_THAT(log_text(), HasSubstr("Lambda Runtime API at " + address + " is gone"));
  EXPECT_THAT(log_text(), Not(HasSubstr("error ")));
}

// ---- The binary's start-up (src/main.cpp), run as a child process ----

// What a run of redshift-tasker printed (stdout and stderr together) and its exit status.
struct BinaryRun {
  int status = -1;
  std::string output;
};

class BinaryTest : public RuntimeTest {
 protected:
  void SetUp() override {
    RuntimeTest::SetUp();
    binary_ = rstasker::testing::binary_dir() / "redshift-tasker";
    if (!std::filesystem::exists(binary_)) {
      GTEST_SKIP() << binary_ << " is not built (build the redshift-tasker target)";
    }
  }

  // Runs the binary with `args` and nothing in its environment but `env` (env -i).
  BinaryRun run_binary(const std::vector<std::string>& args,
                       const std::vector<std::string>& env = {}) {
    rstasker::testing::ProcessOptions options;
    options.argv = {"env", "-i"};
    options.argv.insert(options.argv.end(), env.begin(), env.end());
    options.argv.push_back(binary_.string());
    options.argv.insert(options.argv.end(), args.begin(), args.end());
    options.log_file = file("output-" + std::to_string(++runs_) + ".log");
    options.log_command_line = false;
    BinaryRun run;
    run.status = rstasker::testing::run_to_completion(options, std::chrono::seconds(30));
    run.output = rstasker::testing::read_file(options.log_file);
    return run;
  }

  // A file of this test's own in the test log directory.
  std::filesystem::path file(const std::string& name) const {
    const auto* test = ::testing::UnitTest::GetInstance()->current_test_info();
    return rstasker::testing::test_log_dir() /
           (std::string("binary_test.") + test->name() + "." + name);
  }

  std::filesystem::path write_event(const std::string& name, const std::string& text) const {
    std::filesystem::path path = file(name);
    std::ofstream(path, std::ios::binary) << text;
    return path;
  }

  // The configuration of a complete environment; building the tasker calls nothing.
  static std::vector<std::string> complete_configuration() {
    return {"CLUSTER_IDENTIFIER=cluster-1",
            "DATABASE=dev",
            "DB_USER=admin",
            "DDB_TABLE_NAME=state",
            "AWS_REGION=eu-west-1",
            "AWS_ACCESS_KEY_ID=AKIDEXAMPLE",
            "AWS_SECRET_ACCESS_KEY=secret-example",
            "AWS_ENDPOINT_URL=http://127.0.0.1:9"};
  }

  std::filesystem::path binary_;
  int runs_ = 0;
};

// The {"errorType", "errorMessage"} line `invoke` printed, or null.
Json printed_error(const std::string& output) {
  std::istringstream lines(output);
  for (std::string line; std::getline(lines, line);) {
    if (line.starts_with(R"({"errorMessage")") || line.starts_with(R"({"errorType")")) {
      return Json::parse(line);
    }
  }
  return nullptr;
}

TEST_F(BinaryTest, InvokeRefusesAMalformedEventBeforeAnyConfigurationIsNeeded) {
  std::vector<std::filesystem::path> events;
  if (auto shared = rstasker::testing::shared_dir()) {
    for (const auto& entry : std::filesystem::directory_iterator(*shared / "events" / "invalid")) {
      events.push_back(entry.path());
    }
  }
  events.push_back(write_event("mis-cased.json", R"({"action":"DescribeStatement"})"));
  events.push_back(write_event("not-an-object.json", R"(["select 1"])"));
  events.push_back(write_event("empty.json", ""));
  events.push_back(write_event("bad-utf8.json", "{\"sqlStatement\":\"select '\xff'\"}"));
  events.push_back(write_event("deep.json", std::string(10000, '[')));
  events.push_back(
      write_event("token-without-arn.json", R"({"sqlStatement":"select 1","taskToken":"t-1"})"));
  for (const auto& event : events) {
    BinaryRun run = run_binary({"invoke", event.string()});
    EXPECT_EQ(run.status, 1) << event << "\n" << run.output;
    Json error = printed_error(run.output);
    ASSERT_TRUE(error.is_object()) << event << "\n" << run.output;
    EXPECT_EQ(error["errorType"], "InvalidRequest") << event << "\n" << run.output;
    EXPECT_THAT(run.output, Not(HasSubstr("ConfigurationError"))) << event;
  }
}

TEST_F(BinaryTest, InvokeReadsTheConfigurationOnceTheEventIsWellFormed) {
  BinaryRun run = run_binary(
      {"invoke", write_event("valid.json", R"({"action":"describeStatement","statementId":"x"})")});
  EXPECT_EQ(run.status, 1) << run.output;
  EXPECT_EQ(printed_error(run.output)["errorType"], "ConfigurationError") << run.output;
}

TEST_F(BinaryTest, InvokeNeverEchoesAMalformedEventsTaskToken) {
  const std::string token = "AAAAKgAAAAIAAAAAAAAAAQSECRETxTOKEN";
  BinaryRun run =
      run_binary({"invoke", write_event("truncated.json",
                                        R"({"sqlStatement":"select 1","taskToken":")" + token)});
  EXPECT_EQ(printed_error(run.output)["errorType"], "InvalidRequest") << run.output;
  EXPECT_THAT(run.output, Not(HasSubstr("SECRET")));
}

TEST_F(BinaryTest, TheRuntimeReportsAConfigurationErrorOnceAtInit) {
  BinaryRun run = run_binary({}, {"AWS_LAMBDA_RUNTIME_API=" + server_.address()});
  EXPECT_EQ(run.status, 1) << run.output;
  auto init_error = server_.wait_for_init_error(std::chrono::seconds(0));
  ASSERT_TRUE(init_error.has_value()) << run.output;
  EXPECT_EQ(init_error->error_type, "ConfigurationError");
  EXPECT_EQ(server_.next_requests(), 0u);
  EXPECT_EQ(server_.outcomes().size(), 1u);
}

TEST_F(BinaryTest, ARefusedInitErrorPostEndsTheProcessWithoutACrash) {
  server_.set_post_status(500);
  BinaryRun run = run_binary({}, {"AWS_LAMBDA_RUNTIME_API=" + server_.address()});
  EXPECT_EQ(run.status, 1) << run.output;
  EXPECT_THAT(run.output, HasSubstr("could not report the initialisation failure"));
}

TEST_F(BinaryTest, AnUnreachableRuntimeApiAtInitEndsTheProcessWithoutACrash) {
  RuntimeApiServer gone;
  std::string address = gone.address();
  gone.stop();
  BinaryRun run = run_binary({}, {"AWS_LAMBDA_RUNTIME_API=" + address});
  EXPECT_EQ(run.status, 1) << run.output;
  EXPECT_THAT(run.output, HasSubstr("could not report the initialisation failure"));
}

TEST_F(BinaryTest, TheRuntimeAnswersAMalformedEventWithoutLoggingItsTaskToken) {
  const std::string token = "AAAAKgAAAAIAAAAAAAAAAQSECRETxTOKEN";
  server_.enqueue(invocation("malformed", R"({"sqlStatement":"select 1","taskToken":")" + token));
  rstasker::testing::ProcessOptions options;
  std::vector<std::string> env = complete_configuration();
  env.push_back("AWS_LAMBDA_RUNTIME_API=" + server_.address());
  options.argv = {"env", "-i"};
  options.argv.insert(options.argv.end(), env.begin(), env.end());
  options.argv.push_back(binary_.string());
  options.log_file = file("runtime.log");
  options.log_command_line = false;
  rstasker::testing::Process runtime(options);
  PostedOutcome outcome = outcome_of("malformed");
  EXPECT_EQ(outcome.error_type, "InvalidRequest");
  EXPECT_THAT(outcome.body, HasSubstr("not valid JSON at byte"));
  EXPECT_THAT(outcome.body, Not(HasSubstr("SECRET")));
  server_.stop();
  runtime.wait_for_exit(std::chrono::seconds(10));
  runtime.stop();
  std::string log = rstasker::testing::read_file(options.log_file);
  EXPECT_THAT(log, HasSubstr("InvalidRequest"));
  EXPECT_THAT(log, Not(HasSubstr("SECRET")));
}

TEST_F(BinaryTest, VersionNamesTheCommitAndTheArchitecture) {
  BinaryRun run = run_binary({"--version"});
  EXPECT_EQ(run.status, 0) << run.output;
  EXPECT_EQ(run.output, std::string("redshift-tasker ") + kVersion + " (commit " + kCommit + ", " +
                            kArchitecture + ")\n");
  EXPECT_NE(std::string(kCommit), "") << "CMake fills in the commit";
}

TEST_F(BinaryTest, EachInvocationWritesItsMetricsAsEmbeddedMetricFormat) {
  // An event that reaches the tasker and fails there, without any network call.
  FakeInvocation first = invocation("first", R"({"action":"queryRunnerStep"})");
  first.trace_id = "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1";
  server_.enqueue(first);
  server_.enqueue(invocation("second", R"({"action":"queryRunnerStep"})"));
  rstasker::testing::ProcessOptions options;
  std::vector<std::string> env = complete_configuration();
  env.push_back("AWS_LAMBDA_RUNTIME_API=" + server_.address());
  env.push_back("AWS_LAMBDA_FUNCTION_NAME=fn-under-test");
  env.push_back("METRICS_NAMESPACE=OpsTest");
  env.push_back("AWS_LAMBDA_LOG_LEVEL=WARN");  // metrics must still reach the log
  options.argv = {"env", "-i"};
  options.argv.insert(options.argv.end(), env.begin(), env.end());
  options.argv.push_back(binary_.string());
  options.log_file = file("runtime.log");
  options.log_command_line = false;
  rstasker::testing::Process runtime(options);
  EXPECT_EQ(outcome_of("first").error_type, "InvalidRequest");
  EXPECT_EQ(outcome_of("second").error_type, "InvalidRequest");
  server_.stop();
  runtime.wait_for_exit(std::chrono::seconds(10));
  runtime.stop();

  std::vector<Json> docs;
  std::vector<Json> failures;  // the log lines reporting each failed invocation
  std::istringstream lines(rstasker::testing::read_file(options.log_file));
  for (std::string line; std::getline(lines, line);) {
    if (line.find("invocation failed with") != std::string::npos) {
      failures.push_back(Json::parse(line));
    }
    if (line.find("\"_aws\"") == std::string::npos) continue;
    Json doc = Json::parse(line);
    EXPECT_EQ(rstasker::testing::emf_problem(doc), "") << line;
    docs.push_back(std::move(doc));
  }
  ASSERT_EQ(docs.size(), 1u) << "only the cold start has something to report";
  EXPECT_EQ(docs[0]["_aws"]["CloudWatchMetrics"][0]["Namespace"], "OpsTest");
  EXPECT_EQ(docs[0]["FunctionName"], "fn-under-test");
  EXPECT_EQ(docs[0]["level"], "WARN") << "at the filter's level, so Lambda keeps it";
  EXPECT_EQ(rstasker::testing::emf_totals(docs)["ColdStart"], 1);

  // The same run's JSON log lines carry the structured fields.
  ASSERT_EQ(failures.size(), 2u);
  EXPECT_EQ(failures[0]["errorType"], "InvalidRequest");
  EXPECT_EQ(failures[0]["requestId"], "first");
  EXPECT_EQ(failures[0]["xrayTraceId"], "1-5759e988-bd862e3fe1be46a994272793");
  EXPECT_EQ(failures[0]["action"], "queryRunnerStep");
  EXPECT_EQ(failures[0]["coldStart"], true);
  EXPECT_EQ(failures[1]["coldStart"], false);
  EXPECT_FALSE(failures[1].contains("xrayTraceId")) << "the second invocation has no trace";
}

// An unknown action of 300,000 characters came back whole in the errorMessage and again in the
// log line; both now quote its first characters only, marked as cut.
TEST_F(BinaryTest, AHugeUnknownActionIsQuotedOnlyInPart) {
  const std::string action = "A" + std::string(300000, 'b');
  const std::string event = R"({"action":")" + action + R"("})";
  BinaryRun invoked = run_binary({"invoke", write_event("huge-action.json", event)});
  Json error = printed_error(invoked.output);
  ASSERT_TRUE(error.is_object()) << invoked.output.substr(0, 2000);
  EXPECT_EQ(error["errorType"], "InvalidRequest");
  EXPECT_LT(error["errorMessage"].get<std::string>().size(), 1000u);
  EXPECT_THAT(error["errorMessage"].get<std::string>(), HasSubstr("cut, 300001 characters"));

  server_.enqueue(invocation("huge", event));
  rstasker::testing::ProcessOptions options;
  std::vector<std::string> env = complete_configuration();
  env.push_back("AWS_LAMBDA_RUNTIME_API=" + server_.address());
  options.argv = {"env", "-i"};
  options.argv.insert(options.argv.end(), env.begin(), env.end());
  options.argv.push_back(binary_.string());
  options.log_file = file("runtime.log");
  options.log_command_line = false;
  rstasker::testing::Process runtime(options);
  PostedOutcome outcome = outcome_of("huge");
  EXPECT_EQ(outcome.error_type, "InvalidRequest");
  EXPECT_LT(outcome.body.size(), 1000u);
  server_.stop();
  runtime.wait_for_exit(std::chrono::seconds(10));
  runtime.stop();
  std::string log = rstasker::testing::read_file(options.log_file);
  EXPECT_THAT(log, HasSubstr("InvalidRequest"));
  EXPECT_EQ(log.find(std::string(1000, 'b')), std::string::npos);
}

}  // namespace
}  // namespace rstasker::lambda
