// The CloudFormation response client over real HTTP (libcurl) against a local receiver: what
// arrives, what is retried, what is not, and that the deadline holds.
#include "support/cfn_receiver.hpp"

#include <arpa/inet.h>
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <thread>

#include "rstasker/aws/http.hpp"
#include "rstasker/common/error.hpp"
#include "rstasker/services/cfn_response.hpp"
#include "rstasker/tasker/cloudformation.hpp"
#include "support/fakes.hpp"

namespace rstasker {
namespace {

using ::testing::HasSubstr;
using ::testing::IsEmpty;
using ::testing::Not;
using Clock = std::chrono::steady_clock;

const Json kRequest = {
    {"StackId", "arn:aws:cloudformation:eu-west-1:012345678910:stack/app/327607c0"},
    {"RequestId", "a60d7949-852f-4c7c-b16b-0f7764cca45e"},
    {"LogicalResourceId", "ReportingSchema"}};

// Accepts one connection on a loopback port, keeps the raw bytes of the request and answers
// 200: the wire format, which cpp-httplib's parser tidies (it drops empty header lines).
class RawOnceServer {
 public:
  RawOnceServer() {
    fd_ = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in address{};
    address.sin_family = AF_INET;
    address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t length = sizeof address;
    if (fd_ < 0 || bind(fd_, reinterpret_cast<sockaddr*>(&address), sizeof address) != 0 ||
        listen(fd_, 1) != 0 ||
        getsockname(fd_, reinterpret_cast<sockaddr*>(&address), &length) != 0) {
      throw std::runtime_error("cannot listen on a loopback port");
    }
    port_ = ntohs(address.sin_port);
    thread_ = std::thread([this] { serve(); });
  }
  ~RawOnceServer() {
    if (thread_.joinable()) thread_.join();
    close(fd_);
  }
  std::string url() const {
    return "http://127.0.0.1:" + std::to_string(port_) + "/raw/response?X-Amz-Signature=abc";
  }
  // The request as received (waits for the server to finish with it).
  std::string request() {
    if (thread_.joinable()) thread_.join();
    return raw_;
  }

