// The fault layer: rule parsing, the seeded decision of which request a rule hits, the faults
// themselves (refused requests, lost answers, delays, completion-event faults) and their counters.
#include "local/faults.hpp"

#include <httplib.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <utility>

#include "rstasker/aws/sigv4.hpp"
#include "rstasker/common/error.hpp"
#include "rstasker/common/text.hpp"

namespace rstasker::local {
namespace {

using Clock = std::chrono::steady_clock;

constexpr const char* kControlPath = "/_tasker_local/faults";
constexpr const char* kControlHeader = "X-Tasker-Local-Control";
constexpr std::string_view kInvalidRules = "InvalidFaultRules";
// A stall holds a handler thread; bounded so a mistaken rule cannot hang the stack.
constexpr auto kMaxDelay = std::chrono::minutes(2);

struct KindName {
  FaultKind kind;
  std::string_view name;
  bool completion;  // a completion-event fault (else an edge fault)
};
constexpr KindName kKinds[] = {
    {FaultKind::kLostReply, "lost-reply", false}, {FaultKind::kRefuse, "refuse", false},
    {FaultKind::kLatency, "latency", false},      {FaultKind::kDuplicate, "duplicate", true},
    {FaultKind::kDelay, "delay", true},           {FaultKind::kDrop, "drop", true},
};

// The errors `refuse` knows by name, with the HTTP status AWS answers them with.
struct KnownError {
  std::string_view name;
  int status;
};
constexpr KnownError kKnownErrors[] = {
    {"InternalServerError", 500},  {"InternalFailure", 500},
    {"ServiceException", 500},     {"ServiceUnavailable", 503},
    {"ThrottlingException", 400},  {"ProvisionedThroughputExceededException", 400},
    {"RequestLimitExceeded", 400}, {"TooManyRequestsException", 429},
};

// FNV-1a: a digest that is the same in every run (std::hash promises nothing of the kind).
std::uint64_t fnv1a(std::string_view text) {
  std::uint64_t hash = 0xcbf29ce484222325ULL;
  for (unsigned char c : text) {
    hash ^= c;
    hash *= 0x100000001b3ULL;
  }
  return hash;
}

std::uint64_t splitmix64(std::uint64_t x) {
  x += 0x9e3779b97f4a7c15ULL;
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
  x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
  return x ^ (x >> 31);
}

// A number in [0, 1) fixed by the seed, the rule, the body and how often the rule saw it.
double draw(std::uint64_t seed, const std::string& rule, std::uint64_t body,
            std::uint64_t occurrence) {
  const std::uint64_t x =
      splitmix64(seed ^ splitmix64(fnv1a(rule) ^ splitmix64(body ^ splitmix64(occurrence))));
  return static_cast<double>(x >> 11) / static_cast<double>(1ULL << 53);
}

Error invalid_rules(const std::string& message) {
  return Error(kInvalidRules, "fault rules: " + message, 400);
}

std::set<std::string> string_or_list(const Json& rule, const char* key, std::size_t index) {
  std::set<std::string> values;
  auto it = rule.find(key);
  if (it == rule.end()) return values;
  if (it->is_string()) {
    values.insert(it->get<std::string>());
  } else if (it->is_array()) {
    for (const Json& item : *it) {
      if (!item.is_string()) {
        throw invalid_rules("rule " + std::to_string(index) + ": " + key +
                            " must be a string or a list of strings");
      }
      values.insert(item.get<std::string>());
    }
  } else {
    throw invalid_rules("rule " + std::to_string(index) + ": " + key +
                        " must be a string or a list of strings");
  }
  values.erase("*");
  return values;
}

// The query protocol (Action=... form bodies) answers errors in XML; the JSON protocols in JSON.
bool is_query_protocol(const httplib::Request& req, std::string_view body) {
  return req.get_header_value("Content-Type").starts_with("application/x-www-form-urlencoded") ||
         body.starts_with("Action=");
}

void answer_error(const httplib::Request& req, std::string_view body, httplib::Response& res,
                  int status, const std::string& name, const std::string& message) {
  res.status = status;
  res.headers.erase("Content-Length");
  res.set_header("x-amzn-ErrorType", name);
  if (is_query_protocol(req, body)) {
    res.set_content("<ErrorResponse><Error><Type>" +
                        std::string(status >= 500 ? "Receiver" : "Sender") + "</Type><Code>" +
                        name + "</Code><Message>" + message + "</Message></Error><RequestId>" +
                        random_uuid() + "</RequestId></ErrorResponse>",
                    "text/xml");
    return;
  }
  std::string content_type = req.get_header_value("Content-Type");
  if (!content_type.starts_with("application/x-amz-json")) content_type = "application/json";
  res.set_content(dump_json(Json{{"__type", name}, {"message", message}}), content_type);
}

std::string form_value(std::string_view body, std::string_view key) {
  std::size_t pos = 0;
  while (pos < body.size()) {
    std::size_t amp = body.find('&', pos);
    if (amp == std::string_view::npos) amp = body.size();
    std::string_view pair = body.substr(pos, amp - pos);
    if (pair.starts_with(key) && pair.size() > key.size() && pair[key.size()] == '=') {
      return std::string(pair.substr(key.size() + 1));
    }
    pos = amp + 1;
  }
  return {};
}

// The digest of the task token of a SendTaskSuccess / SendTaskFailure / SendTaskHeartbeat, or
// "" for any other request (tokens are secrets: only digests are kept).
std::string callback_digest(const RequestFacts& facts, std::string_view body) {
  if (facts.service != "states" ||
      (facts.operation != "SendTaskSuccess" && facts.operation != "SendTaskFailure" &&
       facts.operation != "SendTaskHeartbeat")) {
    return {};
  }
  try {
    const Json request = Json::parse(body);
    const std::string token = request.value("taskToken", "");
    return token.empty() ? std::string() : aws::sha256_hex(token);
  } catch (const std::exception&) {
    return {};
  }
}

}  // namespace

std::string_view fault_kind_name(FaultKind kind) {
  for (const auto& k : kKinds) {
    if (k.kind == kind) return k.name;
  }
  return "unknown";
}

FaultRules parse_fault_rules(const Json& document) {
  if (!document.is_object()) throw invalid_rules("the document must be a JSON object");
  for (const auto& [key, value] : document.items()) {
    if (key != "seed" && key != "rules") throw invalid_rules("unknown field '" + key + "'");
  }
  FaultRules parsed;
  parsed.document = document;
  if (auto seed = document.find("seed"); seed != document.end()) {
    if (!seed->is_number_unsigned()) throw invalid_rules("seed must be a non-negative integer");
    parsed.seed = seed->get<std::uint64_t>();
  }
  const Json rules = document.value("rules", Json::array());
  if (!rules.is_array()) throw invalid_rules("rules must be a list");
  static const std::set<std::string> known = {
      "name",           "fault",  "service", "operation",      "body_contains",
      "access_key",     "header", "nth",     "first_per_body", "probability",
      "max_injections", "mode",   "status",  "error",          "delay_ms"};
  for (std::size_t i = 0; i < rules.size(); ++i) {
    const Json& r = rules[i];
    const std::string where = "rule " + std::to_string(i);
    if (!r.is_object()) throw invalid_rules(where + " must be an object");
    for (const auto& [key, value] : r.items()) {
      if (!known.contains(key)) throw invalid_rules(where + ": unknown field '" + key + "'");
    }
    FaultRule rule;
    rule.name = r.value("name", "rule" + std::to_string(i));
    const std::string fault = r.value("fault", "");
    const KindName* kind = nullptr;
    for (const auto& k : kKinds) {
      if (k.name == fault) kind = &k;
    }
    if (kind == nullptr) {
      throw invalid_rules(where +
                          ": fault must be one of lost-reply, refuse, latency, "
                          "duplicate, delay, drop (not '" +
                          fault + "')");
    }
    rule.kind = kind->kind;
    rule.services = string_or_list(r, "service", i);
    rule.operations = string_or_list(r, "operation", i);
    const bool completion =
        rule.services.size() == 1 && rule.services.contains(std::string(kCompletionService));
    if (kind->completion != completion) {
      throw invalid_rules(where + ": " + fault +
                          (kind->completion ? " applies to service \"completion\" only"
                                            : " does not apply to completion events"));
    }
    rule.body_contains = r.value("body_contains", "");
    rule.access_key = r.value("access_key", "");
    if (auto header = r.find("header"); header != r.end()) {
      if (!header->is_object() || !header->contains("name") || !header->at("name").is_string()) {
        throw invalid_rules(where + ": header must be {\"name\": ..., \"contains\": ...}");
      }
      rule.header_name = header->at("name").get<std::string>();
      rule.header_contains = header->value("contains", "");
    }
    rule.nth = r.value("nth", std::uint64_t{0});
    rule.first_per_body = r.value("first_per_body", false);
    rule.probability = r.value("probability", 1.0);
    if (rule.probability < 0 || rule.probability > 1) {
      throw invalid_rules(where + ": probability must be between 0 and 1");
    }
    rule.max_injections = r.value("max_injections", std::uint64_t{0});
    rule.mode = r.value("mode", "500");
    if (rule.kind == FaultKind::kLostReply && rule.mode != "500" && rule.mode != "drop" &&
        rule.mode != "stall") {
      throw invalid_rules(where + ": mode must be 500, drop or stall");
    }
    rule.error = r.value("error", rule.kind == FaultKind::kRefuse ? "ThrottlingException" : "");
    rule.status = r.value("status", 0);
    if (rule.kind == FaultKind::kRefuse && rule.status == 0) {
      for (const auto& known_error : kKnownErrors) {
        if (known_error.name == rule.error) rule.status = known_error.status;
      }
      if (rule.status == 0) {
        throw invalid_rules(where + ": error " + rule.error + " needs a status");
      }
    }
    if (rule.kind == FaultKind::kRefuse && (rule.status < 400 || rule.status > 599)) {
      throw invalid_rules(where + ": status must be an HTTP error status");
    }
    const auto delay = r.value("delay_ms", std::int64_t{rule.mode == "stall" ? 5000 : 0});
    if (delay < 0 || std::chrono::milliseconds(delay) > kMaxDelay) {
      throw invalid_rules(where + ": delay_ms must be between 0 and 120000");
    }
    rule.delay = std::chrono::milliseconds(delay);
    parsed.rules.push_back(std::move(rule));
  }
  return parsed;
}

RequestFacts describe_request(const httplib::Request& req, std::string_view body) {
  RequestFacts facts;
  // "AWS4-HMAC-SHA256 Credential=AKID/20240101/us-east-1/dynamodb/aws4_request, ..."
  const std::string authorization = req.get_header_value("Authorization");
  if (auto pos = authorization.find("Credential="); pos != std::string::npos) {
    const std::size_t start = pos + std::string_view("Credential=").size();
    const std::size_t end = authorization.find_first_of(", ", start);
    const std::string scope = authorization.substr(start, end - start);
    std::vector<std::string> parts;
    for (std::size_t p = 0; p <= scope.size();) {
      std::size_t slash = scope.find('/', p);
      if (slash == std::string::npos) slash = scope.size();
      parts.push_back(scope.substr(p, slash - p));
      p = slash + 1;
    }
    if (!parts.empty()) facts.access_key = parts[0];
    if (parts.size() >= 4) facts.service = parts[3];
  }
  const std::string target = req.get_header_value("X-Amz-Target");
  const std::size_t dot = target.find('.');
  if (facts.service.empty() && !target.empty()) {
    static const std::pair<std::string_view, std::string_view> prefixes[] = {
        {"DynamoDB", "dynamodb"}, {"AWSStepFunctions", "states"}, {"RedshiftData", "redshift-data"},
        {"AmazonSQS", "sqs"},     {"AWSEvents", "events"},        {"Logs", "logs"}};
    for (const auto& [prefix, service] : prefixes) {
      if (target.starts_with(prefix)) facts.service = service;
    }
  }
  if (facts.service.empty() && req.path.starts_with("/2015-03-31/functions")) {
    facts.service = "lambda";
  }
  if (facts.service.empty()) facts.service = "unknown";
  if (dot != std::string::npos) {
    facts.operation = target.substr(dot + 1);
  } else if (std::string action = form_value(body, "Action"); !action.empty()) {
    facts.operation = action;
  } else if (req.method == "POST" && req.path.starts_with("/2015-03-31/functions/") &&
             req.path.ends_with("/invocations")) {
    facts.operation = "Invoke";
  } else {
    facts.operation = req.method + " " + req.path;
  }
  return facts;
}

FaultInjector::FaultInjector(FaultRules rules) {
  replace(std::move(rules));
  delayed_thread_ = std::thread([this] { delayed_loop(); });
}

FaultInjector::~FaultInjector() {
  {
    std::lock_guard lock(mutex_);
    stopping_ = true;
  }
  pending_cv_.notify_all();
  if (delayed_thread_.joinable()) delayed_thread_.join();
}

void FaultInjector::replace(FaultRules rules) {
  std::lock_guard lock(mutex_);
  rules_ = std::move(rules);
  state_.assign(rules_.rules.size(), RuleState{});
  spdlog::info("faults: {} rule(s) in force, seed {}", rules_.rules.size(), rules_.seed);
}

void FaultInjector::reset_counters() {
  std::lock_guard lock(mutex_);
  state_.assign(rules_.rules.size(), RuleState{});
  requests_.clear();
  by_kind_.clear();
  by_operation_.clear();
  by_rule_name_.clear();
  accepted_callbacks_.clear();
  repeated_callbacks_.clear();
}

Json FaultInjector::counters() const {
  std::lock_guard lock(mutex_);
  Json rules = Json::object();
  for (const auto& [name, counts] : by_rule_name_) rules[name] = counts;
  return {{"requests", requests_},
          {"rules", rules},
          {"injected", by_kind_},
          {"injected_by_operation", by_operation_},
          {"accepted_callbacks", accepted_callbacks_},
          {"repeated_callbacks", repeated_callbacks_}};
}

std::optional<FaultRule> FaultInjector::fire(const RequestFacts& facts, std::string_view body,
                                             const httplib::Request* req) {
  const std::string& service = facts.service;
  const std::string& operation = facts.operation;
  const std::string where = service + ":" + operation;
  std::lock_guard lock(mutex_);
  ++requests_[where];
  std::optional<std::uint64_t> digest;
  for (std::size_t i = 0; i < rules_.rules.size(); ++i) {
    const FaultRule& rule = rules_.rules[i];
    if (!rule.services.empty() && !rule.services.contains(service)) continue;
    if (!rule.operations.empty() && !rule.operations.contains(operation)) continue;
    if (!rule.body_contains.empty() && body.find(rule.body_contains) == std::string_view::npos) {
      continue;
    }
    if (!rule.access_key.empty() && facts.access_key != rule.access_key) continue;
    if (!rule.header_name.empty() &&
        (req == nullptr || !req->has_header(rule.header_name) ||
         req->get_header_value(rule.header_name).find(rule.header_contains) == std::string::npos)) {
      continue;
    }
    RuleState& state = state_[i];
    ++state.matches;
    ++by_rule_name_[rule.name]["matched"];
    if (!digest) digest = fnv1a(body);
    const std::uint64_t occurrence = ++state.seen[*digest];
    if (rule.nth != 0 && state.matches != rule.nth) continue;
    if (rule.first_per_body && occurrence != 1) continue;
    if (rule.max_injections != 0 && state.injections >= rule.max_injections) continue;
    if (rule.probability < 1.0 &&
        draw(rules_.seed, rule.name, *digest, occurrence) >= rule.probability) {
      continue;
    }
    ++state.injections;
    ++by_rule_name_[rule.name]["injected"];
    const std::string kind(fault_kind_name(rule.kind));
    ++by_kind_[kind];
    ++by_operation_[where][kind];
    spdlog::info("faults: rule {} injects {} ({}) into {}", rule.name, kind, rule.mode, where);
    return rule;
  }
  return std::nullopt;
}

bool FaultInjector::control(const httplib::Request& req, const std::string& body,
                            httplib::Response& res) {
  if (req.path != kControlPath) return false;
  auto refuse = [&](int status, const std::string& name, const std::string& message) {
    res.status = status;
    res.set_content(dump_json(Json{{"__type", name}, {"message", message}}), "application/json");
  };
  if (req.get_header_value(kControlHeader) != "faults" || req.has_header("Authorization") ||
      req.has_header("X-Amz-Target")) {
    refuse(400, "InvalidControlRequest",
           std::string(kControlPath) + " takes only unsigned requests with " + kControlHeader +
               ": faults");
    return true;
  }
  try {
    if (req.method == "GET") {
      Json answer;
      {
        std::lock_guard lock(mutex_);
        answer["rules"] = rules_.document;
      }
      answer["counters"] = counters();
      res.set_content(dump_json(answer), "application/json");
    } else if (req.method == "PUT") {
      FaultRules rules = parse_fault_rules(parse_json(body, "the fault rules", kInvalidRules));
      const std::size_t count = rules.rules.size();
      replace(std::move(rules));
      res.set_content(dump_json(Json{{"rules", count}}), "application/json");
    } else if (req.method == "DELETE") {
      reset_counters();
      res.set_content(R"({"counters":"reset"})", "application/json");
    } else {
      refuse(405, "MethodNotAllowed", "use GET, PUT or DELETE");
    }
  } catch (const Error& e) {
    refuse(e.http_status() > 0 ? e.http_status() : 400, e.name(), e.message());
  }
  return true;
}

EdgeFault FaultInjector::before(const httplib::Request& req, const std::string& body,
                                httplib::Response& res) {
  EdgeFault decision;
  decision.facts = describe_request(req, body);
  if (const std::string digest = callback_digest(decision.facts, body); !digest.empty()) {
    // A task already answered is closed: AWS refuses any further callback on it with
    // TaskTimedOut, where moto would accept a second one while the execution runs.
    std::lock_guard lock(mutex_);
    if (accepted_callbacks_.contains(digest)) {
      ++repeated_callbacks_[digest];
      answer_error(req, body, res, 400, "TaskTimedOut",
                   "Task Timed Out: 'Provided task does not exist anymore'");
      decision.answered = true;
      return decision;
    }
  }
  std::optional<FaultRule> rule = fire(decision.facts, body, &req);
  if (!rule) return decision;
  switch (rule->kind) {
    case FaultKind::kRefuse:
      answer_error(req, body, res, rule->status, rule->error,
                   "tasker-local fault " + rule->name + ": refused before it was applied");
      decision.answered = true;
      break;
    case FaultKind::kLatency:
      std::this_thread::sleep_for(rule->delay);
      break;
    case FaultKind::kLostReply:
      decision.lost_reply = std::move(rule);
      break;
    default:
      break;
  }
  return decision;
}

void FaultInjector::after(const EdgeFault& fault, const httplib::Request& req,
                          const std::string& body, httplib::Response& res) {
  if (res.status == 200 && fault.facts.operation != "SendTaskHeartbeat") {
    if (const std::string digest = callback_digest(fault.facts, body); !digest.empty()) {
      std::lock_guard lock(mutex_);
      ++accepted_callbacks_[digest];
    }
  }
  if (!fault.lost_reply) return;
  const FaultRule& rule = *fault.lost_reply;
  if (rule.mode == "500") {
    answer_error(req, body, res, 500, "InternalServerError",
                 "tasker-local fault " + rule.name + ": the request was applied, its answer lost");
    return;
  }
  if (rule.mode == "stall") std::this_thread::sleep_for(rule.delay);
  // A declared length, half of it sent, then the connection closed: the client sees its
  // transport fail mid-answer, as when a connection resets.
  std::string content = res.body.empty() ? std::string(64, ' ') : std::move(res.body);
  const std::string content_type = res.get_header_value("Content-Type").empty()
                                       ? std::string("application/json")
                                       : res.get_header_value("Content-Type");
  res.body.clear();
  res.headers.erase("Content-Type");
  res.headers.erase("Content-Length");
  const std::size_t length = content.size();
  res.set_content_provider(
      length, content_type,
      [content = std::move(content)](std::size_t offset, std::size_t, httplib::DataSink& sink) {
        if (offset == 0) sink.write(content.data(), content.size() / 2);
        return false;
      });
}

std::function<void(const services::EventEntry&)> FaultInjector::wrap_publish(
    std::function<void(const services::EventEntry&)> publish) {
  return [this, publish = std::move(publish)](const services::EventEntry& entry) {
    std::string state = "unknown";
    try {
      state = Json::parse(entry.detail).value("state", "unknown");
    } catch (const std::exception&) {
      // an unreadable detail is published as it is; rules see it as state "unknown"
    }
    std::optional<FaultRule> rule =
        fire({std::string(kCompletionService), state, ""}, entry.detail, nullptr);
    if (!rule) {
      publish(entry);
      return;
    }
    switch (rule->kind) {
      case FaultKind::kDrop:
        return;
      case FaultKind::kDuplicate:
        publish(entry);
        publish(entry);
        return;
      case FaultKind::kDelay: {
        {
          std::lock_guard lock(mutex_);
          pending_.push_back({Clock::now() + rule->delay, entry, publish});
        }
        pending_cv_.notify_all();
        return;
      }
      default:
        publish(entry);
        return;
    }
  };
}

void FaultInjector::delayed_loop() {
  std::unique_lock lock(mutex_);
  while (!stopping_) {
    if (pending_.empty()) {
      pending_cv_.wait(lock);
      continue;
    }
    auto next = std::min_element(pending_.begin(), pending_.end(),
                                 [](const Pending& a, const Pending& b) { return a.due < b.due; });
    if (const auto due = next->due; due > Clock::now()) {
      // A copy: pending_ may grow (and move its elements) while this waits.
      pending_cv_.wait_until(lock, due);
      continue;
    }
    Pending due = std::move(*next);
    pending_.erase(next);
    lock.unlock();
    try {
      due.publish(due.entry);
    } catch (const std::exception& e) {
      spdlog::warn("faults: publishing a delayed completion event failed: {}", e.what());
    }
    lock.lock();
  }
}

}  // namespace rstasker::local
