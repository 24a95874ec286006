// AWS JSON-protocol calls: sign, send, parse, and retry what AWS says is worth retrying.
#include "rstasker/aws/json_client.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <ctime>
#include <random>
#include <thread>

#include "rstasker/aws/user_agent.hpp"
#include "rstasker/common/text.hpp"

namespace rstasker::aws {

namespace {

// The AWS SDKs' standard-mode throttling codes, and the transient codes they retry whatever the
// status (S3 answers RequestTimeout with 400).
constexpr std::array<std::string_view, 17> kRetryableNames = {
    "Throttling",
    "ThrottlingException",
    "ThrottledException",
    "RequestThrottledException",
    "TooManyRequestsException",
    "ProvisionedThroughputExceededException",
    "TransactionInProgressException",
    "RequestLimitExceeded",
    "BandwidthLimitExceeded",
    "LimitExceededException",
    "RequestThrottled",
    "SlowDown",
    "PriorRequestNotComplete",
    "EC2ThrottledException",
    "RequestTimeout",
    "RequestTimeoutException",
    "IDPCommunicationError"};

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
  if (http_status == 429 || http_status == 500 || http_status == 502 || http_status == 503 ||
      http_status == 504) {
    return true;
  }
  return std::find(kRetryableNames.begin(), kRetryableNames.end(), error_name) !=
         kRetryableNames.end();
}

bool is_clock_skew_error(const Error& error) {
  if (error.name() == "RequestTimeTooSkewed" || error.name() == "RequestExpired") return true;
  if (error.name() != "InvalidSignatureException" && error.name() != "SignatureDoesNotMatch") {
    return false;
  }
  const std::string message = ascii_lower(error.message());
  return message.find("signature expired") != std::string::npos ||
         message.find("not yet current") != std::string::npos;
}

std::optional<std::chrono::milliseconds> clock_offset_from_date(
    std::string_view date, std::chrono::system_clock::time_point now) {
  // "Wed, 02 Dec 2026 18:45:44 GMT" (RFC 7231's IMF-fixdate, which AWS sends).
  std::tm tm{};
  const std::string text(date);
  const char* end = strptime(text.c_str(), "%a, %d %b %Y %H:%M:%S GMT", &tm);
  if (end == nullptr || *end != '\0') return std::nullopt;
  const std::time_t server = timegm(&tm);
  if (server == static_cast<std::time_t>(-1)) return std::nullopt;
  return std::chrono::duration_cast<std::chrono::milliseconds>(
      std::chrono::system_clock::from_time_t(server) - now);
}

bool RetryQuota::acquire(int cost) {
  std::lock_guard lock(mutex_);
  if (available_ < cost) return false;
  available_ -= cost;
  return true;
}

void RetryQuota::release(int tokens) {
  std::lock_guard lock(mutex_);
  available_ = std::min(available_ + tokens, kInitialTokens);
}

int RetryQuota::available() const {
  std::lock_guard lock(mutex_);
  return available_;
}

RetryPolicy retry_policy_from_env(const EnvLookup& env) {
  RetryPolicy policy;
  const std::string mode = ascii_lower(env("AWS_RETRY_MODE").value_or(""));
  if (mode == "standard" || mode == "adaptive") {
    policy = RetryPolicy{3, std::chrono::milliseconds(1000), std::chrono::milliseconds(20000),
                         RetryMode::kStandard};
  } else if (!mode.empty() && mode != "legacy") {
    throw Error(error_names::kConfigurationError,
                "AWS_RETRY_MODE=" + excerpt(mode) + " is not legacy, standard or adaptive");
  }
  if (auto attempts = env("AWS_MAX_ATTEMPTS"); attempts && !attempts->empty()) {
    int value = 0;
    auto [end, ec] = std::from_chars(attempts->data(), attempts->data() + attempts->size(), value);
    if (ec != std::errc() || end != attempts->data() + attempts->size() || value < 1 ||
        value > 100) {
      throw Error(error_names::kConfigurationError, "AWS_MAX_ATTEMPTS=" + excerpt(*attempts) +
                                                        " is not a whole number from 1 to 100");
    }
    policy.max_attempts = value;
  }
  return policy;
}

Error error_from_response(const HttpResponse& response) {
  std::string name;
  std::string message;
  Json body = try_parse_json(response.body).value_or(Json());
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
  request.headers.emplace_back("User-Agent", process_user_agent());
  signer_.sign(request, credentials_,
               std::chrono::system_clock::now() +
                   std::chrono::milliseconds(clock_offset_ms_.load(std::memory_order_relaxed)));
  return transport_->send(request, context.deadline);
}

Json JsonClient::call(std::string_view operation, const Json& request, const CallContext& context,
                      CallHistory* history) const {
  const std::string body = dump_json(request);
  const bool standard = retry_.mode == RetryMode::kStandard;
  int last_retry_cost = 0;
  for (int attempt = 1;; ++attempt) {
    std::optional<Error> failure;
    try {
      HttpResponse response = send_once(operation, body, context);
      if (response.status >= 200 && response.status < 300) {
        if (standard)
          quota_.release(attempt == 1 ? RetryQuota::kNoRetryIncrement : last_retry_cost);
        if (response.body.empty()) return Json::object();
        std::optional<Json> parsed = try_parse_json(response.body);
        if (!parsed) {
          throw Error(error_names::kInternalError,
                      std::string(operation) + " returned a body that is not JSON or is nested " +
                          "deeper than " + std::to_string(kMaxJsonDepth) + " levels",
                      static_cast<int>(response.status));
        }
        return std::move(*parsed);
      }
      failure = error_from_response(response);
      if (is_clock_skew_error(*failure)) {
        // Our clock is off (a sandbox thawed after a long freeze, a host without NTP): sign with
        // the server's time from now on, and try again.
        auto offset =
            clock_offset_from_date(response.header("Date"), std::chrono::system_clock::now());
        if (offset) {
          clock_offset_ms_.store(offset->count(), std::memory_order_relaxed);
          spdlog::warn("{} says the clock is {} ms off; signing with its time from now on",
                       endpoint_.signing_name, -offset->count());
          failure = Error(failure->name(), failure->message(), failure->http_status(), true);
        }
      }
    } catch (const Error& e) {
      if (e.name() != error_names::kNetworkError) throw;
      failure = e;
    }
    if (!failure->retryable() || attempt >= retry_.max_attempts) throw *failure;
    // Throttling refuses a request before applying it; no answer or a 5xx leaves it open.
    if (history != nullptr && (failure->http_status() == 0 || failure->http_status() >= 500)) {
      history->maybe_applied = true;
    }
    if (standard) {
      last_retry_cost = failure->name() == error_names::kNetworkError
                            ? RetryQuota::kTimeoutRetryCost
                            : RetryQuota::kRetryCost;
      if (!quota_.acquire(last_retry_cost)) {
        spdlog::warn("{} {} failed ({}); the retry quota is spent, not retrying",
                     endpoint_.signing_name, operation, failure->name());
        throw *failure;
      }
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
