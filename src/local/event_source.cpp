// SQS event-source mappings: one refresh thread that follows moto's mapping list, one poller
// thread per enabled SQS mapping.
#include "local/event_source.hpp"

#include <spdlog/spdlog.h>

#include <atomic>
#include <condition_variable>
#include <map>
#include <mutex>
#include <thread>
#include <utility>
#include <vector>

#include "rstasker/aws/json_client.hpp"
#include "rstasker/common/error.hpp"
#include "rstasker/common/json.hpp"

namespace rstasker::local {
namespace {

constexpr auto kListTimeout = std::chrono::seconds(10);
constexpr auto kDeleteTimeout = std::chrono::seconds(10);
constexpr auto kRetryPause = std::chrono::seconds(2);
constexpr int kMaxReceive = 10;  // ReceiveMessage's MaxNumberOfMessages limit

struct MappingConfig {
  std::string uuid;
  std::string function_arn;
  std::string queue_arn;
  std::string queue_name;
  std::string account;
  std::string region;
  int batch_size = 10;
  int batching_window_seconds = 0;
  bool report_batch_item_failures = false;

  bool operator==(const MappingConfig&) const = default;
};

// An enabled SQS mapping from a ListEventSourceMappings entry, or nullopt.
std::optional<MappingConfig> sqs_mapping(const Json& entry) {
  MappingConfig config;
  config.uuid = string_member(entry, "UUID");
  config.function_arn = string_member(entry, "FunctionArn");
  config.queue_arn = string_member(entry, "EventSourceArn");
  if (config.uuid.empty() || config.function_arn.empty() ||
      !config.queue_arn.starts_with("arn:aws:sqs:") || string_member(entry, "State") != "Enabled") {
    return std::nullopt;
  }
  // arn:aws:sqs:<region>:<account>:<name>
  std::vector<std::string> parts;
  std::size_t pos = 0;
  while (parts.size() < 5) {
    std::size_t colon = config.queue_arn.find(':', pos);
    if (colon == std::string::npos) return std::nullopt;
    parts.push_back(config.queue_arn.substr(pos, colon - pos));
    pos = colon + 1;
  }
  config.region = parts[3];
  config.account = parts[4];
  config.queue_name = config.queue_arn.substr(pos);
  if (auto it = entry.find("BatchSize"); it != entry.end() && it->is_number()) {
    config.batch_size = std::max(1, it->get<int>());
  }
  if (auto it = entry.find("MaximumBatchingWindowInSeconds");
      it != entry.end() && it->is_number()) {
    config.batching_window_seconds = std::max(0, it->get<int>());
  }
  if (auto it = entry.find("FunctionResponseTypes"); it != entry.end() && it->is_array()) {
    for (const Json& type : *it) {
      if (type == "ReportBatchItemFailures") config.report_batch_item_failures = true;
    }
  }
  return config;
}

// The Lambda event record of one received message.
Json event_record(const Json& message, const MappingConfig& mapping) {
  Json attributes = Json::object();
  if (auto it = message.find("Attributes"); it != message.end() && it->is_object()) {
    attributes = *it;
  }
  Json message_attributes = Json::object();
  if (auto it = message.find("MessageAttributes"); it != message.end() && it->is_object()) {
    for (const auto& [name, value] : it->items()) {
      Json converted{{"stringListValues", Json::array()},
                     {"binaryListValues", Json::array()},
                     {"dataType", value.value("DataType", "String")}};
      if (value.contains("StringValue")) converted["stringValue"] = value["StringValue"];
      if (value.contains("BinaryValue")) converted["binaryValue"] = value["BinaryValue"];
      message_attributes[name] = std::move(converted);
    }
  }
  Json record{{"messageId", message.value("MessageId", "")},
              {"receiptHandle", message.value("ReceiptHandle", "")},
              {"body", message.value("Body", "")},
              {"attributes", std::move(attributes)},
              {"messageAttributes", std::move(message_attributes)},
              {"md5OfBody", message.value("MD5OfBody", "")},
              {"eventSource", "aws:sqs"},
              {"eventSourceARN", mapping.queue_arn},
              {"awsRegion", mapping.region}};
  if (auto it = message.find("MD5OfMessageAttributes"); it != message.end() && it->is_string()) {
    record["md5OfMessageAttributes"] = *it;
  }
  return record;
}

}  // namespace

std::optional<std::set<std::string>> batch_item_failures(std::string_view response,
                                                         const std::set<std::string>& batch_ids) {
  if (response.find_first_not_of(" \t\r\n") == std::string_view::npos) {
    return std::set<std::string>{};  // no answer at all: the batch succeeded
  }
  Json answer;
  try {
    answer = parse_json(response, "response", "InvalidResponse");
  } catch (const Error&) {
    return std::nullopt;  // an answer that is not JSON could be hiding failures
  }
  if (!answer.is_object()) return std::set<std::string>{};
  auto failures = answer.find("batchItemFailures");
  if (failures == answer.end() || failures->is_null()) return std::set<std::string>{};
  if (!failures->is_array()) return std::nullopt;
  std::set<std::string> keep;
  for (const Json& item : *failures) {
    if (!item.is_object()) return std::nullopt;
    auto id = item.find("itemIdentifier");
    if (id == item.end() || !id->is_string()) return std::nullopt;
    const std::string text = id->get<std::string>();
    if (text.empty() || !batch_ids.contains(text)) return std::nullopt;
    keep.insert(text);
  }
  return keep;
}

class EventSourcePollers::Impl {
 public:
  Impl(EventSourceOptions options, std::shared_ptr<const MotoClient> moto, LambdaService& lambda)
      : options_(options),
        moto_(std::move(moto)),
        lambda_(lambda),
        sqs_(moto_->json_client(aws::protocol::kSqs, aws::service::kSqs)) {}

