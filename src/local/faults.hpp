// Fault injection for the local stack: rules a test sets (a JSON file named by --faults, or PUT
// /_tasker_local/faults on the edge) make the edge lose replies of applied requests, refuse
// requests, delay them, and make the Data API duplicate, delay or drop completion events.
#pragma once

#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "rstasker/common/json.hpp"
#include "rstasker/services/event_bridge.hpp"

namespace httplib {
struct Request;
struct Response;
}  // namespace httplib

namespace rstasker::local {

// The pseudo-service of completion-event rules (their operation is the event's state).
inline constexpr std::string_view kCompletionService = "completion";

// What a rule does when it fires.
enum class FaultKind {
  kLostReply,  // apply the request, then lose its answer (500, dropped connection, stall)
  kRefuse,     // answer an error without applying the request
  kLatency,    // wait, then handle the request as usual
  kDuplicate,  // completion event published twice
  kDelay,      // completion event published later (after events that came after it)
  kDrop,       // completion event never published
};
std::string_view fault_kind_name(FaultKind kind);

struct FaultRule {
  std::string name;
  FaultKind kind = FaultKind::kLostReply;
  // Matching: empty sets (or "*") match anything. A header rule never matches a completion.
  std::set<std::string> services;    // signing names: dynamodb, states, redshift-data, lambda, ...
  std::set<std::string> operations;  // DynamoDB's PutItem, Lambda's Invoke, a completion's state
  std::string body_contains;
  std::string access_key;   // the caller's access key id (Authorization's credential)
  std::string header_name;  // with header_contains: a header whose value contains it
  std::string header_contains;
  // Firing, among the matching requests: only the n-th (1-based; 0: any); only the first time
  // each distinct body is seen (a retry re-sends the same body); with this probability (drawn
  // from the seed, the rule and the body, so a run is reproducible whatever the order of
  // concurrent requests); at most `max_injections` times (0: no limit).
  std::uint64_t nth = 0;
  bool first_per_body = false;
  double probability = 1.0;
  std::uint64_t max_injections = 0;
  // What happens.
  std::string mode = "500";  // lost-reply: "500", "drop" (connection cut mid-answer), "stall"
  int status = 0;            // refuse: HTTP status (default from `error`)
  std::string error;         // refuse: error name (default ThrottlingException)
  std::chrono::milliseconds delay{0};  // latency, delay, and a stall before its dropped answer
};

struct FaultRules {
  std::uint64_t seed = 0;
  std::vector<FaultRule> rules;
  Json document = Json::object();  // as given, for GET
};

// Parses {"seed": N, "rules": [...]} (docs/local-stack.md describes the fields). Throws
// Error(InvalidFaultRules, 400) naming the first problem.
FaultRules parse_fault_rules(const Json& document);

// Where a request goes, as the rules see it.
struct RequestFacts {
  std::string service;    // from the credential scope, else the target, else "unknown"
  std::string operation;  // X-Amz-Target's action, the query protocol's Action, or Invoke
  std::string access_key;
};
RequestFacts describe_request(const httplib::Request& req, std::string_view body);

// A decision taken before the request is routed; `after` needs it back.
struct EdgeFault {
  bool answered = false;  // refused: the response is complete, do not route the request
  std::optional<FaultRule> lost_reply;  // the rule whose lost-reply fires on this request
  RequestFacts facts;
};

class FaultInjector {
 public:
  explicit FaultInjector(FaultRules rules = {});
  ~FaultInjector();
  FaultInjector(const FaultInjector&) = delete;
  FaultInjector& operator=(const FaultInjector&) = delete;

  // The control endpoint, /_tasker_local/faults: PUT replaces the rules (counters kept), GET
  // returns {"rules", "counters"}, DELETE resets the counters and the rules' memory (bodies seen,
  // occurrences). Requests must carry X-Tasker-Local-Control: faults and no AWS signature or
  // X-Amz-Target, so no AWS request reaches it by accident. Returns whether `req` was for it.
  bool control(const httplib::Request& req, const std::string& body, httplib::Response& res);

  // Before routing: counts the request, waits (latency), or answers it (refuse). A SendTask*
  // on a task token whose SendTaskSuccess / SendTaskFailure was accepted is answered
  // TaskTimedOut, as AWS answers for a closed task (moto would accept it again).
  EdgeFault before(const httplib::Request& req, const std::string& body, httplib::Response& res);
  // After routing: counts accepted SendTaskSuccess / SendTaskFailure per task token, then loses
  // the answer (lost-reply). May block for a stall's delay.
  void after(const EdgeFault& fault, const httplib::Request& req, const std::string& body,
             httplib::Response& res);

  // `publish` with the completion-event rules applied. Delayed events are published by a
  // thread of this injector, so the injector must outlive the returned function's callers.
  std::function<void(const services::EventEntry&)> wrap_publish(
      std::function<void(const services::EventEntry&)> publish);

  void replace(FaultRules rules);
  // {"requests": {"svc:Op": n}, "rules": {name: {"matched", "injected"}}, "injected":
  //  {kind: n}, "injected_by_operation": {"svc:Op": {kind: n}}, "accepted_callbacks":
  //  {sha256(token) hex: n}, "repeated_callbacks": {sha256(token) hex: n refused as closed}}
  //  (tokens are secrets: only their digests leave).
  Json counters() const;
  void reset_counters();

 private:
  // The first rule that matches and fires for this request (counted), or nullopt.
  std::optional<FaultRule> fire(const RequestFacts& facts, std::string_view body,
                                const httplib::Request* req);
  void delayed_loop();

  // What a rule remembers while it is in force (forgotten when the rules are replaced).
  struct RuleState {
    std::uint64_t matches = 0;
    std::uint64_t injections = 0;
    std::map<std::uint64_t, std::uint64_t> seen;  // body digest -> times matched
  };

  mutable std::mutex mutex_;
  FaultRules rules_;
  std::vector<RuleState> state_;  // per rule of rules_
  std::map<std::string, std::uint64_t> requests_;
  std::map<std::string, std::uint64_t> by_kind_;
  std::map<std::string, std::map<std::string, std::uint64_t>> by_operation_;
  std::map<std::string, std::map<std::string, std::uint64_t>> by_rule_name_;
  std::map<std::string, std::uint64_t> accepted_callbacks_;
  std::map<std::string, std::uint64_t> repeated_callbacks_;

  // Delayed completion events, published in due-time order by delayed_thread_.
  struct Pending {
    std::chrono::steady_clock::time_point due;
    services::EventEntry entry;
    std::function<void(const services::EventEntry&)> publish;
  };
  std::vector<Pending> pending_;
  std::condition_variable pending_cv_;
  bool stopping_ = false;
  std::thread delayed_thread_;
};

}  // namespace rstasker::local
