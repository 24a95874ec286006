// Our SigV4 signing against a server that checks it: moto with signature checking accepts what
// JsonClient signs with the right key and refuses the same calls signed with a wrong one.
#include <gtest/gtest.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <string>

#include "rstasker/aws/endpoints.hpp"
#include "rstasker/aws/http.hpp"
#include "rstasker/aws/json_client.hpp"
#include "rstasker/common/error.hpp"
#include "support/moto_server.hpp"

namespace rstasker::testing {
namespace {

constexpr const char* kRoleArn = "arn:aws:iam::123456789012:role/x";

// For the test report (ctest --output-junit / --gtest_output): how long moto took to start.
long elapsed_ms(std::chrono::steady_clock::time_point since) {
  return static_cast<long>(std::chrono::duration_cast<std::chrono::milliseconds>(
                               std::chrono::steady_clock::now() - since)
                               .count());
}

class MotoAuthTest : public ::testing::Test {
 protected:
  // One server for the suite: starting moto costs about a second.
  static void SetUpTestSuite() {
    if (MotoServer::unavailable_reason()) return;  // each test skips (or fails) in SetUp
    try {
      auto start = std::chrono::steady_clock::now();
      moto_ = std::make_unique<MotoServer>(MotoOptions{.signature_checking = true});
      RecordProperty("moto_startup_ms", static_cast<int>(elapsed_ms(start)));
      transport_ = aws::make_curl_transport();
    } catch (const std::exception& e) {
      start_error_ = e.what();
    }
  }
  static void TearDownTestSuite() {
    transport_.reset();
    moto_.reset();
  }
  void SetUp() override {
    RSTASKER_SKIP_IF_UNAVAILABLE(MotoServer::unavailable_reason());
    ASSERT_NE(moto_, nullptr) << "moto did not start: " << start_error_;
  }

  static aws::JsonClient client(const aws::JsonProtocol& protocol, const aws::ServiceSpec& spec,
                                const aws::Credentials& credentials) {
    // No retries: a refused signature must surface as it is.
    return aws::JsonClient(protocol, aws::resolve_endpoint(spec, moto_->region(), moto_->env()),
                           credentials, transport_, aws::RetryPolicy{.max_attempts = 1});
  }
  static aws::JsonClient dynamodb(const aws::Credentials& credentials) {
    return client(aws::protocol::kDynamoDb, aws::service::kDynamoDb, credentials);
  }
  static aws::JsonClient step_functions(const aws::Credentials& credentials) {
    return client(aws::protocol::kStepFunctions, aws::service::kStepFunctions, credentials);
  }
  static aws::Credentials with_wrong_secret(aws::Credentials credentials) {
    credentials.secret_access_key = "not-" + credentials.secret_access_key;
    return credentials;
  }

  // Calls and returns the Error it must throw.
  static Error refusal(const aws::JsonClient& client, std::string_view operation,
                       const Json& request) {
    try {
      Json answer = client.call(operation, request, {});
      ADD_FAILURE() << operation << " was accepted: " << answer.dump();
    } catch (const Error& e) {
      return e;
    }
    return Error("NoError", "");
  }

  static bool contains(const Json& list, const std::string& value) {
    return std::find(list.begin(), list.end(), Json(value)) != list.end();
  }

