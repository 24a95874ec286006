// The JSON-protocol client against a scripted transport: request shape, error parsing, retries.
#include "rstasker/aws/json_client.hpp"

#include <gtest/gtest.h>

#include <ctime>
#include <deque>
#include <map>
#include <mutex>

#include "rstasker/aws/user_agent.hpp"

namespace rstasker::aws {
namespace {

// Answers each request with the next scripted response (or throws the next scripted error).
class ScriptedTransport : public HttpTransport {
 public:
  struct Step {
    HttpResponse response;
    std::optional<Error> error;
  };

  void add(long status, std::string body, Headers headers = {}) {
    steps_.push_back({HttpResponse{status, std::move(headers), std::move(body)}, std::nullopt});
  }
  void add_error(Error e) { steps_.push_back({{}, std::move(e)}); }

  HttpResponse send(const HttpRequest& request, const Deadline&) override {
    std::lock_guard lock(mutex_);
    requests.push_back(request);
    if (steps_.empty()) throw Error("NoScript", "no scripted response left");
    Step step = steps_.front();
    steps_.pop_front();
    if (step.error) throw *step.error;
    return step.response;
  }

  std::vector<HttpRequest> requests;

 private:
  std::mutex mutex_;
  std::deque<Step> steps_;
};

struct Fixture : ::testing::Test {
  std::shared_ptr<ScriptedTransport> transport = std::make_shared<ScriptedTransport>();
  JsonClient client{protocol::kDynamoDb, Endpoint{"http://127.0.0.1:4566", "us-east-1", "dynamodb"},
                    Credentials{"AKID", "SECRET", "TOKEN"}, transport,
                    RetryPolicy{4, std::chrono::milliseconds(1), std::chrono::milliseconds(2)}};
  CallContext context{Deadline::after(std::chrono::seconds(10)), "Root=1-abc"};
};

TEST_F(Fixture, SendsASignedJsonRequestWithTargetAndTrace) {
  transport->add(200, R"({"TableNames":["t"]})");
  Json out = client.call("ListTables", {{"Limit", 1}}, context);
  EXPECT_EQ(out["TableNames"][0], "t");
  ASSERT_EQ(transport->requests.size(), 1u);
  const HttpRequest& r = transport->requests[0];
  EXPECT_EQ(r.method, "POST");
  EXPECT_EQ(r.url, "http://127.0.0.1:4566/");
  EXPECT_EQ(*r.header("X-Amz-Target"), "DynamoDB_20120810.ListTables");
  EXPECT_EQ(*r.header("Content-Type"), "application/x-amz-json-1.0");
  EXPECT_EQ(*r.header("X-Amzn-Trace-Id"), "Root=1-abc");
  ASSERT_NE(r.header("User-Agent"), nullptr);
  EXPECT_EQ(*r.header("User-Agent"), process_user_agent());
  EXPECT_EQ(*r.header("X-Amz-Security-Token"), "TOKEN");
  ASSERT_NE(r.header("Authorization"), nullptr);
  EXPECT_TRUE(r.header("Authorization")->starts_with("AWS4-HMAC-SHA256 Credential=AKID/"));
  EXPECT_NE(r.header("Authorization")->find("/us-east-1/dynamodb/aws4_request"), std::string::npos);
  EXPECT_EQ(Json::parse(r.body), Json({{"Limit", 1}}));
}

TEST_F(Fixture, EmptySuccessBodyIsAnEmptyObject) {
  transport->add(200, "");
  EXPECT_EQ(client.call("DeleteItem", Json::object(), context), Json::object());
}

TEST_F(Fixture, ServiceErrorsAreParsedAndNotRetried) {
  transport->add(400,
                 R"({"__type":"com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException",)"
                 R"("message":"The conditional request failed"})");
  try {
    client.call("PutItem", Json::object(), context);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_EQ(e.name(), "ConditionalCheckFailedException");
    EXPECT_EQ(e.message(), "The conditional request failed");
    EXPECT_EQ(e.http_status(), 400);
    EXPECT_FALSE(e.retryable());
  }
  EXPECT_EQ(transport->requests.size(), 1u);
}

TEST_F(Fixture, ThrottlingAnd5xxAreRetriedUntilSuccess) {
  transport->add(400, R"({"__type":"ThrottlingException","message":"slow down"})");
  transport->add(503, "");
  transport->add_error(Error("NetworkError", "reset", 0, true));
  transport->add(200, R"({"ok":true})");
  EXPECT_EQ(client.call("Query", Json::object(), context)["ok"], true);
  EXPECT_EQ(transport->requests.size(), 4u);
}

TEST_F(Fixture, TheHistorySaysWhetherARetriedAttemptMayHaveBeenApplied) {
  const char* closed = R"({"__type":"TaskTimedOut","message":"Task Timed Out"})";
  // Throttling refuses before applying: the final refusal is the only answer.
  transport->add(400, R"({"__type":"ThrottlingException","message":"slow down"})");
  transport->add(400, closed);
  CallHistory refused;
  EXPECT_THROW(client.call("SendTaskSuccess", Json::object(), context, &refused), Error);
  EXPECT_FALSE(refused.maybe_applied);
  // No answer, or a 5xx: the first attempt may have closed the task the retry finds closed.
  for (bool network : {true, false}) {
    if (network) {
      transport->add_error(Error("NetworkError", "reset", 0, true));
    } else {
      transport->add(500, R"({"__type":"InternalFailure"})");
    }
    transport->add(400, closed);
    CallHistory history;
    EXPECT_THROW(client.call("SendTaskSuccess", Json::object(), context, &history), Error);
    EXPECT_TRUE(history.maybe_applied) << (network ? "network error" : "500");
  }
}

TEST_F(Fixture, RetriesStopAtMaxAttemptsWithTheLastError) {
  for (int i = 0; i < 5; ++i) transport->add(500, R"({"__type":"InternalServerError"})");
  try {
    client.call("Query", Json::object(), context);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_EQ(e.name(), "InternalServerError");
    EXPECT_TRUE(e.retryable());
  }
  EXPECT_EQ(transport->requests.size(), 4u);  // max_attempts
}

TEST_F(Fixture, RetriesNeverRunPastTheDeadline) {
  JsonClient slow{
      protocol::kDynamoDb, Endpoint{"http://127.0.0.1:4566", "us-east-1", "dynamodb"},
      Credentials{"AKID", "SECRET", ""}, transport,
      RetryPolicy{10, std::chrono::milliseconds(10000), std::chrono::milliseconds(10000)}};
  for (int i = 0; i < 10; ++i) transport->add(503, "");
  auto start = std::chrono::steady_clock::now();
  CallContext short_context{Deadline::after(std::chrono::milliseconds(300)), {}};
  EXPECT_THROW(slow.call("Query", Json::object(), short_context), Error);
  // A retry is only taken when its delay fits the deadline; none of these could.
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  EXPECT_LT(transport->requests.size(), 10u);
}

TEST_F(Fixture, NonJsonSuccessBodyIsAnInternalError) {
  transport->add(200, "<html>proxy</html>");
  try {
    client.call("Query", Json::object(), context);
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_EQ(e.name(), "InternalError");
  }
}

TEST(ErrorFromResponse, HeaderXmlAndFallbacks) {
  Error from_header = error_from_response(HttpResponse{
      400, {{"x-amzn-ErrorType", "ValidationException:http://x"}}, R"({"Message":"bad"})"});
  EXPECT_EQ(from_header.name(), "ValidationException");
  EXPECT_EQ(from_header.message(), "bad");

  Error from_xml = error_from_response(
      HttpResponse{403,
                   {},
                   "<ErrorResponse><Errors><Error><Code>SignatureDoesNotMatch</Code><Message>sig"
                   "</Message></Error></Errors></ErrorResponse>"});
  EXPECT_EQ(from_xml.name(), "SignatureDoesNotMatch");
  EXPECT_EQ(from_xml.message(), "sig");
  EXPECT_EQ(from_xml.http_status(), 403);
  EXPECT_FALSE(from_xml.retryable());

  Error bare = error_from_response(HttpResponse{502, {}, ""});
  EXPECT_EQ(bare.name(), "HttpError502");
  EXPECT_TRUE(bare.retryable());
}

TEST(Retryable, FollowsTheDocumentedList) {
  for (const char* name :
       {"Throttling", "ThrottlingException", "ThrottledException", "TooManyRequestsException",
        "ProvisionedThroughputExceededException", "RequestLimitExceeded", "LimitExceededException",
        "TransactionInProgressException"}) {
    EXPECT_TRUE(is_retryable(name, 400)) << name;
  }
  EXPECT_TRUE(is_retryable("Anything", 500));
  EXPECT_TRUE(is_retryable("Anything", 504));
  EXPECT_FALSE(is_retryable("ValidationException", 400));
  EXPECT_FALSE(is_retryable("Anything", 501));
}

TEST(Retryable, KnowsTheSdksThrottlingAndTransientCodes) {
  for (const char* name : {"RequestThrottledException", "SlowDown", "RequestTimeout",
                           "RequestTimeoutException", "PriorRequestNotComplete", "RequestThrottled",
                           "BandwidthLimitExceeded", "EC2ThrottledException"}) {
    EXPECT_TRUE(is_retryable(name, 400)) << name;
  }
  EXPECT_TRUE(is_retryable("Anything", 429));
  EXPECT_FALSE(is_retryable("AccessDenied", 403));
}

TEST(ClockSkew, RecognisesTheErrorsAndReadsTheServersDate) {
  EXPECT_TRUE(is_clock_skew_error(Error("RequestTimeTooSkewed", "too skewed", 403)));
  EXPECT_TRUE(is_clock_skew_error(Error(
      "InvalidSignatureException", "Signature expired: 20260101T000000Z is now earlier", 400)));
  EXPECT_FALSE(is_clock_skew_error(Error(
      "InvalidSignatureException", "The request signature we calculated does not match", 400)));
  EXPECT_FALSE(is_clock_skew_error(Error("AccessDenied", "Signature expired", 403)));

  const auto now = std::chrono::system_clock::from_time_t(1795000000);  // 2026-11-18T11:06:40Z
  EXPECT_EQ(clock_offset_from_date("Wed, 18 Nov 2026 12:06:40 GMT", now),
            std::chrono::milliseconds(3600 * 1000));
  EXPECT_EQ(clock_offset_from_date("Wed, 18 Nov 2026 11:06:30 GMT", now),
            std::chrono::milliseconds(-10 * 1000));
  EXPECT_EQ(clock_offset_from_date("yesterday", now), std::nullopt);
  EXPECT_EQ(clock_offset_from_date("", now), std::nullopt);
}

// A sandbox whose clock is an hour behind: the first request is refused as expired, the client
// learns the offset from the answer's Date, and signs the retry (and later calls) with it.
TEST_F(Fixture, AClockSkewErrorCorrectsTheSigningTimeAndRetries) {
  const auto server_now = std::chrono::system_clock::now() + std::chrono::hours(1);
  const std::time_t t = std::chrono::system_clock::to_time_t(server_now);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char date[64];
  std::strftime(date, sizeof date, "%a, %d %b %Y %H:%M:%S GMT", &tm);
  transport->add(400,
                 R"({"__type":"InvalidSignatureException","message":"Signature expired: )"
                 R"(20260101T000000Z is now earlier than 20260101T010000Z"})",
                 {{"Date", date}});
  transport->add(200, R"({"ok":true})");
  EXPECT_EQ(client.call("Query", Json::object(), context)["ok"], true);
  ASSERT_EQ(transport->requests.size(), 2u);
  std::strftime(date, sizeof date, "%Y%m%dT%H", &tm);
  EXPECT_TRUE(transport->requests[1].header("X-Amz-Date")->starts_with(date))
      << *transport->requests[1].header("X-Amz-Date") << " vs " << date;
}

