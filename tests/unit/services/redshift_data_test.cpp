// The Redshift Data client over a transport that plays AWS's part, lost replies included.
#include "rstasker/services/redshift_data.hpp"

#include <gtest/gtest.h>

#include <functional>
#include <map>
#include <string>
#include <vector>

#include "rstasker/common/error.hpp"

namespace rstasker::services {
namespace {

// Answers each request with `answer(operation, attempt of that operation)`.
class PlayedTransport : public aws::HttpTransport {
 public:
  using Answer = std::function<aws::HttpResponse(const std::string& operation, int attempt)>;
  explicit PlayedTransport(Answer answer) : answer_(std::move(answer)) {}

  aws::HttpResponse send(const aws::HttpRequest& request, const Deadline&) override {
    std::string target = *request.header("X-Amz-Target");
    std::string operation = target.substr(target.find('.') + 1);
    operations.push_back(operation);
    return answer_(operation, ++attempts_[operation]);
  }

  std::vector<std::string> operations;

 private:
  Answer answer_;
  std::map<std::string, int> attempts_;
};

aws::HttpResponse json(long status, const Json& body) {
  return {status, {}, dump_json(body)};
}

const aws::HttpResponse kAlreadyAborted = json(
    400, {{"__type", "ValidationException"},
          {"message", "Could not cancel a query that is already in ABORTED state with ID: s1"}});

std::unique_ptr<RedshiftData> client_over(std::shared_ptr<PlayedTransport> transport) {
  auto client = std::make_shared<aws::JsonClient>(
      aws::protocol::kRedshiftData,
      aws::Endpoint{"http://127.0.0.1:1", "us-east-1", "redshift-data"},
      aws::Credentials{"AKID", "SECRET", ""}, std::move(transport),
      aws::RetryPolicy{4, std::chrono::milliseconds(1), std::chrono::milliseconds(2)});
  return make_redshift_data(client);
}

const aws::CallContext kContext{Deadline::after(std::chrono::seconds(10)), ""};

// The first cancel is applied and its reply lost (a 500 after the statement was aborted); the
// retry meets the ABORTED statement. That is our own cancel, not a refusal.
TEST(RedshiftDataCancel, ACancelWhoseReplyWasLostIsDone) {
  auto transport = std::make_shared<PlayedTransport>([](const std::string& op, int attempt) {
    if (op == "CancelStatement") {
      return attempt == 1 ? json(500, {{"__type", "InternalServerException"}, {"message", "lost"}})
                          : kAlreadyAborted;
    }
    return json(200, {{"Id", "s1"}, {"Status", "ABORTED"}});
  });
  EXPECT_EQ(client_over(transport)->cancel_statement("s1", kContext), Json({{"Status", true}}));
  EXPECT_EQ(transport->operations,
            (std::vector<std::string>{"CancelStatement", "CancelStatement", "DescribeStatement"}));
}

// Without an attempt that may have been applied, the refusal is the Data API's answer.
TEST(RedshiftDataCancel, ARefusedFirstCancelIsThrown) {
  auto transport =
      std::make_shared<PlayedTransport>([](const std::string&, int) { return kAlreadyAborted; });
  try {
    client_over(transport)->cancel_statement("s1", kContext);
    FAIL() << "the refusal was swallowed";
  } catch (const Error& e) {
    EXPECT_EQ(e.name(), "ValidationException");
  }
  EXPECT_EQ(transport->operations, std::vector<std::string>{"CancelStatement"});
}

// A lost reply whose retry finds the statement FINISHED: the cancel did not happen.
TEST(RedshiftDataCancel, ALostReplyOverAFinishedStatementIsStillARefusal) {
  auto transport = std::make_shared<PlayedTransport>([](const std::string& op, int attempt) {
    if (op == "CancelStatement") {
      return attempt == 1 ? json(503, {{"__type", "ServiceUnavailable"}, {"message", "lost"}})
                          : json(400, {{"__type", "ValidationException"},
                                       {"message",
                                        "Could not cancel a query that is already in FINISHED "
                                        "state with ID: s1"}});
    }
    return json(200, {{"Id", "s1"}, {"Status", "FINISHED"}});
  });
  EXPECT_THROW(client_over(transport)->cancel_statement("s1", kContext), Error);
}

}  // namespace
}  // namespace rstasker::services
