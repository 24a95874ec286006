// The Lambda custom-runtime loop over the Runtime API (2018-06-01): GET an invocation, run the
// handler, POST its outcome. Nothing costly happens before the first GET /next (cold start).
#include "rstasker/lambda/runtime.hpp"

#include <spdlog/spdlog.h>

#include <cctype>
#include <charconv>
#include <cstdlib>
#include <thread>
#include <utility>

#include "rstasker/common/error.hpp"
#include "rstasker/common/json.hpp"
#include "rstasker/common/log.hpp"

namespace rstasker::lambda {

namespace {

constexpr const char* kTraceEnvironmentVariable = "_X_AMZN_TRACE_ID";

// When GET /next fails, it is tried this many times in all, pausing 50, 100, 200 ms between
// tries: long enough to ride out a restarting local emulator, short enough that a sandbox being
// torn down is not kept waiting.
constexpr int kNextAttempts = 4;
constexpr std::chrono::milliseconds kFirstRetryPause{50};

// An error message is for people; one that swallowed a whole payload must not make the error post
// itself too large to be accepted, which would leave the invocation without any outcome.
constexpr std::size_t kMaxErrorMessageBytes = std::size_t{64} * 1024;

// The body a GET /next error message quotes, at most.
constexpr std::size_t kQuotedBodyBytes = 512;

// Request ids are UUIDs; encode anything else rather than let it change the path.
std::string path_segment(std::string_view text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    auto byte = static_cast<unsigned char>(c);
    if (std::isalnum(byte) != 0 || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(c);
    } else {
      out += fmt::format("%{:02X}", byte);
    }
  }
  return out;
}

// An error type can come from a remote service's answer; keep line breaks out of the header.
std::string header_value(std::string_view text) {
  std::string out(text);
  for (char& c : out) {
    auto byte = static_cast<unsigned char>(c);
    if (byte < 0x20 || byte == 0x7f) c = ' ';
  }
  return out;
}

std::string error_body(std::string_view error_type, std::string_view message) {
  std::string text(message.substr(0, kMaxErrorMessageBytes));
  if (message.size() > kMaxErrorMessageBytes) text += " ... (truncated)";
  return dump_json(Json{{"errorMessage", std::move(text)},
                        {"errorType", std::string(error_type)},
                        {"stackTrace", Json::array()}});
}

std::optional<std::int64_t> parse_epoch_ms(std::string_view text) {
  std::int64_t value = 0;
  auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc() || end != text.data() + text.size() || value <= 0) return std::nullopt;
  return value;
}

bool is_success(long status) {
  return status >= 200 && status < 300;
}

// How long the local Runtime API may take to accept a response or an error.
constexpr std::chrono::seconds kPostTimeout{30};

void post(aws::HttpTransport& transport, const std::string& url, std::string body,
          std::string_view error_type) {
  aws::HttpRequest request;
  request.method = "POST";
  request.url = url;
  request.body = std::move(body);
  request.set_header("Content-Type", "application/json");
  if (!error_type.empty()) {
    request.set_header("Lambda-Runtime-Function-Error-Type", header_value(error_type));
  }
  // The transport has no timeout of its own (GET /next long-polls); a post must not hang.
  aws::HttpResponse response = transport.send(request, Deadline::after(kPostTimeout));
  if (!is_success(response.status)) {
    throw Error(error_names::kInternalError,
                fmt::format("the Runtime API refused POST {} with HTTP {}: {}", url,
                            response.status, response.body.substr(0, kQuotedBodyBytes)),
                static_cast<int>(response.status));
  }
}

// What an invocation produced: its response, or the function error to report instead.
struct Outcome {
  bool failed = false;
  std::string error_type;
  std::string text;  // the response, or the error message
};

Outcome failure(std::string_view error_type, std::string message) {
  if (error_type.empty()) error_type = error_names::kInternalError;
  return {true, std::string(error_type), std::move(message)};
}

Outcome invoke(const Handler& handler, const Invocation& invocation) {
  try {
    std::string response = handler(invocation);
    if (response.size() > kMaxResponseBytes) {
      return failure(kResponseTooLarge,
                     fmt::format("the response is {} bytes, more than the {}-byte limit of a "
                                 "Lambda response",
                                 response.size(), kMaxResponseBytes));
    }
    return {false, {}, std::move(response)};
  } catch (const Error& e) {
    return failure(e.name(), e.message());
  } catch (const std::exception& e) {
    return failure(error_names::kInternalError, e.what());
  } catch (...) {
    return failure(error_names::kInternalError,
                   "the handler threw something that is not a std::exception");
  }
}

// The environment is the contract (the X-Ray SDK convention). It is written only here, before a
// handler starts, when no handler code can be reading it.
// The X-Ray trace id of a trace header ("Root=1-...;Parent=...;Sampled=1"): its Root, or null.
Json xray_trace_id(std::string_view header) {
  for (std::size_t from = 0; from < header.size();) {
    std::size_t end = std::min(header.find(';', from), header.size());
    std::string_view part = header.substr(from, end - from);
    if (part.starts_with("Root=")) return std::string(part.substr(5));
    from = end + 1;
  }
  return nullptr;
}

