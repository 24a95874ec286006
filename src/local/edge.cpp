// The edge: routing, signature checks, AWS-shaped errors, and the pass-through to moto.
#include "local/edge.hpp"

#include <curl/curl.h>
#include <httplib.h>
#include <re2/re2.h>
#include <spdlog/spdlog.h>

#include <chrono>
#include <thread>
#include <utility>

#include "rstasker/common/error.hpp"
#include "rstasker/common/text.hpp"

namespace rstasker::local {
namespace {

using Clock = std::chrono::steady_clock;

constexpr const char* kHealthPath = "/_tasker_local/health";
constexpr auto kProxyConnectTimeout = std::chrono::seconds(5);
// Long polls (SQS, Step Functions activities) hold a request for up to a minute or so.
constexpr auto kProxyTimeout = std::chrono::minutes(15);
constexpr const char* kJson11 = "application/x-amz-json-1.1";
// Largest request body the edge reads (413 beyond): a CreateFunction with a 50 MB zip, base64 in
// JSON, is the largest request AWS takes through these APIs.
constexpr std::size_t kMaxRequestBytes = std::size_t{70} << 20;

// The service a request's SigV4 credential scope names ("Credential=AK/date/region/<service>/
// aws4_request"), or "" when it has none: what a pass-through request is verified as.
std::string scope_service(std::string_view authorization) {
  const auto credential = authorization.find("Credential=");
  if (credential == std::string_view::npos) return {};
  std::string_view scope = authorization.substr(credential + 11);
  scope = scope.substr(0, scope.find_first_of(", "));
  const auto end = scope.rfind('/');
  if (end == std::string_view::npos) return {};
  const auto start = scope.rfind('/', end - 1);
  return start == std::string_view::npos ? std::string()
                                         : std::string(scope.substr(start + 1, end - start - 1));
}

// Headers that describe one connection, not the message, plus the ones cpp-httplib adds to
// requests for the handler's information; never forwarded in either direction.
bool is_connection_header(std::string_view name) {
  for (std::string_view hop :
       {"connection", "keep-alive", "proxy-connection", "proxy-authenticate", "proxy-authorization",
        "te", "trailer", "transfer-encoding", "upgrade", "content-length", "expect", "REMOTE_ADDR",
        "REMOTE_PORT", "LOCAL_ADDR", "LOCAL_PORT"}) {
    if (iequals(name, hop)) return true;
  }
  return false;
}

// --- Pass-through to moto ----------------------------------------------------------------------

struct Forwarded {
  long status = 0;
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
};

std::size_t collect_body(char* data, std::size_t size, std::size_t count, void* user) {
  static_cast<Forwarded*>(user)->body.append(data, size * count);
  return size * count;
}

std::size_t collect_header(char* data, std::size_t size, std::size_t count, void* user) {
  auto* forwarded = static_cast<Forwarded*>(user);
  std::string_view line(data, size * count);
  if (line.starts_with("HTTP/")) {
    forwarded->headers.clear();  // a new response (after 100 Continue)
    return size * count;
  }
  const std::size_t colon = line.find(':');
  if (colon == std::string_view::npos) return size * count;
  auto trim = [](std::string_view s) {
    while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
    while (!s.empty() && (s.back() == '\r' || s.back() == '\n' || s.back() == ' ')) {
      s.remove_suffix(1);
    }
    return s;
  };
  forwarded->headers.emplace_back(std::string(trim(line.substr(0, colon))),
                                  std::string(trim(line.substr(colon + 1))));
  return size * count;
}

struct CurlCleanup {
  void operator()(CURL* handle) const { curl_easy_cleanup(handle); }
};
struct SlistCleanup {
  void operator()(curl_slist* list) const { curl_slist_free_all(list); }
};

// Sends the request to moto as it came: same method, target, headers (but the per-connection
// ones) and body. libcurl handles are kept per handler thread, so connections are reused.
Forwarded forward(const httplib::Request& req, const std::string& body,
                  const std::string& moto_url) {
  thread_local std::unique_ptr<CURL, CurlCleanup> handle(curl_easy_init());
  if (!handle) throw Error(error_names::kInternalError, "curl_easy_init failed");
  CURL* h = handle.get();
  curl_easy_reset(h);

  std::unique_ptr<curl_slist, SlistCleanup> headers;
  auto add = [&headers](const std::string& line) {
    curl_slist* next = curl_slist_append(headers.get(), line.c_str());
    if (next == nullptr) throw Error(error_names::kInternalError, "out of memory");
    headers.release();
    headers.reset(next);
  };
  bool has_accept = false;
  bool has_content_type = false;
  for (const auto& [name, value] : req.headers) {
    if (is_connection_header(name)) continue;
    if (iequals(name, "accept")) has_accept = true;
    if (iequals(name, "content-type")) has_content_type = true;
    add(value.empty() ? name + ";" : name + ": " + value);
  }
  // libcurl would add these of its own accord.
  if (!has_accept) add("Accept:");
  if (!has_content_type) add("Content-Type:");
  add("Expect:");

  const std::string url = moto_url + req.target;
  Forwarded forwarded;
  curl_easy_setopt(h, CURLOPT_URL, url.c_str());
  curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(h, CURLOPT_HTTPHEADER, headers.get());
  curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, &collect_body);
  curl_easy_setopt(h, CURLOPT_WRITEDATA, &forwarded);
  curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, &collect_header);
  curl_easy_setopt(h, CURLOPT_HEADERDATA, &forwarded);
  curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
  curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT_MS,
                   static_cast<long>(std::chrono::milliseconds(kProxyConnectTimeout).count()));
  curl_easy_setopt(h, CURLOPT_TIMEOUT_MS,
                   static_cast<long>(std::chrono::milliseconds(kProxyTimeout).count()));
  if (req.method == "GET" && body.empty()) {
    curl_easy_setopt(h, CURLOPT_HTTPGET, 1L);
  } else if (req.method == "HEAD") {
    curl_easy_setopt(h, CURLOPT_NOBODY, 1L);
  } else {
    if (req.method != "POST") curl_easy_setopt(h, CURLOPT_CUSTOMREQUEST, req.method.c_str());
    curl_easy_setopt(h, CURLOPT_POSTFIELDS, body.data());
    curl_easy_setopt(h, CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(body.size()));
  }
  const CURLcode code = curl_easy_perform(h);
  if (code != CURLE_OK) {
    throw Error(error_names::kNetworkError,
                "moto at " + moto_url + " did not answer: " + curl_easy_strerror(code), 502);
  }
  curl_easy_getinfo(h, CURLINFO_RESPONSE_CODE, &forwarded.status);
  return forwarded;
}

