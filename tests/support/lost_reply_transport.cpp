// Lost replies on demand, on top of a real transport.
#include "support/lost_reply_transport.hpp"

#include "rstasker/common/error.hpp"

namespace rstasker::testing {

LostReplyTransport::LostReplyTransport(std::shared_ptr<aws::HttpTransport> inner)
    : inner_(std::move(inner)) {}

void LostReplyTransport::lose_reply(std::string operation, int nth, Loss how,
                                    std::string body_contains) {
  std::lock_guard lock(mutex_);
  rules_.push_back({std::move(operation), nth - 1, how, std::move(body_contains)});
}

void LostReplyTransport::lose_first_reply_of_each(std::set<std::string> operations, Loss how) {
  std::lock_guard lock(mutex_);
  first_reply_operations_ = std::move(operations);
  first_reply_loss_ = how;
}

int LostReplyTransport::lost() const {
  std::lock_guard lock(mutex_);
  return lost_;
}

int LostReplyTransport::requests(const std::string& operation) const {
  std::lock_guard lock(mutex_);
  auto it = requests_.find(operation);
  return it == requests_.end() ? 0 : it->second;
}

aws::HttpResponse LostReplyTransport::send(const aws::HttpRequest& request,
                                           const Deadline& deadline) {
  std::string operation;
  if (const std::string* target = request.header("X-Amz-Target")) {
    operation = target->substr(target->find('.') + 1);
  }
  std::optional<Loss> loss;
  {
    std::lock_guard lock(mutex_);
    ++requests_[operation];
    for (auto it = rules_.begin(); it != rules_.end(); ++it) {
      if (it->operation != operation || request.body.find(it->body_contains) == std::string::npos) {
        continue;
      }
      if (it->countdown-- > 0) continue;
      loss = it->how;
      rules_.erase(it);
      break;
    }
    if (!loss && first_reply_operations_.contains(operation) &&
        seen_bodies_.insert(operation + '\n' + request.body).second) {
      loss = first_reply_loss_;
    }
    if (loss) ++lost_;
  }
  aws::HttpResponse response = inner_->send(request, deadline);  // applied either way
  if (!loss) return response;
  if (*loss == Loss::kNetworkError) {
    throw Error(error_names::kNetworkError,
                operation + ": connection reset (reply lost by the test)", 0, true);
  }
  aws::HttpResponse lost;
  lost.status = 500;
  lost.headers = {{"Content-Type", "application/x-amz-json-1.0"}};
  lost.body = R"({"__type":"InternalServerError","message":"reply lost by the test"})";
  return lost;
}

}  // namespace rstasker::testing