  static inline std::unique_ptr<MotoServer> moto_;
  static inline std::shared_ptr<aws::HttpTransport> transport_;
  static inline std::string start_error_;
};

const Json kCreateTable = {
    {"TableName", "signed"},
    {"AttributeDefinitions", {{{"AttributeName", "pk"}, {"AttributeType", "S"}}}},
    {"KeySchema", {{{"AttributeName", "pk"}, {"KeyType", "HASH"}}}},
    {"BillingMode", "PAY_PER_REQUEST"}};

Json pass_machine(const std::string& name) {
  return {{"name", name},
          {"definition", R"({"StartAt":"P","States":{"P":{"Type":"Pass","End":true}}})"},
          {"roleArn", kRoleArn}};
}

TEST_F(MotoAuthTest, AcceptsDynamoDbCallsSignedWithTheKey) {
  auto ddb = dynamodb(moto_->credentials());
  ddb.call("CreateTable", kCreateTable, {});
  Json tables = ddb.call("ListTables", Json::object(), {});
  EXPECT_TRUE(contains(tables.at("TableNames"), "signed")) << tables.dump();
}

TEST_F(MotoAuthTest, AcceptsStepFunctionsCallsSignedWithTheKey) {
  auto sfn = step_functions(moto_->credentials());
  std::string arn = sfn.call("CreateStateMachine", pass_machine("signed"), {})
                        .at("stateMachineArn")
                        .get<std::string>();
  Json machines = sfn.call("ListStateMachines", Json::object(), {}).at("stateMachines");
  EXPECT_TRUE(std::any_of(machines.begin(), machines.end(), [&](const Json& m) {
    return m.at("stateMachineArn") == arn;
  })) << machines.dump();
}

TEST_F(MotoAuthTest, RefusesDynamoDbCallsSignedWithAWrongSecret) {
  auto ddb = dynamodb(with_wrong_secret(moto_->credentials()));
  Error error = refusal(ddb, "ListTables", Json::object());
  EXPECT_EQ(error.name(), "SignatureDoesNotMatch") << error.message();
  EXPECT_EQ(error.http_status(), 403);
  EXPECT_FALSE(error.retryable());

  Json create = kCreateTable;
  create["TableName"] = "forged";
  EXPECT_EQ(refusal(ddb, "CreateTable", create).name(), "SignatureDoesNotMatch");
  Json tables = dynamodb(moto_->credentials()).call("ListTables", Json::object(), {});
  EXPECT_FALSE(contains(tables.at("TableNames"), "forged")) << tables.dump();
}

TEST_F(MotoAuthTest, RefusesStepFunctionsCallsSignedWithAWrongSecret) {
  auto sfn = step_functions(with_wrong_secret(moto_->credentials()));
  Error error = refusal(sfn, "CreateStateMachine", pass_machine("forged"));
  EXPECT_EQ(error.name(), "SignatureDoesNotMatch") << error.message();
  EXPECT_EQ(error.http_status(), 403);
  error = refusal(sfn, "ListStateMachines", Json::object());
  EXPECT_EQ(error.name(), "SignatureDoesNotMatch") << error.message();
  EXPECT_EQ(error.http_status(), 403);
}

TEST_F(MotoAuthTest, RefusesAnUnknownAccessKey) {
  aws::Credentials stranger{"AKIAIOSFODNN7EXAMPLE", moto_->credentials().secret_access_key, ""};
  Error error = refusal(dynamodb(stranger), "ListTables", Json::object());
  EXPECT_EQ(error.name(), "InvalidClientTokenId") << error.message();
  EXPECT_EQ(error.http_status(), 403);
}

// Lambda hands functions temporary credentials with a session token. Moto recognises those of
// AssumeRole (not of GetSessionToken), so the test user assumes an allow-all role.
TEST_F(MotoAuthTest, AcceptsSessionCredentialsOnlyWithTheirToken) {
  const std::string version = "2010-05-08";
  moto_->query("iam", {{"Action", "CreateRole"},
                       {"RoleName", "tasker"},
                       {"AssumeRolePolicyDocument",
                        R"({"Version":"2012-10-17","Statement":[{"Effect":"Allow",)"
                        R"("Principal":{"AWS":"*"},"Action":"sts:AssumeRole"}]})"},
                       {"Version", version}});
  moto_->query("iam", {{"Action", "PutRolePolicy"},
                       {"RoleName", "tasker"},
                       {"PolicyName", "allow-everything"},
                       {"PolicyDocument", R"({"Version":"2012-10-17","Statement":[{"Effect":)"
                                          R"("Allow","Action":"*","Resource":"*"}]})"},
                       {"Version", version}});
  std::string assumed = moto_->query("sts", {{"Action", "AssumeRole"},
                                             {"RoleArn", "arn:aws:iam::123456789012:role/tasker"},
                                             {"RoleSessionName", "moto-auth-test"},
                                             {"Version", "2011-06-15"}});
  aws::Credentials session{aws::xml_element(assumed, "AccessKeyId"),
                           aws::xml_element(assumed, "SecretAccessKey"),
                           aws::xml_element(assumed, "SessionToken")};
  ASSERT_FALSE(session.session_token.empty()) << assumed;

  EXPECT_NO_THROW(dynamodb(session).call("ListTables", Json::object(), {}));
  EXPECT_NO_THROW(step_functions(session).call("ListStateMachines", Json::object(), {}));

  Error error = refusal(dynamodb(with_wrong_secret(session)), "ListTables", Json::object());
  EXPECT_EQ(error.name(), "SignatureDoesNotMatch") << error.message();
  EXPECT_EQ(error.http_status(), 403);

  aws::Credentials wrong_token = session;
  wrong_token.session_token = "not-the-token";
  error = refusal(dynamodb(wrong_token), "ListTables", Json::object());
  EXPECT_EQ(error.name(), "InvalidClientTokenId") << error.message();
  EXPECT_EQ(error.http_status(), 403);
}

}  // namespace
}  // namespace rstasker::testing
