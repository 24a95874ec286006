// The two HTTP transports against a real local server (cpp-httplib): libcurl for AWS, the plain
// socket client for the Lambda Runtime API. Bodies, headers, connection reuse, deadlines, limits.
#include <gtest/gtest.h>
#include <httplib.h>

#include <atomic>
#include <set>
#include <thread>

#include "rstasker/aws/http.hpp"
#include "rstasker/common/error.hpp"

namespace rstasker::aws {
namespace {

// A server on a free loopback port that records the client ports it saw (one per connection).
class Server {
 public:
  explicit Server(int port = 0) {
    server_.Post("/echo", [this](const httplib::Request& req, httplib::Response& res) {
      note(req);
      res.set_header("X-Seen-Header", req.get_header_value("X-Custom"));
      res.set_content(req.method + ":" + req.body, "text/plain");
    });
    server_.Get("/echo", [this](const httplib::Request& req, httplib::Response& res) {
      note(req);
      res.set_content("get:" + req.get_param_value("q"), "text/plain");
    });
    server_.Put("/echo", [this](const httplib::Request& req, httplib::Response& res) {
      note(req);
      res.set_content("put:" + req.body, "text/plain");
    });
    server_.Get("/slow", [](const httplib::Request&, httplib::Response& res) {
      std::this_thread::sleep_for(std::chrono::milliseconds(1500));
      res.set_content("late", "text/plain");
    });
    server_.Get("/big", [](const httplib::Request&, httplib::Response& res) {
      res.set_content(std::string(200000, 'x'), "text/plain");
    });
    server_.Get("/chunked", [](const httplib::Request&, httplib::Response& res) {
      res.set_chunked_content_provider(
          "text/plain", [](std::size_t offset, httplib::DataSink& sink) {
            if (offset < 30000) {
              std::string part(10000, static_cast<char>('a' + offset / 10000));
              sink.write(part.data(), part.size());
            } else {
              sink.done();
            }
            return true;
          });
    });
    server_.Get("/status/503", [](const httplib::Request&, httplib::Response& res) {
      res.status = 503;
      res.set_content(R"({"message":"busy"})", "application/json");
    });
    port_ = port == 0 ? server_.bind_to_any_port("127.0.0.1") : port;
    if (port != 0 && !server_.bind_to_port("127.0.0.1", port)) throw std::runtime_error("bind");
    // A client's idle kept-alive connection holds stop() for this long.
    server_.set_keep_alive_timeout(1);
    thread_ = std::thread([this] { server_.listen_after_bind(); });
    // stop() before the accept loop runs is lost in cpp-httplib 0.11: wait until it runs.
    while (!server_.is_running()) std::this_thread::yield();
  }
  ~Server() {
    server_.stop();
    thread_.join();
  }
  std::string url(const std::string& path) const {
    return "http://127.0.0.1:" + std::to_string(port_) + path;
  }
  int port() const { return port_; }
  std::size_t connections() const {
    std::lock_guard lock(mutex_);
    return ports_.size();
  }