// Standard mode, as the AWS SDKs: a shared quota of 500 tokens, 5 per retry; once spent, a
// retryable failure is thrown at once; a success refunds.
TEST(StandardRetries, AQuotaStopsRetriesOnceSpentAndSuccessRefillsIt) {
  auto transport = std::make_shared<ScriptedTransport>();
  JsonClient client{protocol::kDynamoDb, Endpoint{"http://127.0.0.1:4566", "us-east-1", "dynamodb"},
                    Credentials{"AKID", "SECRET", ""}, transport,
                    RetryPolicy{3, std::chrono::milliseconds(0), std::chrono::milliseconds(0),
                                RetryMode::kStandard}};
  CallContext context{Deadline::after(std::chrono::seconds(60)), {}};
  // 50 calls that fail 3 times each take 2 retries of 5 tokens: 500.
  for (int call = 0; call < 50; ++call) {
    for (int i = 0; i < 3; ++i) transport->add(503, "");
    EXPECT_THROW(client.call("Query", Json::object(), context), Error);
  }
  EXPECT_EQ(transport->requests.size(), 150u);
  transport->add(503, "");
  EXPECT_THROW(client.call("Query", Json::object(), context), Error);
  EXPECT_EQ(transport->requests.size(), 151u) << "retried with an empty quota";
  // A success without a retry gives back one token; one retry's worth (5) needs five.
  for (int i = 0; i < 5; ++i) {
    transport->add(200, "{}");
    client.call("Query", Json::object(), context);
  }
  transport->add(503, "");
  transport->add(200, "{}");
  EXPECT_NO_THROW(client.call("Query", Json::object(), context));
  EXPECT_EQ(transport->requests.size(), 158u);
}

