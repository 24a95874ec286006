// A client for AWS's JSON protocols (JSON 1.0 / 1.1 with X-Amz-Target): signing, error parsing,
// and retries with capped exponential backoff and full jitter, bounded by the call's deadline.
#pragma once

#include <algorithm>
#include <chrono>
#include <memory>
#include <string>
#include <string_view>
#include <utility>

#include "rstasker/aws/credentials.hpp"
#include "rstasker/aws/endpoints.hpp"
#include "rstasker/aws/http.hpp"
#include "rstasker/aws/sigv4.hpp"
#include "rstasker/common/deadline.hpp"
#include "rstasker/common/error.hpp"
#include "rstasker/common/json.hpp"

namespace rstasker::aws {

// Time an invocation keeps back before its hard deadline (when Lambda stops the sandbox): calls
// made for the work give up this much earlier, so a hung call still leaves time to clean up and
// to report the outcome. Deadline::with_reserve caps it for very short deadlines.
inline constexpr std::chrono::milliseconds kInvocationReserve{1000};

// Time cleanup after a failure (releasing a lock, recording a failed start) may take even when
// the work deadline has already passed; never more than what is left before the hard deadline,
// less kReportMargin.
inline constexpr std::chrono::milliseconds kCleanupBudget{2000};

// Time cleanup always leaves before the hard deadline, for reporting the outcome (a post to the
// Runtime API on the loopback interface). Deadline::with_reserve caps it for very short deadlines.
inline constexpr std::chrono::milliseconds kReportMargin{200};

// Per-call context: when the work must end, when the invocation ends, and the X-Ray trace to
// forward.
struct CallContext {
  // When calls made for the work must be finished; every AWS call and retry respects it.
  Deadline deadline = Deadline::none();
  std::string trace_id;  // forwarded as X-Amzn-Trace-Id when non-empty
  // When the invocation is stopped (Lambda's deadline); never earlier than `deadline`. Only
  // for_cleanup() uses the time between the two. Unbounded when unknown.
  Deadline hard_deadline = Deadline::none();

  // The context of an invocation that must end by `hard`: work gets `hard` less
  // kInvocationReserve (at most a quarter of the time left), the rest is kept for cleanup.
  static CallContext for_invocation(Deadline hard, std::string trace_id = {}) {
    return CallContext{hard.with_reserve(kInvocationReserve), std::move(trace_id), hard};
  }

  // The context for cleanup after a failure, which must run even when the failure was the work
  // deadline passing: its deadline is the later of `deadline` and kCleanupBudget from now, but
  // never past `hard_deadline` less kReportMargin, so the outcome can still be reported. The
  // trace id is kept.
  CallContext for_cleanup() const {
    Deadline cleanup = hard_deadline.with_reserve(kReportMargin)
                           .capped(std::max(deadline.remaining(), kCleanupBudget));
    return CallContext{cleanup, trace_id, hard_deadline};
  }
};

struct JsonProtocol {
  std::string_view target_prefix;  // X-Amz-Target: <prefix>.<Operation>
  std::string_view content_type;   // application/x-amz-json-1.0 or -1.1
};

namespace protocol {
inline constexpr JsonProtocol kRedshiftData{"RedshiftData", "application/x-amz-json-1.1"};
inline constexpr JsonProtocol kDynamoDb{"DynamoDB_20120810", "application/x-amz-json-1.0"};
inline constexpr JsonProtocol kStepFunctions{"AWSStepFunctions", "application/x-amz-json-1.0"};
inline constexpr JsonProtocol kEventBridge{"AWSEvents", "application/x-amz-json-1.1"};
inline constexpr JsonProtocol kSqs{"AmazonSQS", "application/x-amz-json-1.0"};
}  // namespace protocol

struct RetryPolicy {
  int max_attempts = 6;  // including the first
  std::chrono::milliseconds base_delay{50};
  std::chrono::milliseconds max_delay{5000};
};

// Delay before retry number `retry` (1 for the first retry): uniform in [0, min(max,
// base*2^(retry-1))].
std::chrono::milliseconds backoff_delay(const RetryPolicy& policy, int retry);

// Whether AWS-FACTS.md says to retry: HTTP 500/502/503/504 or a throttling error name.
bool is_retryable(std::string_view error_name, long http_status);

// The text of the first <tag>...</tag> in a small, flat XML document (AWS query-protocol answers,
// moto's authentication errors), or "" when absent.
std::string xml_element(std::string_view xml, std::string_view tag);

// Turns a non-2xx response into an Error: the name from the JSON body's `__type` (after the last
// '#', before any ':'), else the x-amzn-ErrorType header, else an XML <Code> (moto's auth layer),
// else "HttpError<status>"; the message from `message`/`Message` (JSON or XML).
Error error_from_response(const HttpResponse& response);

// What the attempts of one call went through, for a caller that must read the final answer in
// that light (a refusal after an attempt the service may have applied).
struct CallHistory {
  // An earlier attempt got no answer or a server error (5xx): the service may have applied it.
  bool maybe_applied = false;
};

class JsonClient {
 public:
  JsonClient(JsonProtocol protocol, Endpoint endpoint, Credentials credentials,
             std::shared_ptr<HttpTransport> transport, RetryPolicy retry = {});

  // Calls `operation` with `request` as the body and returns the parsed response (an object; `{}`
  // for an empty body). Retryable failures are retried within `context.deadline`; the last error
  // is thrown when attempts or time run out. Non-retryable service errors are thrown at once.
  // With `history`, it is told whether a retried attempt may have been applied.
  Json call(std::string_view operation, const Json& request, const CallContext& context,
            CallHistory* history = nullptr) const;

  const Endpoint& endpoint() const { return endpoint_; }

 private:
  HttpResponse send_once(std::string_view operation, const std::string& body,
                         const CallContext& context) const;

  JsonProtocol protocol_;
  Endpoint endpoint_;
  Credentials credentials_;
  std::shared_ptr<HttpTransport> transport_;
  RetryPolicy retry_;
  Signer signer_;
};

}  // namespace rstasker::aws
