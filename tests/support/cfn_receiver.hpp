// A local stand-in for CloudFormation's pre-signed response URLs: it records every request,
// checks each the way CloudFormation would read it, and misbehaves on request (5xx answers,
// dropped connections, answers held back) so retries and deadlines can be exercised.
#pragma once

#include <chrono>
#include <condition_variable>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace httplib {
class Server;
}

namespace rstasker::testing {

// What CloudFormation would object to in a response: the method, the content type (the URL is
// signed for an empty one), the size (at most 4096 bytes) and the body's shape (Status SUCCESS
// or FAILED, a Reason when FAILED, a non-empty PhysicalResourceId of at most 1 KB, StackId,
// RequestId, LogicalResourceId, and NoEcho / Data of the right types when present). Empty when
// none.
//
// cpp-httplib drops header lines with an empty value while parsing, so here an empty
// Content-Type and none at all look the same (both are ""); what libcurl would add unasked
// (application/x-www-form-urlencoded) is caught. Tests that must see the empty header itself on
// the wire read the raw request instead.
std::vector<std::string> cfn_response_problems(std::string_view method,
                                               std::string_view content_type,
                                               std::string_view body);

struct ReceivedRequest {
  std::string method;
  std::string target;  // path and query, as sent
  std::vector<std::pair<std::string, std::string>> headers;
  std::string body;
  int status = 0;  // what the receiver answered; 0 when it dropped the connection
  std::vector<std::string> problems;  // cfn_response_problems of this request

  // Whether the request carried this header (case-insensitive), and its first value.
  bool has_header(std::string_view name) const;
  std::string header(std::string_view name) const;
};

class CfnReceiver {
 public:
  // Starts serving on a free port of 127.0.0.1; returns once it accepts requests. Throws
  // std::runtime_error when it cannot.
  CfnReceiver();
  // Stops the server (see stop()).
  ~CfnReceiver();
  CfnReceiver(const CfnReceiver&) = delete;
  CfnReceiver& operator=(const CfnReceiver&) = delete;

  // A ResponseURL pointing here, shaped like a pre-signed one. It is plain http on 127.0.0.1:
  // a responder answers it only under ResponseUrlPolicy::kAnyHttpUrl (CFN_RESPONSE_URLS=any,
  // which the local stack sets), never under the production policy (S3 over https).
  std::string url(std::string_view path_and_query =
                      "/stack/app/response?X-Amz-Expires=7200&X-Amz-Signature=abc123") const;

  // The next `count` requests are answered `status` (with an S3-like XML error body whose Code is
  // `code`, or by default InternalError for 5xx and AccessDenied otherwise).
  void fail_next(int count, int status = 500, std::string code = {});
  // The next `count` requests get the start of an answer and then a closed connection.
  void drop_next(int count);
  // Requests wait for release() (or stop()) before they are answered.
  void hold();
  void release();

  // Every request so far, in arrival order (a held request is recorded once answered).
  std::vector<ReceivedRequest> received() const;
  // Waits up to `timeout` until `count` requests have been recorded; whether they were.
  bool wait_for(std::size_t count, std::chrono::milliseconds timeout = std::chrono::seconds(10));

  // Stops serving; held requests are answered 503 first. Idempotent.
  void stop();

 private:
  void record(ReceivedRequest request);

  std::unique_ptr<httplib::Server> server_;
  int port_ = 0;
  std::thread listener_;

  mutable std::mutex mutex_;
  std::condition_variable changed_;
  std::vector<ReceivedRequest> received_;
  int failures_left_ = 0;
  std::string failure_code_;
  int failure_status_ = 500;
  int drops_left_ = 0;
  bool holding_ = false;
  bool stopped_ = false;
};

}  // namespace rstasker::testing