// --- Answers -----------------------------------------------------------------------------------

void json_service_error(httplib::Response& res, const Error& error) {
  res.status = error.http_status() > 0 ? error.http_status() : 400;
  res.set_header("x-amzn-ErrorType", error.name());
  res.set_content(dump_json(Json{{"__type", error.name()}, {"message", error.message()}}), kJson11);
}

void lambda_error(httplib::Response& res, const Error& error) {
  res.status = error.http_status() > 0 ? error.http_status() : 500;
  res.set_header("x-amzn-ErrorType", error.name());
  res.set_content(dump_json(Json{{"Type", res.status >= 500 ? "Service" : "User"},
                                 {"message", error.message()}}),
                  "application/json");
}

aws::HttpRequest as_aws_request(const httplib::Request& req, const std::string& body) {
  aws::HttpRequest request;
  request.method = req.method;
  request.url = "http://" + req.get_header_value("Host") + req.target;
  for (const auto& [name, value] : req.headers) {
    if (iequals(name, "REMOTE_ADDR") || iequals(name, "REMOTE_PORT") ||
        iequals(name, "LOCAL_ADDR") || iequals(name, "LOCAL_PORT")) {
      continue;
    }
    request.headers.emplace_back(name, value);
  }
  request.body = body;
  return request;
}

}  // namespace

