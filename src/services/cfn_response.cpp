// CloudFormation responses: PUT the body to the pre-signed ResponseURL, retrying what may pass.
// The URL carries a signature that grants write access, so it never appears in a message or log.
#include "rstasker/services/cfn_response.hpp"

#include <spdlog/spdlog.h>

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

bool is_http_url(const std::string& url) {
  return url.starts_with("https://") || url.starts_with("http://");
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
  HttpCfnResponder(std::shared_ptr<aws::HttpTransport> transport, aws::RetryPolicy retry)
      : transport_(std::move(transport)), retry_(retry) {}

  void send(const std::string& response_url, const std::string& body,
            const aws::CallContext& context) override {
    if (!is_http_url(response_url)) {
      throw Error(error_names::kInternalError,
                  "the CloudFormation response URL is not an http(s) URL");
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
        const bool server_side = response.status >= 500;
        failure = Error("HttpError" + std::to_string(response.status),
                        "CloudFormation response upload failed: " + describe_rejection(response),
                        static_cast<int>(response.status), server_side);
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
};

}  // namespace

std::unique_ptr<CfnResponder> make_cfn_responder(std::shared_ptr<aws::HttpTransport> transport,
                                                 aws::RetryPolicy retry) {
  return std::make_unique<HttpCfnResponder>(std::move(transport), retry);
}

}  // namespace rstasker::services
