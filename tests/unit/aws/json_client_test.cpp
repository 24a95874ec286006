// The JSON-protocol client against a scripted transport: request shape, error parsing, retries.
#include "rstasker/aws/json_client.hpp"

#include <gtest/gtest.h>

#include <deque>
#include <mutex>

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
