// Lambda's SQS event-source mappings, run by tasker-local: the mappings registered in moto are
// read periodically; each enabled SQS mapping gets a poller that receives batches, invokes the
// function synchronously with the SQS event, and deletes what succeeded. What is not deleted
// becomes visible again after the queue's visibility timeout, and moto's SQS moves a message to
// the queue's dead-letter queue once it has been received maxReceiveCount times.
#pragma once

#include <chrono>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>

#include "local/lambda_service.hpp"
#include "local/moto_client.hpp"

namespace rstasker::local {

struct EventSourceOptions {
  // How often the mappings are listed again (a stack deployed later is picked up).
  std::chrono::milliseconds refresh_interval{2000};
  // ReceiveMessage's WaitTimeSeconds. Also bounds how long stopping a poller takes.
  int wait_seconds = 2;
};

class EventSourcePollers {
 public:
  EventSourcePollers(EventSourceOptions options, std::shared_ptr<const MotoClient> moto,
                     LambdaService& lambda);
  // stop()
  ~EventSourcePollers();
  EventSourcePollers(const EventSourcePollers&) = delete;
  EventSourcePollers& operator=(const EventSourcePollers&) = delete;

  // Starts the refresh thread (which starts and stops the pollers).
  void start();
  // Stops every poller and the refresh thread, and joins them. A batch being processed finishes
  // first (its invocation ends when LambdaService shuts down). Idempotent.
  void stop();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

// Reads a function's answer to an SQS batch under ReportBatchItemFailures: the message ids to
// keep (retry), or nullopt when the whole batch counts as failed. As Lambda does: no answer
// (empty or blank), JSON that is not an object (`null` among them), or a null/empty
// batchItemFailures is full success; an answer that is not valid JSON, a batchItemFailures that
// is not a list, or an entry whose itemIdentifier is missing, null, empty, not a string or not a
// message of the batch, fails the whole batch.
std::optional<std::set<std::string>> batch_item_failures(std::string_view response,
                                                         const std::set<std::string>& batch_ids);

}  // namespace rstasker::local
