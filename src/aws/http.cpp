// The libcurl transport: a pool of easy handles per origin, so connections are kept and reused
// for as long as the process (the Lambda sandbox) lives.
//
// libcurl is loaded with dlopen at the first request rather than linked: with its TLS, LDAP,
// Kerberos, SSH and RTMP dependencies it takes about 8 ms to map and initialise, which would
// otherwise be paid before the runtime asks Lambda for its first event, and is not paid at all
// by invocations that never call AWS (malformed events).
#include "rstasker/aws/http.hpp"

// Plain prototypes: the calls go through function pointers of these exact types.
#define CURL_DISABLE_TYPECHECK
#include <curl/curl.h>
#include <dlfcn.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include <algorithm>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>

#include "rstasker/common/error.hpp"
#include "rstasker/common/text.hpp"

namespace rstasker::aws {

namespace {

// The libcurl entry points the transport uses, resolved once.
struct CurlApi {
  decltype(&::curl_global_init) global_init;
  decltype(&::curl_easy_init) easy_init;
  decltype(&::curl_easy_cleanup) easy_cleanup;
  decltype(&::curl_easy_reset) easy_reset;
  decltype(&::curl_easy_setopt) easy_setopt;
  decltype(&::curl_easy_perform) easy_perform;
  decltype(&::curl_easy_getinfo) easy_getinfo;
  decltype(&::curl_easy_strerror) easy_strerror;
  decltype(&::curl_slist_append) slist_append;
  decltype(&::curl_slist_free_all) slist_free_all;
};

template <class F>
void resolve(void* library, const char* name, F& out) {
  out = reinterpret_cast<F>(dlsym(library, name));
  if (out == nullptr) {
    throw Error(error_names::kConfigurationError,
                std::string("libcurl.so.4 lacks ") + name + ": " + dlerror());
  }
}

// Loads and initialises libcurl on first use (thread-safe); throws ConfigurationError when the
// library is missing (the Lambda zip bundles it).
const CurlApi& curl() {
  static const CurlApi api = [] {
    void* library = dlopen("libcurl.so.4", RTLD_NOW | RTLD_LOCAL);
    if (library == nullptr) {
      throw Error(error_names::kConfigurationError,
                  std::string("cannot load libcurl: ") + dlerror());
    }
    CurlApi a{};
    resolve(library, "curl_global_init", a.global_init);
    resolve(library, "curl_easy_init", a.easy_init);
    resolve(library, "curl_easy_cleanup", a.easy_cleanup);
    resolve(library, "curl_easy_reset", a.easy_reset);
    resolve(library, "curl_easy_setopt", a.easy_setopt);
    resolve(library, "curl_easy_perform", a.easy_perform);
    resolve(library, "curl_easy_getinfo", a.easy_getinfo);
    resolve(library, "curl_easy_strerror", a.easy_strerror);
    resolve(library, "curl_slist_append", a.slist_append);
    resolve(library, "curl_slist_free_all", a.slist_free_all);
    // Once, before any handle exists: curl_global_init is not thread-safe.
    if (a.global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
      throw Error(error_names::kInternalError, "curl_global_init failed");
    }
    return a;
  }();
  return api;
}

bool file_exists(const char* path) {
  struct stat st {};
  return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

// Idle connections kept per origin; more concurrent requests than this still work, the extra
// handles are just closed when returned.
constexpr std::size_t kMaxIdlePerOrigin = 16;

struct CurlDeleter {
  void operator()(CURL* handle) const { curl().easy_cleanup(handle); }
};
using CurlHandle = std::unique_ptr<CURL, CurlDeleter>;

struct HeaderListDeleter {
  void operator()(curl_slist* list) const { curl().slist_free_all(list); }
};
using HeaderList = std::unique_ptr<curl_slist, HeaderListDeleter>;

struct Exchange {
  HttpResponse* response;
  std::size_t max_bytes;
  bool too_large = false;
  bool deadline_bounds_timeout = false;  // CURLOPT_TIMEOUT_MS is the invocation's time left
  char detail[CURL_ERROR_SIZE] = {};     // libcurl's own words on a failure (CURLOPT_ERRORBUFFER)
};

// Failures to verify the peer's certificate (an unknown CA, a wrong host name, a missing or
// unreadable CA bundle), as opposed to a network that may recover.
bool is_certificate_failure(CURLcode code) {
  return code == CURLE_PEER_FAILED_VERIFICATION || code == CURLE_SSL_CACERT_BADFILE ||
         code == CURLE_SSL_ISSUER_ERROR || code == CURLE_SSL_INVALIDCERTSTATUS ||
         code == CURLE_SSL_PINNEDPUBKEYNOTMATCH;
}

std::size_t on_body(char* data, std::size_t size, std::size_t count, void* user) {
  auto* exchange = static_cast<Exchange*>(user);
  std::size_t n = size * count;
  if (exchange->response->body.size() + n > exchange->max_bytes) {
    exchange->too_large = true;
    return 0;  // aborts the transfer with CURLE_WRITE_ERROR
  }
  exchange->response->body.append(data, n);
  return n;
}

std::size_t on_header(char* data, std::size_t size, std::size_t count, void* user) {
  auto* exchange = static_cast<Exchange*>(user);
  std::size_t n = size * count;
  std::string_view line(data, n);
  if (line.starts_with("HTTP/")) {
    exchange->response->headers.clear();  // a new response (after 100-continue or a redirect)
    return n;
  }
  auto colon = line.find(':');
  if (colon == std::string_view::npos) return n;
  auto trim = [](std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == '\r' || s.back() == '\n' || s.back() == ' ')) {
      s.remove_suffix(1);
    }
    return s;
  };
  exchange->response->headers.emplace_back(std::string(trim(line.substr(0, colon))),
                                           std::string(trim(line.substr(colon + 1))));
  return n;
}

// Whether a failed exchange may succeed when tried again. A certificate that does not verify or a
// host name that does not resolve is a configuration problem (a wrong endpoint or CA bundle):
// retrying it only spends the invocation's time.
bool is_transient(CURLcode code) {
  switch (code) {
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_PEER_FAILED_VERIFICATION:
    case CURLE_SSL_CACERT_BADFILE:
    case CURLE_SSL_CERTPROBLEM:
    case CURLE_SSL_ISSUER_ERROR:
    case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
    case CURLE_SSL_CRL_BADFILE:
    case CURLE_UNSUPPORTED_PROTOCOL:
    case CURLE_URL_MALFORMAT:
      return false;
    default:
      return true;
  }
}

class CurlTransport final : public HttpTransport {
 public:
  explicit CurlTransport(CurlOptions options) : options_(std::move(options)) {
    if (options_.ca_bundle.empty()) options_.ca_bundle = default_ca_bundle();
    if (options_.max_response_bytes == 0) {
      std::size_t memory_mib = 0;
      if (const char* memory = std::getenv("AWS_LAMBDA_FUNCTION_MEMORY_SIZE"); memory != nullptr) {
        std::from_chars(memory, memory + std::strlen(memory), memory_mib);
      }
      options_.max_response_bytes = response_cap_for_memory(memory_mib);
    }
  }