class Edge::Impl {
 public:
  Impl(EdgeOptions options, SignatureVerifier verifier, DataApi* data_api, LambdaService& lambda,
       std::shared_ptr<CodeStore> code)
      : options_(std::move(options)),
        verifier_(std::move(verifier)),
        data_api_(data_api),
        lambda_(lambda),
        code_(std::move(code)) {
    while (!options_.moto_url.empty() && options_.moto_url.back() == '/') {
      options_.moto_url.pop_back();
    }
    curl_global_init(CURL_GLOBAL_DEFAULT);
  }

  ~Impl() { stop(); }

  void start() {
    server_ = std::make_unique<httplib::Server>();
    const int threads = std::max(4, options_.threads);
    server_->new_task_queue = [threads] { return new httplib::ThreadPool(threads); };
    // An idle keep-alive connection delays stop() by up to this long.
    server_->set_keep_alive_timeout(2);
    server_->set_keep_alive_max_count(1000);
    // Requests with a body are read through a content reader: cpp-httplib's own body reading
    // refuses form-encoded bodies over 8 KB (413), and query-protocol calls such as
    // CloudFormation's CreateStack carry whole templates that way.
    auto without_body = [this](const httplib::Request& req, httplib::Response& res) {
      handle(req, std::string(), res);
    };
    auto with_body = [this](const httplib::Request& req, httplib::Response& res,
                            const httplib::ContentReader& read) {
      std::string body;
      bool too_large = false;
      read([&body, &too_large](const char* data, std::size_t size) {
        if (body.size() + size > kMaxRequestBytes) {
          too_large = true;
          return false;  // stops reading: nothing more of it is kept
        }
        body.append(data, size);
        return true;
      });
      if (too_large) {
        res.status = 413;
        res.set_header("Connection", "close");
        res.set_content("the request body exceeds " + std::to_string(kMaxRequestBytes) + " bytes\n",
                        "text/plain");
        return;
      }
      handle(req, body, res);
    };
    server_->Get(".*", without_body);
    server_->Options(".*", without_body);
    server_->Delete(".*", without_body);
    server_->Post(".*", with_body);
    server_->Put(".*", with_body);
    server_->Patch(".*", with_body);
    server_->Delete(".*", with_body);
    if (!server_->bind_to_port(options_.host, options_.port)) {
      throw Error(error_names::kInternalError, "cannot listen on " + options_.host + ":" +
                                                   std::to_string(options_.port) +
                                                   " (is the port taken?)");
    }
    listener_ = std::thread([this] { server_->listen_after_bind(); });
    for (int i = 0; i < 400 && !server_->is_running(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
  }

  void stop() {
    if (!server_) return;
    server_->stop();
    if (listener_.joinable()) listener_.join();
    server_.reset();
  }

 private:
  void handle(const httplib::Request& req, const std::string& body, httplib::Response& res) {
    const auto started = Clock::now();
    FaultInjector* faults = options_.faults.get();
    if (faults != nullptr && faults->control(req, body, res)) return;
    const EdgeFault fault = faults != nullptr ? faults->before(req, body, res) : EdgeFault{};
    if (fault.answered) return;
    const std::string target = req.get_header_value("X-Amz-Target");
    std::string route = "moto";
    static const RE2 invoke_path(R"(^/2015-03-31/functions/([^/]+)/invocations/?$)");
    std::string function_name;
    if (req.method == "POST" && target.starts_with("RedshiftData.")) {
      route = target;
      data_api(req, body, res, target.substr(std::string_view("RedshiftData.").size()));
    } else if (req.method == "POST" && RE2::FullMatch(req.path, invoke_path, &function_name)) {
      route = "lambda:Invoke";
      invoke(req, body, res, function_name);
    } else if (req.path == kHealthPath) {
      route = "health";
      res.set_content(R"({"status":"ok"})", "application/json");
    } else {
      proxy(req, body, res);
    }
    if (faults != nullptr) faults->after(fault, req, body, res);
    if (!res.has_header("x-amzn-RequestId")) res.set_header("x-amzn-RequestId", random_uuid());
    spdlog::debug(
        "{} {} ({}) -> {} in {} ms", req.method, req.target, route, res.status,
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count());
  }

  // Verifies the request's signature for `service`; on failure answers it and returns nullopt.
  std::optional<SignedCaller> authenticate(const httplib::Request& req, const std::string& body,
                                           httplib::Response& res, std::string_view service,
                                           bool json_protocol) {
    try {
      return verifier_.verify(as_aws_request(req, body), service, options_.region,
                              std::chrono::system_clock::now());
    } catch (const Error& e) {
      spdlog::info("refused {} {}: {}: {}", req.method, req.target, e.name(), e.message());
      if (json_protocol) {
        json_service_error(res, e);
      } else {
        lambda_error(res, e);
      }
      return std::nullopt;
    }
  }

  void data_api(const httplib::Request& req, const std::string& body, httplib::Response& res,
                const std::string& operation) {
    auto caller = authenticate(req, body, res, "redshift-data", true);
    if (!caller) return;
    try {
      if (data_api_ == nullptr) {
        throw Error("InternalServerException",
                    "tasker-local was started without --pg: the Data API has no PostgreSQL", 500);
      }
      Json request = parse_json(body.empty() ? std::string_view("{}") : std::string_view(body),
                                "the request body", "SerializationException");
      if (!request.is_object()) {
        throw Error("SerializationException", "the request body must be a JSON object", 400);
      }
      Json answer = data_api_->handle(operation, request, caller->principal_arn);
      res.status = 200;
      res.set_content(dump_json(answer), kJson11);
    } catch (const Error& e) {
      Error shown(e.name(), e.message(), e.http_status() > 0 ? e.http_status() : 400);
      json_service_error(res, shown);
    } catch (const std::exception& e) {
      json_service_error(res, Error("InternalServerException", e.what(), 500));
    }
  }

  void invoke(const httplib::Request& req, const std::string& body, httplib::Response& res,
              const std::string& function) {
    if (!authenticate(req, body, res, "lambda", false)) return;
    try {
      InvocationType type = InvocationType::kRequestResponse;
      const std::string type_header = req.get_header_value("X-Amz-Invocation-Type");
      if (type_header == "Event") {
        type = InvocationType::kEvent;
      } else if (type_header == "DryRun") {
        type = InvocationType::kDryRun;
      } else if (!type_header.empty() && type_header != "RequestResponse") {
        throw Error("InvalidParameterValueException",
                    "1 validation error detected: Value '" + type_header +
                        "' at 'invocationType' failed to satisfy constraint: Member must satisfy "
                        "enum value set: [Event, RequestResponse, DryRun]",
                    400);
      }
      InvokeRequest request;
      request.function = decode_percent(function);
      request.qualifier = req.get_param_value("Qualifier");
      request.payload = body;
      request.client_context = req.get_header_value("X-Amz-Client-Context");
      request.trace_id = req.get_header_value("X-Amzn-Trace-Id");
      request.tail_log = type == InvocationType::kRequestResponse &&
                         req.get_header_value("X-Amz-Log-Type") == "Tail";
      InvokeResult result = lambda_.invoke(request, type);
      res.status = result.status;
      res.set_header("x-amzn-RequestId", result.request_id);
      if (type == InvocationType::kRequestResponse) {
        res.set_header("X-Amz-Executed-Version", result.executed_version);
        if (!result.function_error.empty()) {
          res.set_header("X-Amz-Function-Error", result.function_error);
        }
        if (request.tail_log) res.set_header("X-Amz-Log-Result", base64_encode(result.log_tail));
        res.set_content(result.payload, "application/json");
      }
    } catch (const Error& e) {
      lambda_error(res, e);
    } catch (const std::exception& e) {
      lambda_error(res, Error("ServiceException", e.what(), 500));
    }
  }

  void proxy(const httplib::Request& req, const std::string& body, httplib::Response& res) {
    // moto checks no signature: the edge does, for every service, as AWS's front doors do.
    const bool json_protocol = req.has_header("X-Amz-Target");
    const std::string service = scope_service(req.get_header_value("Authorization"));
    if (!authenticate(req, body, res, service.empty() ? "unknown" : service, json_protocol)) {
      return;
    }
    Forwarded forwarded;
    try {
      forwarded = forward(req, body, options_.moto_url);
    } catch (const Error& e) {
      spdlog::warn("{} {}: {}", req.method, req.target, e.message());
      res.status = 502;
      res.set_content(e.message() + "\n", "text/plain");
      return;
    }
    res.status = static_cast<int>(forwarded.status);
    for (auto& [name, value] : forwarded.headers) {
      // cpp-httplib sets Content-Length from the body, except when there is none (HEAD): then
      // moto's value is the one that describes the resource.
      if (iequals(name, "content-length") && forwarded.body.empty()) {
        res.set_header(name, value);
        continue;
      }
      if (is_connection_header(name)) continue;
      res.set_header(name, value);
    }
    res.body = std::move(forwarded.body);
    if (forwarded.status >= 200 && forwarded.status < 300) capture_code(req, body, res.body);
  }

  // Keeps the zip of a CreateFunction / UpdateFunctionCode that moto accepted: moto never gives
  // it back, and the Lambda role needs it to run the function.
  void capture_code(const httplib::Request& req, const std::string& body,
                    const std::string& answer) {
    static const RE2 create_path(R"(^/2015-03-31/functions/?$)");
    static const RE2 update_path(R"(^/2015-03-31/functions/[^/]+/code/?$)");
    const bool create = req.method == "POST" && RE2::FullMatch(req.path, create_path);
    const bool update = req.method == "PUT" && RE2::FullMatch(req.path, update_path);
    if (!create && !update) return;
    try {
      Json request = parse_json(body, "request", error_names::kInvalidRequest);
      const Json* zip = nullptr;
      if (create && request.contains("Code") && request["Code"].is_object() &&
          request["Code"].contains("ZipFile")) {
        zip = &request["Code"]["ZipFile"];
      } else if (update && request.contains("ZipFile")) {
        zip = &request["ZipFile"];
      }
      if (zip == nullptr || !zip->is_string()) return;
      const auto code = base64_decode(zip->get<std::string>());
      if (!code) {
        spdlog::warn("{} {}: ZipFile is not base64; the function cannot run", req.method, req.path);
        return;
      }
      const std::string sha = code_->add_zip(*code);
      Json reply = parse_json(answer, "answer", error_names::kInternalError);
      if (reply.value("CodeSha256", sha) != sha) {
        spdlog::warn("function code kept with CodeSha256 {}, but moto reports {}", sha,
                     reply.value("CodeSha256", ""));
      }
      spdlog::debug("kept the code of function {} ({})", reply.value("FunctionName", "?"), sha);
    } catch (const Error& e) {
      spdlog::warn("could not keep the code of {} {}: {}", req.method, req.path, e.message());
    }
  }

  EdgeOptions options_;
  SignatureVerifier verifier_;
  DataApi* data_api_;
  LambdaService& lambda_;
  std::shared_ptr<CodeStore> code_;
  std::unique_ptr<httplib::Server> server_;
  std::thread listener_;
};

Edge::Edge(EdgeOptions options, SignatureVerifier verifier, DataApi* data_api,
           LambdaService& lambda, std::shared_ptr<CodeStore> code)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(verifier), data_api, lambda,
                                   std::move(code))) {}

Edge::~Edge() = default;

void Edge::start() {
  impl_->start();
}

void Edge::stop() {
  impl_->stop();
}

}  // namespace rstasker::local