 private:
  void serve() {
    pollfd ready{fd_, POLLIN, 0};
    if (poll(&ready, 1, 10'000) <= 0) return;
    int client = accept(fd_, nullptr, nullptr);
    if (client < 0) return;
    timeval timeout{10, 0};
    setsockopt(client, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
    char buffer[4096];
    for (;;) {
      ssize_t n = recv(client, buffer, sizeof buffer, 0);
      if (n <= 0) break;
      raw_.append(buffer, static_cast<std::size_t>(n));
      auto end = raw_.find("\r\n\r\n");
      if (end == std::string::npos) continue;
      auto at = raw_.find("Content-Length: ");
      std::size_t body = at == std::string::npos ? 0 : std::stoul(raw_.substr(at + 16));
      if (raw_.size() >= end + 4 + body) break;
    }
    const std::string answer = "HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
    send(client, answer.data(), answer.size(), MSG_NOSIGNAL);
    close(client);
  }

  int fd_ = -1;
  int port_ = 0;
  std::thread thread_;
  std::string raw_;
};

struct CfnReceiverTest : ::testing::Test {
  // Declared first, destroyed last: the transport's pooled connections close before it stops.
  testing::CfnReceiver receiver;
  std::shared_ptr<aws::HttpTransport> transport = aws::make_curl_transport();
  aws::CallContext context{Deadline::after(std::chrono::seconds(20)), {}};

  std::unique_ptr<services::CfnResponder> responder(aws::RetryPolicy retry = {
                                                        6, std::chrono::milliseconds(10),
                                                        std::chrono::milliseconds(50)}) {
    // The receiver is plain http on 127.0.0.1: the local stack's policy.
    return services::make_cfn_responder(transport, retry, services::ResponseUrlPolicy::kAnyHttpUrl);
  }
  static std::string body(bool success = true) {
    return tasker::cfn_response_body(kRequest, success, success ? "done" : "it broke",
                                     "ReportingSchema:0123456789abcdef",
                                     {{"StatementId", "d9b6c0c9"}});
  }
};

TEST_F(CfnReceiverTest, DeliversTheBodyWithAnEmptyContentType) {
  responder()->send(receiver.url(), body(), context);
  auto received = receiver.received();
  ASSERT_EQ(received.size(), 1u);
  EXPECT_EQ(received[0].method, "PUT");
  EXPECT_EQ(received[0].target, "/stack/app/response?X-Amz-Expires=7200&X-Amz-Signature=abc123");
  EXPECT_EQ(received[0].header("Content-Type"), "");
  EXPECT_EQ(received[0].body, body());
  EXPECT_THAT(received[0].problems, IsEmpty());
  EXPECT_EQ(received[0].status, 200);
}

TEST_F(CfnReceiverTest, TheContentTypeHeaderIsSentEmptyOnTheWire) {
  RawOnceServer raw;
  responder()->send(raw.url(), body(), context);
  const std::string request = raw.request();
  EXPECT_THAT(request, ::testing::StartsWith("PUT /raw/response?X-Amz-Signature=abc HTTP/1.1\r\n"));
  EXPECT_THAT(request, HasSubstr("\r\nContent-Type:\r\n"));
  EXPECT_THAT(request, Not(HasSubstr("urlencoded")));
  EXPECT_THAT(request, ::testing::EndsWith("\r\n\r\n" + body()));
}

TEST_F(CfnReceiverTest, AFailureBodyPassesTheChecksToo) {
  responder()->send(receiver.url(), body(false), context);
  ASSERT_EQ(receiver.received().size(), 1u);
  EXPECT_THAT(receiver.received()[0].problems, IsEmpty());
}

TEST_F(CfnReceiverTest, ServerErrorsAreRetriedUntilAccepted) {
  receiver.fail_next(2, 503);
  responder()->send(receiver.url(), body(), context);
  auto received = receiver.received();
  ASSERT_EQ(received.size(), 3u);
  EXPECT_EQ(received[0].status, 503);
  EXPECT_EQ(received[1].status, 503);
  EXPECT_EQ(received[2].status, 200);
  for (const auto& r : received) EXPECT_EQ(r.body, body());
}

// S3 answers some passing troubles with a 4xx: RequestTimeout (400) and 429; SlowDown comes
// with 503. They are retried like 5xx, and only a final refusal ends the attempts.
TEST_F(CfnReceiverTest, TransientS3RefusalsAreRetried) {
  receiver.fail_next(1, 400, "RequestTimeout");
  responder()->send(receiver.url(), body(), context);
  receiver.fail_next(1, 429, "SlowDown");
  responder()->send(receiver.url(), body(), context);
  receiver.fail_next(1, 503, "SlowDown");
  responder()->send(receiver.url(), body(), context);
  auto received = receiver.received();
  ASSERT_EQ(received.size(), 6u);
  EXPECT_EQ(received[0].status, 400);
  EXPECT_EQ(received[1].status, 200);
  EXPECT_EQ(received[2].status, 429);
  EXPECT_EQ(received[3].status, 200);
  EXPECT_EQ(received[5].status, 200);
}

// The production policy sends nothing to a host that is not S3's, nor over plain http.
TEST_F(CfnReceiverTest, TheProductionPolicySendsNothingToOtherHosts) {
  auto strict = services::make_cfn_responder(transport);
  EXPECT_NE(strict->url_problem(receiver.url()), "");
  try {
    strict->send(receiver.url(), body(), context);
    FAIL() << "sent to " << receiver.url();
  } catch (const Error& e) {
    EXPECT_FALSE(e.retryable());
    EXPECT_THAT(e.message(), Not(HasSubstr("X-Amz-Signature")));
  }
  EXPECT_TRUE(receiver.received().empty());
}

TEST_F(CfnReceiverTest, DroppedConnectionsAreRetried) {
  receiver.drop_next(2);
  responder()->send(receiver.url(), body(), context);
  auto received = receiver.received();
  ASSERT_EQ(received.size(), 3u);
  EXPECT_EQ(received[0].status, 0);
  EXPECT_EQ(received[2].status, 200);
}

TEST_F(CfnReceiverTest, ClientErrorsAreNotRetriedAndNeverShowTheUrl) {
  receiver.fail_next(1, 403);
  try {
    responder()->send(receiver.url(), body(), context);
    FAIL() << "a 403 was taken for success";
  } catch (const Error& e) {
    EXPECT_EQ(e.http_status(), 403);
    EXPECT_FALSE(e.retryable());
    EXPECT_THAT(e.message(), HasSubstr("AccessDenied"));
    EXPECT_THAT(e.message(), Not(HasSubstr("X-Amz-Signature")));
    EXPECT_THAT(e.message(), Not(HasSubstr("/stack/app/response")));
  }
  EXPECT_EQ(receiver.received().size(), 1u);
}

TEST_F(CfnReceiverTest, GivesUpWhenAttemptsRunOut) {
  receiver.fail_next(100, 500);
  try {
    responder({3, std::chrono::milliseconds(1), std::chrono::milliseconds(5)})
        ->send(receiver.url(), body(), context);
    FAIL() << "a persistent 500 was taken for success";
  } catch (const Error& e) {
    EXPECT_EQ(e.http_status(), 500);
    EXPECT_TRUE(e.retryable()) << "trying later may help";
  }
  EXPECT_EQ(receiver.received().size(), 3u);
}

TEST_F(CfnReceiverTest, RetriesStopBeforeTheDeadline) {
  receiver.fail_next(1000, 500);
  aws::CallContext short_call{Deadline::after(std::chrono::milliseconds(800)), {}};
  const auto start = Clock::now();
  EXPECT_THROW(responder({1000, std::chrono::milliseconds(50), std::chrono::milliseconds(200)})
                   ->send(receiver.url(), body(), short_call),
               Error);
  // Without the deadline the 1000 attempts would take at least 50 s; the slack is for a loaded
  // machine, not a speed target.
  EXPECT_LT(Clock::now() - start, std::chrono::milliseconds(800 + 5000));
  EXPECT_LT(receiver.received().size(), 1000u);
  EXPECT_GE(receiver.received().size(), 2u);
}

TEST_F(CfnReceiverTest, ASlowReceiverCannotHoldTheCallPastTheDeadline) {
  receiver.hold();
  aws::CallContext short_call{Deadline::after(std::chrono::milliseconds(300)), {}};
  const auto start = Clock::now();
  try {
    responder()->send(receiver.url(), body(), short_call);
    FAIL() << "a held answer was taken for success";
  } catch (const Error& e) {
    EXPECT_THAT(e.name(), ::testing::AnyOf(std::string(error_names::kDeadlineExceeded),
                                           std::string(error_names::kNetworkError)));
  }
  // Without the deadline the call would wait until the receiver is released; the slack is for a
  // loaded machine, not a speed target.
  EXPECT_LT(Clock::now() - start, std::chrono::milliseconds(300 + 5000));
  receiver.release();
  EXPECT_TRUE(receiver.wait_for(1));
}

// Custom resources over a fake Data API and state table, answering through the real client.
struct CustomResourcesThroughTheRealClient : CfnReceiverTest {
  static tasker::Config config_for_cluster() {
    tasker::Config config;
    config.target = {"cluster-1", "", "dev", "admin", ""};
    return config;
  }
  tasker::Config config = config_for_cluster();
  std::shared_ptr<testing::FakeRedshiftData> redshift =
      std::make_shared<testing::FakeRedshiftData>();
  std::shared_ptr<testing::MemoryStateTable> state = std::make_shared<testing::MemoryStateTable>();
  tasker::Launcher launcher{config, redshift, state};
  tasker::CustomResources resources{config, launcher, responder(), state};
};

TEST_F(CustomResourcesThroughTheRealClient, AnswerCreates) {
  Json request = {{"RequestType", "Create"},
                  {"ResponseURL", receiver.url()},
                  {"StackId", kRequest["StackId"]},
                  {"RequestId", kRequest["RequestId"]},
                  {"LogicalResourceId", "EtlUser"},
                  {"ResourceType", "Custom::RedshiftUser"},
                  {"ResourceProperties", {{"username", "etl_loader"}, {"connection_limit", "3"}}}};

  // Answered when the statement completes.
  ASSERT_EQ(resources.handle(request, context)["Status"], "STARTED");
  EXPECT_TRUE(receiver.received().empty());
  auto records = state->records();
  ASSERT_EQ(records.size(), 1u);
  tasker::Outcome outcome;
  outcome.status = services::StatementStatus::kFinished;
  outcome.statement_id = records[0].statement_id;
  outcome.statement_name = records[0].key.statement_name();
  resources.respond_completion(records[0].waiter.cloudformation, outcome, context);

  // Answered at once: the properties are wrong.
  request["RequestId"] = "b2";
  request["ResourceProperties"]["username"] = "Etl-Loader";
  EXPECT_EQ(resources.handle(request, context)["Status"], "FAILED");

  auto received = receiver.received();
  ASSERT_EQ(received.size(), 2u);
  for (const auto& r : received) EXPECT_THAT(r.problems, IsEmpty()) << r.body;
  EXPECT_THAT(received[0].body, HasSubstr("\"Status\":\"SUCCESS\""));
  EXPECT_THAT(received[1].body, HasSubstr("\"Status\":\"FAILED\""));
  EXPECT_THAT(received[1].body, HasSubstr("lowercase"));
}

TEST_F(CustomResourcesThroughTheRealClient, AnswerTheRollbackOfAFailedUserUpdateWithoutSql) {
  Json update = {{"RequestType", "Update"},
                 {"ResponseURL", receiver.url()},
                 {"StackId", kRequest["StackId"]},
                 {"RequestId", "update-1"},
                 {"LogicalResourceId", "EtlUser"},
                 {"PhysicalResourceId", "EtlUser:0123456789abcdef"},
                 {"ResourceType", "Custom::RedshiftUser"},
                 {"ResourceProperties", {{"username", "etl_writer"}}},
                 {"OldResourceProperties", {{"username", "etl_loader"}}}};
  ASSERT_EQ(resources.handle(update, context)["Status"], "STARTED");
  auto records = state->records();
  ASSERT_EQ(records.size(), 1u);
  tasker::Outcome outcome;
  outcome.status = services::StatementStatus::kFailed;
  outcome.statement_id = records[0].statement_id;
  outcome.statement_name = records[0].key.statement_name();
  outcome.error = "ERROR: user \"etl_writer\" already exists";
  resources.respond_completion(records[0].waiter.cloudformation, outcome, context);

  Json rollback = update;
  rollback["RequestId"] = "rollback-1";
  rollback["ResourceProperties"] = update["OldResourceProperties"];
  rollback["OldResourceProperties"] = update["ResourceProperties"];
  EXPECT_EQ(resources.handle(rollback, context)["Status"], "SUCCESS");
  EXPECT_EQ(redshift->executed().size(), 1u) << "the rollback ran SQL";

  auto received = receiver.received();
  ASSERT_EQ(received.size(), 2u);
  for (const auto& r : received) EXPECT_THAT(r.problems, IsEmpty()) << r.body;
  EXPECT_THAT(received[0].body, HasSubstr("\"Status\":\"FAILED\""));
  EXPECT_THAT(received[1].body, HasSubstr("\"Status\":\"SUCCESS\""));
  EXPECT_THAT(received[1].body, HasSubstr("\"RequestId\":\"rollback-1\""));
  EXPECT_THAT(received[1].body, HasSubstr("\"PhysicalResourceId\":\"EtlUser:0123456789abcdef\""));
}

TEST(CfnResponseProblems, FindWhatCloudFormationWouldReject) {
  const std::string good = tasker::cfn_response_body(kRequest, false, "why", "X:1");
  EXPECT_THAT(testing::cfn_response_problems("PUT", "", good), IsEmpty());
  EXPECT_THAT(testing::cfn_response_problems("POST", "", good), Not(IsEmpty()));
  EXPECT_THAT(testing::cfn_response_problems("PUT", "application/x-www-form-urlencoded", good),
              Not(IsEmpty()));
  EXPECT_THAT(testing::cfn_response_problems("PUT", "", "{"), Not(IsEmpty()));
  Json no_reason = Json::parse(good);
  no_reason.erase("Reason");
  EXPECT_THAT(testing::cfn_response_problems("PUT", "", no_reason.dump()), Not(IsEmpty()));
  Json big = Json::parse(good);
  big["Reason"] = std::string(5000, 'r');
  EXPECT_THAT(testing::cfn_response_problems("PUT", "", big.dump()), Not(IsEmpty()));
}

}  // namespace
}  // namespace rstasker
