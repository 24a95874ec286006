// EventBridge PutEvents (JSON 1.1): how tasker-local publishes Data API completion events.
#pragma once

#include <memory>
#include <string>
#include <vector>

#include "rstasker/aws/json_client.hpp"

namespace rstasker::services {

struct EventEntry {
  std::string source;
  std::string detail_type;
  std::string detail;  // JSON text
  std::vector<std::string> resources;
  std::string event_bus_name;  // empty: the default bus
};

class EventBridge {
 public:
  explicit EventBridge(std::shared_ptr<const aws::JsonClient> client);
  // Publishes the entries (at most 10). Throws Error when the call fails or any entry is refused.
  void put_events(const std::vector<EventEntry>& entries, const aws::CallContext& context) const;

 private:
  std::shared_ptr<const aws::JsonClient> client_;
};

}  // namespace rstasker::services
