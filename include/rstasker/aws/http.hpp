// HTTP requests and responses, and the transport that carries them (libcurl in production; tests
// substitute their own). Knows nothing of AWS beyond what TLS and connection reuse need.
#pragma once

#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "rstasker/common/deadline.hpp"

namespace rstasker::aws {

using Headers = std::vector<std::pair<std::string, std::string>>;

struct HttpRequest {
  std::string method = "POST";
  // Absolute URL: scheme://host[:port]/path[?query]. The path and query are sent as given
  // (already percent-encoded by the caller).
  std::string url;
  Headers headers;
  std::string body;

  // The first header with this name (case-insensitive), or nullptr.
  const std::string* header(std::string_view name) const;
  // Replaces every header of this name (case-insensitive) with one of the given value.
  void set_header(std::string_view name, std::string value);
};

struct HttpResponse {
  long status = 0;
  Headers headers;  // names as received
  std::string body;

  // The first header with this name (case-insensitive), or "" when absent.
  std::string header(std::string_view name) const;
};

// Carries one request to its server. Implementations are thread-safe.
class HttpTransport {
 public:
  virtual ~HttpTransport() = default;
  // Sends `request` and returns the server's response, whatever its status. Throws Error named
  // NetworkError (retryable) when no response arrives — refused, reset, TLS failure, timeout — and
  // DeadlineExceeded when `deadline` has already passed or passes during the exchange.
  virtual HttpResponse send(const HttpRequest& request, const Deadline& deadline) = 0;
};

struct CurlOptions {
  std::chrono::milliseconds connect_timeout{3000};
  // Upper bound of one exchange; the call's deadline shortens it further. Zero means only the
  // deadline bounds it (the Lambda Runtime API's long poll needs this).
  std::chrono::milliseconds request_timeout{60000};
  // CA bundle for https; empty means: AWS_CA_BUNDLE, else the first of the Debian and Amazon
  // Linux bundle paths that exists, else libcurl's built-in default.
  std::string ca_bundle;
  // Largest response body accepted; a larger one fails the exchange with NetworkError (not
  // retried). 0: response_cap_for_memory of the function's memory
  // (AWS_LAMBDA_FUNCTION_MEMORY_SIZE).
  std::size_t max_response_bytes = 0;
};

// The largest AWS answer worth reading in a function of `memory_mib` MiB. Parsed into JSON, an
// answer takes several times its size in memory (a 64 MiB answer can exceed 256 MB), so the cap
// is an eighth of the memory, from 4 MiB to 64 MiB; 64 MiB when the memory is unknown (0).
std::size_t response_cap_for_memory(std::size_t memory_mib);

// libcurl transport. Keeps a pool of connections per scheme://host:port: a connection opened by
// one request is reused by later ones, across Lambda invocations, and concurrent requests to the
// same host each get their own connection. TLS peer and host verification are always on.
// libcurl itself is loaded at the first request (see http.cpp).
std::unique_ptr<HttpTransport> make_curl_transport(CurlOptions options = {});

// Plain-HTTP/1.1 transport over a socket, without libcurl, for the Lambda Runtime API on the
// loopback interface (cheap to start: nothing to load). One kept-alive connection per origin;
// requests to an origin are serialised. https URLs are refused with InternalError. Deadlines as
// for HttpTransport; an unbounded deadline waits for the answer as long as it takes.
std::unique_ptr<HttpTransport> make_plain_http_transport(std::size_t max_response_bytes = 64u
                                                                                          << 20);

// Throws Error(InternalError) naming the header (never quoting its value) when a header name or
// value holds CR, LF or NUL: sent as given, such a value would end the header early and smuggle
// a header or a request of its own. Both transports check every request before sending it.
void check_header_fields(const HttpRequest& request);

// The CA bundle make_curl_transport would use with default options ("" for libcurl's default).
std::string default_ca_bundle();

// Splits "scheme://authority/path?query" into its parts; throws Error(InternalError) for a URL
// without a scheme or authority. `path` is "/" when absent; `query` excludes the '?'.
struct UrlParts {
  std::string scheme;
  std::string authority;  // host[:port]
  std::string path;
  std::string query;
};
UrlParts split_url(std::string_view url);

}  // namespace rstasker::aws
