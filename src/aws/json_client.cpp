// AWS JSON-protocol calls: sign, send, parse, and retry what AWS says is worth retrying.
#include "rstasker/aws/json_client.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <random>
#include <thread>

namespace rstasker::aws {

namespace {

constexpr std::array<std::string_view, 8> kThrottlingNames = {
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "LimitExceededException",
    "TransactionInProgressException"};

// "com.amazonaws.dynamodb.v20120810#ConditionalCheckFailedException:http://..." -> the name.
std::string short_error_name(std::string_view type) {
  if (auto hash = type.rfind('#'); hash != std::string_view::npos) type.remove_prefix(hash + 1);
  if (auto colon = type.find(':'); colon != std::string_view::npos) type = type.substr(0, colon);
  return std::string(type);
}

std::mt19937_64& thread_rng() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  return rng;
}

}  // namespace

std::string xml_element(std::string_view xml, std::string_view tag) {
  // Built with append: GCC 12 misreads `"<" + std::string(tag)` under -O2 (-Wrestrict).
  std::string open = std::string("<").append(tag).append(">");
  std::string close = std::string("</").append(tag).append(">");
  auto start = xml.find(open);
  if (start == std::string_view::npos) return {};
  start += open.size();
  auto end = xml.find(close, start);
  if (end == std::string_view::npos) return {};
  return std::string(xml.substr(start, end - start));
}

std::chrono::milliseconds backoff_delay(const RetryPolicy& policy, int retry) {
  auto ceiling = policy.base_delay.count();
  for (int i = 1; i < retry && ceiling < policy.max_delay.count(); ++i) ceiling *= 2;
  ceiling = std::min<std::int64_t>(ceiling, policy.max_delay.count());
  std::uniform_int_distribution<std::int64_t> pick(0, std::max<std::int64_t>(ceiling, 0));
  return std::chrono::milliseconds(pick(thread_rng()));
}

bool is_retryable(std::string_view error_name, long http_status) {
  if (http_status == 500 || http_status == 502 || http_status == 503 || http_status == 504) {
    return true;
  }
  return std::find(kThrottlingNames.begin(), kThrottlingNames.end(), error_name) !=
         kThrottlingNames.end();
}

Error error_from_response(const HttpResponse& response) {
  std::string name;
  std::string message;
  Json body = Json::parse(response.body, nullptr, /*allow_exceptions=*/false);
  if (body.is_object()) {
    if (auto it = body.find("__type"); it != body.end() && it->is_string()) {
      name = short_error_name(it->get<std::string>());
    }
    for (const char* key : {"message", "Message", "errorMessage"}) {
      if (auto it = body.find(key); it != body.end() && it->is_string()) {
        message = it->get<std::string>();
        break;
      }
    }
  }
  if (name.empty()) name = short_error_name(response.header("x-amzn-ErrorType"));
  if (name.empty()) name = xml_element(response.body, "Code");
  if (message.empty()) message = xml_element(response.body, "Message");
  if (name.empty()) name = "HttpError" + std::to_string(response.status);
  if (message.empty()) {
    message = response.body.empty() ? "HTTP " + std::to_string(response.status)
                                    : response.body.substr(0, 512);
  }
  return Error(name, message, static_cast<int>(response.status),
               is_retryable(name, response.status));
}

JsonClient::JsonClient(JsonProtocol protocol, Endpoint endpoint, Credentials credentials,
                       std::shared_ptr<HttpTransport> transport, RetryPolicy retry)
    : protocol_(protocol),
      endpoint_(std::move(endpoint)),
      credentials_(std::move(credentials)),
      transport_(std::move(transport)),
      retry_(retry),
      signer_(endpoint_.region, endpoint_.signing_name) {}

HttpResponse JsonClient::send_once(std::string_view operation, const std::string& body,
                                   const CallContext& context) const {
  HttpRequest request;
  request.method = "POST";
  request.url = endpoint_.url + "/";
  request.body = body;
  request.headers = {
      {"Content-Type", std::string(protocol_.content_type)},
      {"X-Amz-Target", std::string(protocol_.target_prefix) + "." + std::string(operation)}};
  if (!context.trace_id.empty()) request.headers.emplace_back("X-Amzn-Trace-Id", context.trace_id);
  signer_.sign(request, credentials_, std::chrono::system_clock::now());
  return transport_->send(request, context.deadline);
}

Json JsonClient::call(std::string_view operation, const Json& request, const CallContext& context,
                      CallHistory* history) const {
  const std::string body = dump_json(request);
  for (int attempt = 1;; ++attempt) {
    std::optional<Error> failure;
    try {
      HttpResponse response = send_once(operation, body, context);
      if (response.status >= 200 && response.status < 300) {
        if (response.body.empty()) return Json::object();
        Json parsed = Json::parse(response.body, nullptr, /*allow_exceptions=*/false);
        if (parsed.is_discarded()) {
          throw Error(error_names::kInternalError,
                      std::string(operation) + " returned a body that is not JSON",
                      static_cast<int>(response.status));
        }
        return parsed;
      }
      failure = error_from_response(response);
    } catch (const Error& e) {
      if (e.name() != error_names::kNetworkError) throw;
      failure = e;
    }
    if (!failure->retryable() || attempt >= retry_.max_attempts) throw *failure;
    // Throttling refuses a request before applying it; no answer or a 5xx leaves it open.
    if (history != nullptr && (failure->http_status() == 0 || failure->http_status() >= 500)) {
      history->maybe_applied = true;
    }
    auto delay = backoff_delay(retry_, attempt);
    // Leave time for the retried request itself; give up rather than overrun the deadline.
    if (delay + std::chrono::milliseconds(100) >= context.deadline.remaining()) throw *failure;
    spdlog::warn("{} {} failed ({}: {}); retry {} in {} ms", endpoint_.signing_name, operation,
                 failure->name(), failure->message(), attempt, delay.count());
    std::this_thread::sleep_for(delay);
  }
}

}  // namespace rstasker::aws