  HttpResponse send(const HttpRequest& request, const Deadline& deadline) override {
    if (deadline.expired()) {
      throw Error(error_names::kDeadlineExceeded,
                  "no time left in the invocation to call " + origin_of(request.url));
    }
    check_header_fields(request);
    std::string origin = origin_of(request.url);
    CurlHandle handle = acquire(origin);
    HttpResponse response;
    Exchange exchange{&response, options_.max_response_bytes};
    HeaderList headers = build_headers(request);
    configure(handle.get(), request, headers.get(), exchange, deadline);

    CURLcode code = curl().easy_perform(handle.get());
    curl().easy_setopt(handle.get(), CURLOPT_ERRORBUFFER, nullptr);  // `exchange` is going away
    if (code != CURLE_OK) {
      // A failed handle may hold a broken connection; do not return it to the pool.
      if (exchange.too_large) {
        throw Error(error_names::kNetworkError,
                    "response from " + origin + " exceeds " +
                        std::to_string(options_.max_response_bytes) + " bytes",
                    0, false);
      }
      // The time left reaches libcurl in whole milliseconds, so a time-out the deadline set
      // can fire a moment before `expired()` turns true.
      if (code == CURLE_OPERATION_TIMEDOUT &&
          (deadline.expired() || (exchange.deadline_bounds_timeout &&
                                  deadline.remaining() < std::chrono::milliseconds(50)))) {
        throw Error(error_names::kDeadlineExceeded,
                    "the invocation's deadline passed while calling " + origin);
      }
      if (is_certificate_failure(code)) {
        // Repeating cannot help: the CA bundle or the endpoint's certificate must change.
        throw Error(
            error_names::kConfigurationError,
            "the TLS certificate of " + origin + " was not verified with the CA bundle " +
                (options_.ca_bundle.empty() ? std::string("(none found)") : options_.ca_bundle) +
                ": " + (*exchange.detail ? exchange.detail : curl().easy_strerror(code)),
            0, false);
      }
      throw Error(error_names::kNetworkError,
                  std::string("request to ") + origin + " failed: " + curl().easy_strerror(code), 0,
                  is_transient(code));
    }
    curl().easy_getinfo(handle.get(), CURLINFO_RESPONSE_CODE, &response.status);
    release(origin, std::move(handle));
    return response;
  }

