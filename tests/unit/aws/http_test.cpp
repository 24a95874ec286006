// The curl transport's behaviour that needs no server: deadlines, refused connections.
#include "rstasker/aws/http.hpp"

#include <gtest/gtest.h>

#include <vector>

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

// A host name that does not resolve is a wrong endpoint, not a passing fault: retrying it would
// only spend the invocation's time.
TEST(CurlTransport, AnUnknownHostIsNotRetryable) {
  auto transport = make_curl_transport();
  HttpRequest request;
  request.url = "http://no-such-host.invalid/";
  try {
    transport->send(request, Deadline::after(std::chrono::seconds(20)));
    ADD_FAILURE() << "an unknown host answered";
  } catch (const Error& e) {
    EXPECT_EQ(e.name(), "NetworkError");
    EXPECT_FALSE(e.retryable()) << e.message();
  }
}

// A line break in a header value would end the header and let the rest pass as a header (or a
// request) of its own; both transports refuse it before anything is sent.
TEST(Transports, RefuseHeaderValuesWithLineBreaks) {
  const std::string url =
      "http://127.0.0.1:" + std::to_string(rstasker::testing::free_tcp_port()) + "/";
  for (auto* make :
       {+[] { return make_curl_transport(); }, +[] { return make_plain_http_transport(); }}) {
    for (const std::string& bad : std::vector<std::string>{"Root=1-a\r\nX-Injected: 1", "a\nb",
                                                           "a\rb", std::string("a\0b", 3)}) {
      HttpRequest request;
      request.method = "GET";
      request.url = url;
      request.headers = {{"X-Amzn-Trace-Id", bad}};
      try {
        make()->send(request, Deadline::after(std::chrono::seconds(5)));
        ADD_FAILURE() << "sent";
      } catch (const Error& e) {
        EXPECT_EQ(e.name(), "InternalError") << e.message();
        EXPECT_NE(e.message().find("X-Amzn-Trace-Id"), std::string::npos) << e.message();
        EXPECT_EQ(e.message().find("Injected"), std::string::npos) << e.message();
      }
    }
  }
}

TEST(ResponseCap, FitsTheFunctionsMemory) {
  constexpr std::size_t kMiB = std::size_t{1} << 20;
  EXPECT_EQ(response_cap_for_memory(128), 16 * kMiB);
  EXPECT_EQ(response_cap_for_memory(256), 32 * kMiB);
  EXPECT_EQ(response_cap_for_memory(10240), 64 * kMiB);
  EXPECT_EQ(response_cap_for_memory(1), 4 * kMiB);
  EXPECT_EQ(response_cap_for_memory(0), 64 * kMiB);
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
