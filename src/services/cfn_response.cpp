// CloudFormation responses: PUT the body to the pre-signed ResponseURL, retrying what may pass.
// The URL carries a signature that grants write access, so it never appears in a message or log.
#include "rstasker/services/cfn_response.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <optional>
#include <thread>

#include "rstasker/aws/user_agent.hpp"
#include "rstasker/common/error.hpp"
#include "rstasker/common/text.hpp"

namespace rstasker::services {

namespace {

// Leave at least this much of the deadline for the retried request itself.
constexpr std::chrono::milliseconds kMinimumAttemptTime{100};
constexpr std::size_t kMaxErrorExcerptBytes = 200;

// Whether `host` (lower case, no port) is one of S3's: a label "s3", or one starting "s3-" (the
// older "s3-eu-west-1" and "s3-external-1" forms, "s3-fips"), under amazonaws.com[.cn].
bool is_s3_host(std::string_view host) {
  std::string_view rest;
  if (host.ends_with(".amazonaws.com")) {
    rest = host.substr(0, host.size() - std::string_view(".amazonaws.com").size());
  } else if (host.ends_with(".amazonaws.com.cn")) {
    rest = host.substr(0, host.size() - std::string_view(".amazonaws.com.cn").size());
  } else {
    return false;
  }
  while (!rest.empty()) {
    const auto dot = rest.find('.');
    const std::string_view label = rest.substr(0, dot);
    if (label.empty()) return false;
    if (label == "s3" || label.starts_with("s3-")) return true;
    if (dot == std::string_view::npos) break;
    rest.remove_prefix(dot + 1);
  }
  return false;
}

// What the server said, short and without the request: S3 answers with an XML <Error> whose
// Code and Message are enough; the rest of it (StringToSign, SignatureProvided) must not travel.
std::string describe_rejection(const aws::HttpResponse& response) {
  Error parsed = aws::error_from_response(response);
  std::string text = "HTTP " + std::to_string(response.status);
  if (parsed.name() != "HttpError" + std::to_string(response.status)) text += " " + parsed.name();
  if (!parsed.message().empty() && parsed.message() != "HTTP " + std::to_string(response.status)) {
    text += ": " + truncate_utf8_bytes(parsed.message(), kMaxErrorExcerptBytes);
  }
  return text;
}

class HttpCfnResponder final : public CfnResponder {
 public:
  HttpCfnResponder(std::shared_ptr<aws::HttpTransport> transport, aws::RetryPolicy retry,
                   ResponseUrlPolicy policy)
      : transport_(std::move(transport)), retry_(retry), policy_(policy) {}

  std::string url_problem(const std::string& response_url) const override {
    return response_url_problem(response_url, policy_);
  }

  void send(const std::string& response_url, const std::string& body,
            const aws::CallContext& context) override {
    if (auto problem = url_problem(response_url); !problem.empty()) {
      throw Error(error_names::kInternalError,
                  "not sending the CloudFormation response: its URL " + problem);
    }
    if (body.size() > kMaxCfnResponseBytes) {
      throw Error(error_names::kInternalError, "the CloudFormation response body is " +
                                                   std::to_string(body.size()) +
                                                   " bytes; CloudFormation accepts at most " +
                                                   std::to_string(kMaxCfnResponseBytes));
    }
    aws::HttpRequest request;
    request.method = "PUT";
    request.url = response_url;
    // CloudFormation's pre-signed URLs expect no content type (signatures of the older form
    // cover it), and libcurl would otherwise add a form type of its own.
    request.headers = {{"Content-Type", ""}, {"User-Agent", aws::process_user_agent()}};
    request.body = body;

    // Every attempt PUTs the same bytes. A reply lost after S3 stored the body (a time-out, a
    // dropped connection) makes the retry a second PUT of an identical object: harmless, and
    // nothing better is possible, as a pre-signed URL cannot be asked what it holds.
    for (int attempt = 1;; ++attempt) {
      std::optional<Error> failure;
      try {
        aws::HttpResponse response = transport_->send(request, context.deadline);
        if (response.status >= 200 && response.status < 300) return;
        // S3 says what is transient: 5xx, 429, and by name RequestTimeout (a 400) or SlowDown.
        const bool transient = aws::error_from_response(response).retryable();
        failure = Error("HttpError" + std::to_string(response.status),
                        "CloudFormation response upload failed: " + describe_rejection(response),
                        static_cast<int>(response.status), transient);
      } catch (const Error& e) {
        // The transport names the origin only (scheme://host), never the signed path and query.
        if (e.name() != error_names::kNetworkError) throw;
        failure = Error(e.name(), "CloudFormation response upload failed: " + e.message(),
                        e.http_status(), true);
      }
      if (!failure->retryable() || attempt >= retry_.max_attempts) throw *failure;
      auto delay = aws::backoff_delay(retry_, attempt);
      if (delay + kMinimumAttemptTime >= context.deadline.remaining()) throw *failure;
      spdlog::warn("{}; retry {} in {} ms", failure->message(), attempt, delay.count());
      std::this_thread::sleep_for(delay);
    }
  }

 private:
  std::shared_ptr<aws::HttpTransport> transport_;
  aws::RetryPolicy retry_;
  ResponseUrlPolicy policy_;
};

}  // namespace

ResponseUrlPolicy response_url_policy_from_env(const aws::EnvLookup& env) {
  const std::string value = ascii_lower(env("CFN_RESPONSE_URLS").value_or(""));
  if (value.empty() || value == "s3") return ResponseUrlPolicy::kS3Https;
  if (value == "any") return ResponseUrlPolicy::kAnyHttpUrl;
  throw Error(error_names::kConfigurationError,
              "CFN_RESPONSE_URLS=" + excerpt(value) + " is not s3 or any");
}

std::string response_url_problem(std::string_view url, ResponseUrlPolicy policy) {
  std::size_t host_start = 0;
  if (url.starts_with("https://")) {
    host_start = 8;
  } else if (url.starts_with("http://")) {
    host_start = 7;
  }
  if (host_start == 0) return "is not an http(s) URL";
  const bool control = std::any_of(url.begin(), url.end(), [](char c) {
    return static_cast<unsigned char>(c) <= 0x20 || c == 0x7F;
  });
  if (control) return "contains spaces or control characters";
  const std::string_view authority =
      url.substr(host_start, url.find_first_of("/?#", host_start) - host_start);
  if (authority.empty()) return "has no host";
  if (policy == ResponseUrlPolicy::kAnyHttpUrl) return {};
  if (host_start != 8) return "is not https (CFN_RESPONSE_URLS=any allows plain http)";
  if (authority.find('@') != std::string_view::npos) return "names a user";
  std::string host = ascii_lower(authority);
  if (host.ends_with(":443")) host.resize(host.size() - 4);
  if (host.find(':') != std::string::npos) return "names a port other than 443";
  if (!is_s3_host(host)) {
    return "is not on an S3 host, where CloudFormation's response URLs are "
           "(CFN_RESPONSE_URLS=any allows any host)";
  }
  return {};
}

std::unique_ptr<CfnResponder> make_cfn_responder(std::shared_ptr<aws::HttpTransport> transport,
                                                 aws::RetryPolicy retry, ResponseUrlPolicy policy) {
  return std::make_unique<HttpCfnResponder>(std::move(transport), retry, policy);
}

}  // namespace rstasker::services
