// EventBridge PutEvents, with per-entry failures turned into an Error.
#include "rstasker/services/event_bridge.hpp"

#include "rstasker/common/error.hpp"

namespace rstasker::services {

EventBridge::EventBridge(std::shared_ptr<const aws::JsonClient> client)
    : client_(std::move(client)) {}

void EventBridge::put_events(const std::vector<EventEntry>& entries,
                             const aws::CallContext& context) const {
  Json list = Json::array();
  for (const auto& e : entries) {
    Json entry = {{"Source", e.source},
                  {"DetailType", e.detail_type},
                  {"Detail", e.detail},
                  {"Resources", e.resources}};
    if (!e.event_bus_name.empty()) entry["EventBusName"] = e.event_bus_name;
    list.push_back(std::move(entry));
  }
  Json response = client_->call("PutEvents", {{"Entries", list}}, context);
  if (response.value("FailedEntryCount", 0) > 0) {
    std::string reason = "PutEvents refused an entry";
    for (const auto& r : response.value("Entries", Json::array())) {
      if (r.contains("ErrorCode")) {
        reason += ": " + r.value("ErrorCode", std::string()) + " " +
                  r.value("ErrorMessage", std::string());
        break;
      }
    }
    throw Error("PutEventsFailed", reason);
  }
}

}  // namespace rstasker::services