  ~Impl() { stop(); }

  void start() {
    std::lock_guard lock(mutex_);
    if (refresher_.joinable() || stopping_) return;
    refresher_ = std::thread([this] { refresh_loop(); });
  }

  void stop() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
    }
    changed_.notify_all();
    if (refresher_.joinable()) refresher_.join();
    std::map<std::string, std::unique_ptr<Poller>> pollers;
    {
      std::lock_guard lock(mutex_);
      pollers.swap(pollers_);
    }
    for (auto& [uuid, poller] : pollers) poller->stop = true;
    changed_.notify_all();
    for (auto& [uuid, poller] : pollers) {
      if (poller->thread.joinable()) poller->thread.join();
    }
  }

 private:
  struct Poller {
    std::mutex mutex;
    MappingConfig config;  // guarded by mutex: a refresh may change it
    std::atomic<bool> stop{false};
    std::thread thread;
    std::string queue_url;  // poller thread only
  };

  // Waits `duration` unless stopping; returns false when stopping.
  bool pause(std::chrono::milliseconds duration, const std::atomic<bool>* also = nullptr) {
    std::unique_lock lock(mutex_);
    changed_.wait_for(lock, duration, [&] { return stopping_ || (also && also->load()); });
    return !stopping_ && !(also && also->load());
  }

  void refresh_loop() {
    bool warned = false;
    do {
      try {
        refresh();
        warned = false;
      } catch (const Error& e) {
        if (!warned) {
          spdlog::warn("event sources: cannot list event-source mappings: {}: {}", e.name(),
                       e.message());
        }
        warned = true;
      }
    } while (pause(options_.refresh_interval));
  }

  void refresh() {
    std::map<std::string, MappingConfig> wanted;
    std::string marker;
    do {
      std::string path = "/2015-03-31/event-source-mappings/?MaxItems=100";
      if (!marker.empty()) path += "&Marker=" + encode_path_segment(marker);
      Json page = moto_->rest_json("GET", path, nullptr, Deadline::after(kListTimeout));
      if (auto it = page.find("EventSourceMappings"); it != page.end() && it->is_array()) {
        for (const Json& entry : *it) {
          if (auto config = sqs_mapping(entry)) wanted[config->uuid] = *config;
        }
      }
      marker = string_member(page, "NextMarker");
    } while (!marker.empty());

    std::vector<std::unique_ptr<Poller>> finished;
    {
      std::lock_guard lock(mutex_);
      if (stopping_) return;
      for (auto it = pollers_.begin(); it != pollers_.end();) {
        if (!wanted.contains(it->first)) {
          spdlog::info("event sources: mapping {} is gone or disabled; stopping its poller",
                       it->first);
          it->second->stop = true;
          finished.push_back(std::move(it->second));
          it = pollers_.erase(it);
        } else {
          ++it;
        }
      }
      for (auto& [uuid, config] : wanted) {
        auto existing = pollers_.find(uuid);
        if (existing != pollers_.end()) {
          std::lock_guard poller_lock(existing->second->mutex);
          existing->second->config = config;
          continue;
        }
        spdlog::info("event sources: polling {} for {} (batch size {}{})", config.queue_arn,
                     config.function_arn, config.batch_size,
                     config.report_batch_item_failures ? ", ReportBatchItemFailures" : "");
        auto poller = std::make_unique<Poller>();
        poller->config = config;
        Poller* raw = poller.get();
        poller->thread = std::thread([this, raw] { poll_loop(*raw); });
        pollers_[uuid] = std::move(poller);
      }
    }
    changed_.notify_all();
    for (auto& poller : finished) {
      if (poller->thread.joinable()) poller->thread.join();
    }
  }

  void poll_loop(Poller& poller) {
    bool warned = false;
    std::string not_runnable;
    while (!poller.stop && !stopping_) {
      MappingConfig mapping;
      {
        std::lock_guard lock(poller.mutex);
        mapping = poller.config;
      }
      // A function tasker-local cannot run must not have its messages taken (they would only
      // come back, and end in the dead-letter queue).
      if (std::string why = lambda_.why_not_runnable(mapping.function_arn); !why.empty()) {
        if (why != not_runnable) {
          spdlog::warn("event sources: not polling {} for {}: {}", mapping.queue_arn,
                       mapping.function_arn, why);
        }
        not_runnable = why;
        pause(options_.refresh_interval, &poller.stop);
        continue;
      }
      not_runnable.clear();
      try {
        if (poller.queue_url.empty()) {
          Json answer = sqs_->call(
              "GetQueueUrl",
              {{"QueueName", mapping.queue_name}, {"QueueOwnerAWSAccountId", mapping.account}},
              {Deadline::after(kListTimeout), {}});
          poller.queue_url = string_member(answer, "QueueUrl");
        }
        poll_once(poller, mapping);
        warned = false;
      } catch (const Error& e) {
        if (!warned) {
          spdlog::warn("event sources: {}: {}: {}", mapping.queue_arn, e.name(), e.message());
        }
        warned = true;
        poller.queue_url.clear();
        pause(kRetryPause, &poller.stop);
      }
    }
  }

  std::vector<Json> receive(const Poller& poller, const MappingConfig& mapping) {
    std::vector<Json> messages;
    const auto window_end =
        std::chrono::steady_clock::now() + std::chrono::seconds(mapping.batching_window_seconds);
    int wait = options_.wait_seconds;
    while (!poller.stop && !stopping_ && static_cast<int>(messages.size()) < mapping.batch_size) {
      const int want =
          std::min(kMaxReceive, mapping.batch_size - static_cast<int>(messages.size()));
      Json request{{"QueueUrl", poller.queue_url},
                   {"MaxNumberOfMessages", want},
                   {"WaitTimeSeconds", wait},
                   {"AttributeNames", {"All"}},
                   {"MessageSystemAttributeNames", {"All"}},
                   {"MessageAttributeNames", {"All"}}};
      Json answer = sqs_->call("ReceiveMessage", request,
                               {Deadline::after(std::chrono::seconds(wait + 10)), {}});
      const auto got = answer.find("Messages");
      const std::size_t count = got != answer.end() && got->is_array() ? got->size() : 0;
      if (count > 0) {
        for (const Json& message : *got) messages.push_back(message);
      }
      // Keep filling the batch only within the batching window, and only while messages come.
      const auto left = window_end - std::chrono::steady_clock::now();
      if (messages.empty() || count == 0 || left <= std::chrono::seconds(0)) break;
      wait = static_cast<int>(std::min<long>(
          options_.wait_seconds, std::chrono::duration_cast<std::chrono::seconds>(left).count()));
    }
    return messages;
  }

  void poll_once(Poller& poller, const MappingConfig& mapping) {
    std::vector<Json> messages = receive(poller, mapping);
    if (messages.empty()) return;

    Json records = Json::array();
    std::set<std::string> ids;
    std::map<std::string, std::string> receipts;  // message id -> receipt handle
    for (const Json& message : messages) {
      records.push_back(event_record(message, mapping));
      const std::string id = message.value("MessageId", "");
      ids.insert(id);
      receipts[id] = message.value("ReceiptHandle", "");
    }
    InvokeRequest request;
    request.function = mapping.function_arn;
    request.payload = dump_json(Json{{"Records", std::move(records)}});

    InvokeResult result;
    try {
      result = lambda_.invoke(request, InvocationType::kRequestResponse);
    } catch (const Error& e) {
      spdlog::warn(
          "event sources: {} -> {}: {} messages not delivered ({}: {}); they return "
          "after the visibility timeout",
          mapping.queue_name, mapping.function_arn, messages.size(), e.name(), e.message());
      pause(kRetryPause, &poller.stop);
      return;
    }
    if (!result.function_error.empty()) {
      spdlog::info(
          "event sources: {} -> {}: function error; {} messages return after the "
          "visibility timeout",
          mapping.queue_name, mapping.function_arn, messages.size());
      return;
    }
    std::set<std::string> keep;
    if (mapping.report_batch_item_failures) {
      auto failures = batch_item_failures(result.payload, ids);
      if (!failures) {
        spdlog::warn(
            "event sources: {} -> {}: the answer is not JSON or its batchItemFailures is "
            "malformed, so the whole batch of {} is retried: {}",
            mapping.queue_name, mapping.function_arn, messages.size(),
            result.payload.substr(0, 300));
        return;
      }
      keep = std::move(*failures);
    }
    Json entries = Json::array();
    for (const auto& [id, receipt] : receipts) {
      if (keep.contains(id)) continue;
      entries.push_back({{"Id", std::to_string(entries.size())}, {"ReceiptHandle", receipt}});
      if (entries.size() == static_cast<std::size_t>(kMaxReceive)) {
        delete_batch(poller, entries);
        entries = Json::array();
      }
    }
    if (!entries.empty()) delete_batch(poller, entries);
    spdlog::info("event sources: {} -> {}: batch of {} handled, {} deleted, {} left to retry",
                 mapping.queue_name, mapping.function_arn, messages.size(),
                 messages.size() - keep.size(), keep.size());
  }

  void delete_batch(const Poller& poller, const Json& entries) {
    Json answer =
        sqs_->call("DeleteMessageBatch", {{"QueueUrl", poller.queue_url}, {"Entries", entries}},
                   {Deadline::after(kDeleteTimeout), {}});
    if (auto failed = answer.find("Failed");
        failed != answer.end() && failed->is_array() && !failed->empty()) {
      spdlog::warn("event sources: DeleteMessageBatch refused {} entries: {}", failed->size(),
                   failed->dump().substr(0, 300));
    }
  }

  EventSourceOptions options_;
  std::shared_ptr<const MotoClient> moto_;
  LambdaService& lambda_;
  std::shared_ptr<aws::JsonClient> sqs_;

  std::mutex mutex_;
  std::condition_variable changed_;
  std::atomic<bool> stopping_{false};
  std::thread refresher_;
  std::map<std::string, std::unique_ptr<Poller>> pollers_;
};

EventSourcePollers::EventSourcePollers(EventSourceOptions options,
                                       std::shared_ptr<const MotoClient> moto,
                                       LambdaService& lambda)
    : impl_(std::make_unique<Impl>(options, std::move(moto), lambda)) {}

EventSourcePollers::~EventSourcePollers() = default;

void EventSourcePollers::start() {
  impl_->start();
}

void EventSourcePollers::stop() {
  impl_->stop();
}

}  // namespace rstasker::local
