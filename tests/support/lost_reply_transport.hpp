// An HttpTransport that loses replies on purpose: it forwards each request to the real server and,
// for the operations a test chooses, throws away the answer and reports a lost reply instead (a
// reset connection, or a 500). For tests of writes a service applied but whose answer never came.
#pragma once

#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <vector>

#include "rstasker/aws/http.hpp"

namespace rstasker::testing {

class LostReplyTransport : public aws::HttpTransport {
 public:
  enum class Loss {
    kNetworkError,  // the connection broke after the request was sent (NetworkError)
    kServerError,   // the server applied the request, then answered 500
  };

  explicit LostReplyTransport(std::shared_ptr<aws::HttpTransport> inner);

  // The `nth` request (1 = the next one) for `operation` (the X-Amz-Target's operation, e.g.
  // "PutItem") whose body contains `body_contains` is applied, then its reply is lost. Rules add
  // up; each fires once.
  void lose_reply(std::string operation, int nth = 1, Loss how = Loss::kNetworkError,
                  std::string body_contains = {});
  // From now on, the first reply to each distinct request (by body) for any of `operations` is
  // lost; its retries, which carry the same body, get theirs. With every write listed, each write
  // of a flow is applied and then retried into its own applied write.
  void lose_first_reply_of_each(std::set<std::string> operations, Loss how = Loss::kServerError);
  // Replies lost so far.
  int lost() const;
  // Requests forwarded for `operation` so far (lost or not).
  int requests(const std::string& operation) const;

  aws::HttpResponse send(const aws::HttpRequest& request, const Deadline& deadline) override;

 private:
  struct Rule {
    std::string operation;
    int countdown;  // matching requests still to pass before the one that is lost
    Loss how;
    std::string body_contains;
  };
  std::shared_ptr<aws::HttpTransport> inner_;
  mutable std::mutex mutex_;
  std::vector<Rule> rules_;
  std::map<std::string, int> requests_;
  std::set<std::string> first_reply_operations_;
  Loss first_reply_loss_ = Loss::kServerError;
  std::set<std::string> seen_bodies_;
  int lost_ = 0;
};

}  // namespace rstasker::testing