 private:
  void note(const httplib::Request& req) {
    std::lock_guard lock(mutex_);
    ports_.insert(req.remote_port);
  }
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
  mutable std::mutex mutex_;
  std::set<int> ports_;
};

Deadline soon() {
  return Deadline::after(std::chrono::seconds(10));
}

class Transports : public ::testing::TestWithParam<std::string> {
 protected:
  std::unique_ptr<HttpTransport> make(std::size_t max_bytes = 64u << 20) {
    if (GetParam() == "curl") {
      CurlOptions options;
      options.max_response_bytes = max_bytes;
      return make_curl_transport(options);
    }
    return make_plain_http_transport(max_bytes);
  }
};

TEST_P(Transports, SendsMethodHeadersAndBodyAndReadsTheAnswer) {
  Server server;
  auto transport = make();
  HttpRequest post{"POST", server.url("/echo"), {{"X-Custom", "value 1"}}, "payload"};
  HttpResponse r = transport->send(post, soon());
  EXPECT_EQ(r.status, 200);
  EXPECT_EQ(r.body, "POST:payload");
  EXPECT_EQ(r.header("x-seen-header"), "value 1");
  EXPECT_EQ(r.header("Content-Type"), "text/plain");

  HttpRequest get{"GET", server.url("/echo?q=a%20b"), {}, ""};
  EXPECT_EQ(transport->send(get, soon()).body, "get:a b");
  HttpRequest put{"PUT", server.url("/echo"), {}, "x"};
  EXPECT_EQ(transport->send(put, soon()).body, "put:x");
  HttpRequest status{"GET", server.url("/status/503"), {}, ""};
  HttpResponse busy = transport->send(status, soon());
  EXPECT_EQ(busy.status, 503) << "a status is an answer, not a transport error";
  EXPECT_EQ(busy.body, R"({"message":"busy"})");
}

TEST_P(Transports, ReusesOneConnectionForSequentialRequests) {
  Server server;
  auto transport = make();
  for (int i = 0; i < 5; ++i) {
    HttpRequest post{"POST", server.url("/echo"), {}, std::to_string(i)};
    EXPECT_EQ(transport->send(post, soon()).body, "POST:" + std::to_string(i));
  }
  EXPECT_EQ(server.connections(), 1u);
}

TEST_P(Transports, ReconnectsWhenTheKeptConnectionDied) {
  auto transport = make();
  int port = 0;
  {
    Server first;
    port = first.port();
    HttpRequest post{"POST", first.url("/echo"), {}, "one"};
    EXPECT_EQ(transport->send(post, soon()).body, "POST:one");
  }  // the server goes, and with it the kept-alive connection
  Server second(port);
  HttpRequest post{"POST", second.url("/echo"), {}, "two"};
  EXPECT_EQ(transport->send(post, soon()).body, "POST:two");
}

TEST_P(Transports, ReadsChunkedBodies) {
  Server server;
  auto transport = make();
  HttpRequest get{"GET", server.url("/chunked"), {}, ""};
  HttpResponse r = transport->send(get, soon());
  ASSERT_EQ(r.body.size(), 30000u);
  EXPECT_EQ(r.body.substr(0, 3), "aaa");
  EXPECT_EQ(r.body.substr(29997), "ccc");
}

TEST_P(Transports, TheDeadlineBoundsTheWait) {
  Server server;
  auto transport = make();
  HttpRequest get{"GET", server.url("/slow"), {}, ""};
  auto start = std::chrono::steady_clock::now();
  try {
    transport->send(get, Deadline::after(std::chrono::milliseconds(300)));
    ADD_FAILURE() << "answered after the deadline";
  } catch (const Error& e) {
    EXPECT_EQ(e.name(), "DeadlineExceeded") << e.message();
  }
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(1200));
}

TEST_P(Transports, RefusesBodiesOverTheLimit) {
  Server server;
  auto transport = make(100000);
  HttpRequest get{"GET", server.url("/big"), {}, ""};
  try {
    transport->send(get, soon());
    ADD_FAILURE() << "a 200 kB body passed a 100 kB limit";
  } catch (const Error& e) {
    EXPECT_EQ(e.name(), "NetworkError");
    EXPECT_NE(e.message().find("exceeds"), std::string::npos) << e.message();
  }
}

TEST_P(Transports, ARefusedConnectionIsARetryableNetworkError) {
  int port = 0;
  {
    Server gone;
    port = gone.port();
  }
  auto transport = make();
  HttpRequest get{"GET", "http://127.0.0.1:" + std::to_string(port) + "/", {}, ""};
  try {
    transport->send(get, soon());
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_EQ(e.name(), "NetworkError");
    EXPECT_TRUE(e.retryable());
  }
}

INSTANTIATE_TEST_SUITE_P(Both, Transports, ::testing::Values("curl", "plain"));

TEST(PlainTransport, RefusesHttps) {
  auto transport = make_plain_http_transport();
  HttpRequest get{"GET", "https://example.com/", {}, ""};
  EXPECT_THROW(transport->send(get, soon()), Error);
}

}  // namespace
}  // namespace rstasker::aws