 private:
  struct Pool {
    std::mutex mutex;
    std::vector<CurlHandle> idle;
  };

  static std::string origin_of(const std::string& url) {
    UrlParts parts = split_url(url);
    return parts.scheme + "://" + parts.authority;
  }

  Pool& pool_for(const std::string& origin) {
    std::lock_guard lock(pools_mutex_);
    auto& pool = pools_[origin];
    if (!pool) pool = std::make_unique<Pool>();
    return *pool;
  }

  CurlHandle acquire(const std::string& origin) {
    Pool& pool = pool_for(origin);
    {
      std::lock_guard lock(pool.mutex);
      if (!pool.idle.empty()) {
        CurlHandle handle = std::move(pool.idle.back());
        pool.idle.pop_back();
        curl().easy_reset(handle.get());  // keeps the live connection, drops the options
        return handle;
      }
    }
    CurlHandle handle(curl().easy_init());
    if (!handle) throw Error(error_names::kInternalError, "curl_easy_init failed");
    return handle;
  }

  void release(const std::string& origin, CurlHandle handle) {
    Pool& pool = pool_for(origin);
    std::lock_guard lock(pool.mutex);
    if (pool.idle.size() < kMaxIdlePerOrigin) pool.idle.push_back(std::move(handle));
  }

  static HeaderList build_headers(const HttpRequest& request) {
    curl_slist* list = nullptr;
    auto append = [&list](const std::string& line) {
      curl_slist* next = curl().slist_append(list, line.c_str());
      if (next == nullptr) {
        curl().slist_free_all(list);
        throw Error(error_names::kInternalError, "out of memory building request headers");
      }
      list = next;
    };
    bool has_content_type = false;
    for (const auto& [name, value] : request.headers) {
      // libcurl drops "Name:" and sends an empty header for "Name;".
      append(value.empty() ? name + ";" : name + ": " + value);
      if (iequals(name, "content-type")) has_content_type = true;
    }
    // libcurl would add "Expect: 100-continue" (a round trip) and a form content type.
    append("Expect:");
    if (!has_content_type && request.method != "GET") append("Content-Type:");
    return HeaderList(list);
  }

  void configure(CURL* h, const HttpRequest& request, curl_slist* headers, Exchange& exchange,
                 const Deadline& deadline) const {
    curl().easy_setopt(h, CURLOPT_URL, request.url.c_str());
    curl().easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl().easy_setopt(h, CURLOPT_HTTPHEADER, headers);
    curl().easy_setopt(h, CURLOPT_WRITEFUNCTION, &on_body);
    curl().easy_setopt(h, CURLOPT_WRITEDATA, &exchange);
    curl().easy_setopt(h, CURLOPT_HEADERFUNCTION, &on_header);
    curl().easy_setopt(h, CURLOPT_HEADERDATA, &exchange);
    curl().easy_setopt(h, CURLOPT_ERRORBUFFER, exchange.detail);
    curl().easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
    curl().easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
    if (!options_.ca_bundle.empty())
      curl().easy_setopt(h, CURLOPT_CAINFO, options_.ca_bundle.c_str());
    curl().easy_setopt(h, CURLOPT_TCP_KEEPALIVE, 1L);
    curl().easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
    curl().easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                       static_cast<long>(options_.connect_timeout.count()));

