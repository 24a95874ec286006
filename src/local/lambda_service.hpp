// tasker-local's Lambda: runs the custom-runtime functions registered in moto as local processes,
// each instance with a Runtime API (2018-06-01) of its own, kept warm and reused, several at once
// per function. The edge's Invoke API and the event-source pollers both invoke through here.
#pragma once

#include <chrono>
#include <filesystem>
#include <memory>
#include <string>
#include <vector>

#include "local/code_store.hpp"
#include "local/moto_client.hpp"
#include "rstasker/aws/credentials.hpp"

namespace rstasker::local {

struct LambdaOptions {
  std::string region = "us-east-1";
  // AWS_ENDPOINT_URL given to functions: the edge, so their calls reach tasker-local and moto.
  std::string endpoint_url;
  // The credentials functions run with (Lambda would give them the execution role's).
  aws::Credentials function_credentials;
  // Run this program as every function's bootstrap instead of the one in its zip (tests, or a
  // freshly built binary without redeploying). Its directory is the task root.
  std::filesystem::path bootstrap_override;
  // Function output: <log_dir>/<function name>/<start time>-<instance id>.log, one per instance,
  // with Lambda's START / END / REPORT lines around each invocation.
  std::filesystem::path log_dir;
  // Instances per function at most (a function's reserved concurrency lowers it). Invocations
  // beyond it wait for an instance instead of being throttled.
  int max_instances = 8;
  // An instance must ask for its first invocation within this long after it starts.
  std::chrono::seconds init_timeout{10};
  // Idle instances are stopped after this long (Lambda recycles environments too).
  std::chrono::seconds idle_timeout{600};
  // How long a GetFunction answer is reused (event-source batches invoke back to back).
  std::chrono::milliseconds config_ttl{1000};
  // Threads running asynchronous (Event) invocations.
  int async_workers = 4;
  // Variables of tasker-local's own environment passed on to functions (beyond Lambda's own).
  std::vector<std::string> inherited_env{"PATH",         "LANG",          "TZ",
                                         "ASAN_OPTIONS", "UBSAN_OPTIONS", "LSAN_OPTIONS"};
};

enum class InvocationType { kRequestResponse, kEvent, kDryRun };

struct InvokeRequest {
  std::string function;   // name, ARN or partial ARN, optionally ending in :<qualifier>
  std::string qualifier;  // ?Qualifier=
  std::string payload;
  std::string client_context;  // X-Amz-Client-Context (base64), passed to the runtime
  std::string trace_id;        // X-Amzn-Trace-Id, passed to the runtime
  bool tail_log = false;       // X-Amz-Log-Type: Tail
};

struct InvokeResult {
  int status = 200;            // 200 RequestResponse, 202 Event, 204 DryRun
  std::string payload;         // the response, or the error JSON when function_error is set
  std::string function_error;  // "" or "Unhandled"
  std::string executed_version = "$LATEST";
  std::string request_id;
  std::string log_tail;  // with tail_log: the last 4 KB the instance wrote during the invocation
};

class LambdaService {
 public:
  LambdaService(LambdaOptions options, std::shared_ptr<const MotoClient> moto,
                std::shared_ptr<CodeStore> code);
  // shutdown()
  ~LambdaService();
  LambdaService(const LambdaService&) = delete;
  LambdaService& operator=(const LambdaService&) = delete;

  // Invokes a function as Lambda's Invoke API does. Function errors (the function reported one,
  // timed out, crashed, or failed to start) are results with function_error "Unhandled", not
  // exceptions. Throws rstasker::Error with Lambda's name and HTTP status for what Lambda answers
  // as an API error: ResourceNotFoundException (404, not in moto), InvalidRuntimeException (502,
  // not a provided.* zip function), RequestTooLargeException (413), InvalidRequestContentException
  // (400, payload not JSON), TooManyRequestsException (429, reserved concurrency 0),
  // ServiceException (500: code not obtainable, shutting down). Safe from any thread; blocks for a
  // RequestResponse invocation until it completes.
  InvokeResult invoke(const InvokeRequest& request, InvocationType type);

  // Why `function` cannot be run here (not in moto, not a provided.* zip function), or "" when it
  // can. Event-source pollers leave the messages of such functions alone.
  std::string why_not_runnable(const std::string& function);

  // Stops accepting invocations, fails queued ones, kills every instance, and joins every thread.
  // Idempotent.
  void shutdown();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace rstasker::local