void set_trace_id(const std::string& trace_id) {
  if (trace_id.empty()) {
    unsetenv(kTraceEnvironmentVariable);  // NOLINT(concurrency-mt-unsafe)
  } else {
    setenv(kTraceEnvironmentVariable, trace_id.c_str(), 1);  // NOLINT(concurrency-mt-unsafe)
  }
}

void handle(RuntimeClient& client, const Handler& handler, const Invocation& invocation) {
  log::set_request_id(invocation.request_id);
  set_trace_id(invocation.trace_id);
  log::set_invocation_field("xrayTraceId", xray_trace_id(invocation.trace_id));
  Outcome outcome = invoke(handler, invocation);
  try {
    if (outcome.failed) {
      // Internal errors are bugs; the rest are answers the caller is expected to Catch.
      auto level = outcome.error_type == error_names::kInternalError ? spdlog::level::err
                                                                     : spdlog::level::warn;
      log::ScopedFields fields{{"errorType", outcome.error_type}};
      spdlog::log(level, "invocation failed with {}: {}", outcome.error_type, outcome.text);
      client.post_error(invocation.request_id, outcome.error_type, outcome.text);
    } else {
      client.post_response(invocation.request_id, outcome.text);
    }
  } catch (const Error& e) {
    spdlog::error("could not report the outcome of invocation {}: {}", invocation.request_id,
                  e.message());
  }
  log::set_request_id("");
  log::clear_invocation_fields();
}

}  // namespace

RuntimeClient::RuntimeClient(std::string endpoint, std::shared_ptr<aws::HttpTransport> transport)
    : endpoint_(std::move(endpoint)),
      base_url_("http://" + endpoint_ + "/2018-06-01"),
      transport_(std::move(transport)) {}

Invocation RuntimeClient::next() {
  aws::HttpRequest request;
  request.method = "GET";
  request.url = base_url_ + "/runtime/invocation/next";
  aws::HttpResponse response = transport_->send(request, Deadline::none());
  if (!is_success(response.status)) {
    throw Error(error_names::kInternalError,
                fmt::format("GET {} answered HTTP {}: {}", request.url, response.status,
                            response.body.substr(0, kQuotedBodyBytes)),
                static_cast<int>(response.status));
  }

  Invocation invocation;
  invocation.request_id = response.header("Lambda-Runtime-Aws-Request-Id");
  if (invocation.request_id.empty()) {
    throw Error(error_names::kInternalError,
                fmt::format("GET {} answered an invocation without a "
                            "Lambda-Runtime-Aws-Request-Id header",
                            request.url),
                static_cast<int>(response.status));
  }
  std::string deadline = response.header("Lambda-Runtime-Deadline-Ms");
  if (auto epoch_ms = parse_epoch_ms(deadline)) {
    invocation.deadline_epoch_ms = *epoch_ms;
    invocation.deadline = Deadline::from_epoch_ms(*epoch_ms);
  } else {
    spdlog::warn(
        "invocation {} has no usable Lambda-Runtime-Deadline-Ms ('{}'); running it "
        "without a deadline",
        invocation.request_id, deadline);
  }
  invocation.function_arn = response.header("Lambda-Runtime-Invoked-Function-Arn");
  invocation.trace_id = response.header("Lambda-Runtime-Trace-Id");
  invocation.payload = std::move(response.body);
  return invocation;
}

void RuntimeClient::post_response(const std::string& request_id, const std::string& payload) {
  post(*transport_, base_url_ + "/runtime/invocation/" + path_segment(request_id) + "/response",
       payload, {});
}

void RuntimeClient::post_error(const std::string& request_id, std::string_view error_type,
                               std::string_view message) {
  post(*transport_, base_url_ + "/runtime/invocation/" + path_segment(request_id) + "/error",
       error_body(error_type, message), error_type);
}

void RuntimeClient::post_init_error(std::string_view error_type, std::string_view message) {
  post(*transport_, base_url_ + "/runtime/init/error", error_body(error_type, message), error_type);
}

int run(RuntimeClient& client, const Handler& handler) {
  int failures = 0;
  for (;;) {
    std::optional<Invocation> invocation;
    try {
      invocation = client.next();
      failures = 0;
    } catch (const Error& e) {
      if (is_success(e.http_status())) {
        // The API is alive and handed out an invocation we cannot run; the next one may be fine.
        spdlog::error("skipping an invocation: {}", e.message());
        failures = 0;
        continue;
      }
      if (++failures < kNextAttempts) {
        std::this_thread::sleep_for(kFirstRetryPause * (1 << (failures - 1)));
        continue;
      }
      if (e.name() == error_names::kNetworkError) {
        spdlog::warn("Lambda Runtime API at {} is gone ({}); shutting down", client.endpoint(),
                     e.message());
        return 0;
      }
      spdlog::error("Lambda Runtime API at {} keeps failing ({}); shutting down", client.endpoint(),
                    e.message());
      return 1;
    }
    handle(client, handler, *invocation);
  }
}

}  // namespace rstasker::lambda