TEST(RetryPolicyFromEnv, FollowsTheSdkSettings) {
  auto env = [](std::map<std::string, std::string> values) -> EnvLookup {
    return [values](std::string_view name) -> std::optional<std::string> {
      auto it = values.find(std::string(name));
      if (it == values.end()) return std::nullopt;
      return it->second;
    };
  };
  RetryPolicy legacy = retry_policy_from_env(env({}));
  EXPECT_EQ(legacy.mode, RetryMode::kLegacy);
  EXPECT_EQ(legacy.max_attempts, 6);
  RetryPolicy standard = retry_policy_from_env(env({{"AWS_RETRY_MODE", "standard"}}));
  EXPECT_EQ(standard.mode, RetryMode::kStandard);
  EXPECT_EQ(standard.max_attempts, 3);
  EXPECT_EQ(standard.max_delay, std::chrono::seconds(20));
  EXPECT_EQ(retry_policy_from_env(env({{"AWS_RETRY_MODE", "Adaptive"}})).mode,
            RetryMode::kStandard);
  EXPECT_EQ(retry_policy_from_env(env({{"AWS_RETRY_MODE", "standard"}, {"AWS_MAX_ATTEMPTS", "5"}}))
                .max_attempts,
            5);
  EXPECT_EQ(retry_policy_from_env(env({{"AWS_MAX_ATTEMPTS", "1"}})).max_attempts, 1);
  for (auto bad : std::vector<std::map<std::string, std::string>>{{{"AWS_RETRY_MODE", "fast"}},
                                                                  {{"AWS_MAX_ATTEMPTS", "0"}},
                                                                  {{"AWS_MAX_ATTEMPTS", "3x"}}}) {
    try {
      retry_policy_from_env(env(bad));
      ADD_FAILURE() << bad.begin()->first;
    } catch (const Error& e) {
      EXPECT_EQ(e.name(), "ConfigurationError");
      EXPECT_NE(e.message().find(bad.begin()->first), std::string::npos) << e.message();
    }
  }
}

TEST(Backoff, FullJitterWithinTheCappedExponentialCeiling) {
  RetryPolicy policy{10, std::chrono::milliseconds(100), std::chrono::milliseconds(1000)};
  for (int retry = 1; retry <= 8; ++retry) {
    std::int64_t ceiling = std::min<std::int64_t>(100LL << (retry - 1), 1000);
    std::int64_t max_seen = 0;
    for (int i = 0; i < 400; ++i) {
      auto d = backoff_delay(policy, retry).count();
      ASSERT_GE(d, 0);
      ASSERT_LE(d, ceiling) << "retry " << retry;
      max_seen = std::max(max_seen, d);
    }
    // Full jitter spreads over the whole range, not just near zero.
    EXPECT_GT(max_seen, ceiling / 2) << "retry " << retry;
  }
}

}  // namespace
}  // namespace rstasker::aws