    long timeout_ms = static_cast<long>(options_.request_timeout.count());
    if (!deadline.unbounded()) {
      long left = static_cast<long>(std::max<std::int64_t>(deadline.remaining().count(), 1));
      exchange.deadline_bounds_timeout = timeout_ms == 0 || left <= timeout_ms;
      timeout_ms = exchange.deadline_bounds_timeout ? left : timeout_ms;
    }
    curl().easy_setopt(h, CURLOPT_TIMEOUT_MS, timeout_ms);

    if (request.method == "GET") {
      curl().easy_setopt(h, CURLOPT_HTTPGET, 1L);
    } else if (request.method == "HEAD") {
      curl().easy_setopt(h, CURLOPT_NOBODY, 1L);  // the answer has headers only
    } else {
      if (request.method != "POST") {
        curl().easy_setopt(h, CURLOPT_CUSTOMREQUEST, request.method.c_str());
      }
      curl().easy_setopt(h, CURLOPT_POSTFIELDS, request.body.data());
      curl().easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE,
                         static_cast<curl_off_t>(request.body.size()));
    }
  }

  CurlOptions options_;
  std::mutex pools_mutex_;
  std::map<std::string, std::unique_ptr<Pool>> pools_;
};

}  // namespace

const std::string* HttpRequest::header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (iequals(key, name)) return &value;
  }
  return nullptr;
}

void HttpRequest::set_header(std::string_view name, std::string value) {
  std::erase_if(headers, [name](const auto& h) { return iequals(h.first, name); });
  headers.emplace_back(std::string(name), std::move(value));
}

std::string HttpResponse::header(std::string_view name) const {
  for (const auto& [key, value] : headers) {
    if (iequals(key, name)) return value;
  }
  return {};
}

std::size_t response_cap_for_memory(std::size_t memory_mib) {
  constexpr std::size_t kMiB = std::size_t{1} << 20;
  if (memory_mib == 0) return 64 * kMiB;
  return std::clamp(memory_mib * kMiB / 8, 4 * kMiB, 64 * kMiB);
}

void check_header_fields(const HttpRequest& request) {
  auto breaks_a_line = [](std::string_view text) {
    return text.find_first_of(std::string_view("\r\n\0", 3)) != std::string_view::npos;
  };
  for (const auto& [name, value] : request.headers) {
    if (breaks_a_line(name) || breaks_a_line(value)) {
      throw Error(error_names::kInternalError,
                  "refusing to send header '" + excerpt(name) +
                      "': its name or value holds a line break or NUL");
    }
  }
}

std::string default_ca_bundle() {
  if (const char* configured = std::getenv("AWS_CA_BUNDLE"); configured && *configured) {
    return configured;
  }
  // Debian/Ubuntu, then Amazon Linux / RHEL (the Lambda provided.al2023 image).
  for (const char* path :
       {"/etc/ssl/certs/ca-certificates.crt", "/etc/pki/tls/certs/ca-bundle.crt"}) {
    if (file_exists(path)) return path;
  }
  return {};
}

std::unique_ptr<HttpTransport> make_curl_transport(CurlOptions options) {
  return std::make_unique<CurlTransport>(std::move(options));
}

UrlParts split_url(std::string_view url) {
  auto scheme_end = url.find("://");
  if (scheme_end == std::string_view::npos || scheme_end == 0) {
    throw Error(error_names::kInternalError, "not an absolute URL: " + std::string(url));
  }
  UrlParts parts;
  parts.scheme = std::string(url.substr(0, scheme_end));
  std::string_view rest = url.substr(scheme_end + 3);
  auto path_start = rest.find_first_of("/?");
  parts.authority = std::string(rest.substr(0, path_start));
  if (parts.authority.empty()) {
    throw Error(error_names::kInternalError, "URL has no host: " + std::string(url));
  }
  std::string_view tail = path_start == std::string_view::npos ? "" : rest.substr(path_start);
  auto query_start = tail.find('?');
  parts.path = std::string(tail.substr(0, query_start));
  if (parts.path.empty()) parts.path.assign(1, '/');
  if (query_start != std::string_view::npos)
    parts.query = std::string(tail.substr(query_start + 1));
  return parts;
}

}  // namespace rstasker::aws
