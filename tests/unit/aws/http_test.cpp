// The curl transport's behaviour that needs no server: deadlines, refused connections.
#include "rstasker/aws/http.hpp"

#include <gtest/gtest.h>

#include "rstasker/common/error.hpp"
#include "support/process.hpp"

namespace rstasker::aws {
namespace {

TEST(CurlTransport, ExpiredDeadlineFailsBeforeSending) {
  auto transport = make_curl_transport();
  HttpRequest request;
  request.url = "http://127.0.0.1:9/";
  try {
    transport->send(request, Deadline::after(std::chrono::milliseconds(-1)));
    ADD_FAILURE() << "sent after the deadline";
  } catch (const Error& e) {
    EXPECT_EQ(e.name(), "DeadlineExceeded");
    EXPECT_FALSE(e.retryable());
  }
}

TEST(CurlTransport, RefusedConnectionIsARetryableNetworkError) {
  auto transport = make_curl_transport();
  HttpRequest request;
  request.url = "http://127.0.0.1:" + std::to_string(rstasker::testing::free_tcp_port()) + "/";
  try {
    transport->send(request, Deadline::after(std::chrono::seconds(5)));
    ADD_FAILURE() << "a closed port answered";
  } catch (const Error& e) {
    EXPECT_EQ(e.name(), "NetworkError");
    EXPECT_TRUE(e.retryable());
    EXPECT_NE(e.message().find("127.0.0.1"), std::string::npos) << e.message();
  }
}

TEST(CaBundle, PrefersAwsCaBundle) {
  setenv("AWS_CA_BUNDLE", "/custom/bundle.pem", 1);
  EXPECT_EQ(default_ca_bundle(), "/custom/bundle.pem");
  unsetenv("AWS_CA_BUNDLE");
  std::string found = default_ca_bundle();
  EXPECT_TRUE(found.empty() || found == "/etc/ssl/certs/ca-certificates.crt" ||
              found == "/etc/pki/tls/certs/ca-bundle.crt")
      << found;
}

}  // namespace
}  // namespace rstasker::aws
