// The tasker: one event in, one response out. Dispatches on the event's shape to the action API,
// completion batches and custom resources.
#pragma once

#include <memory>
#include <string>
#include <string_view>

#include "rstasker/aws/json_client.hpp"
#include "rstasker/common/json.hpp"
#include "rstasker/services/cfn_response.hpp"
#include "rstasker/services/redshift_data.hpp"
#include "rstasker/services/step_functions.hpp"
#include "rstasker/tasker/cloudformation.hpp"
#include "rstasker/tasker/completions.hpp"
#include "rstasker/tasker/config.hpp"
#include "rstasker/tasker/events.hpp"
#include "rstasker/tasker/launcher.hpp"
#include "rstasker/tasker/notifier.hpp"
#include "rstasker/tasker/query_runner.hpp"
#include "rstasker/tasker/reconciler.hpp"
#include "rstasker/tasker/state_table.hpp"

namespace rstasker::tasker {

// The services the tasker talks to (real clients in production, fakes in unit tests).
struct Dependencies {
  std::shared_ptr<services::RedshiftData> redshift;
  std::shared_ptr<StateTable> state;
  std::shared_ptr<services::StepFunctions> step_functions;
  std::shared_ptr<services::CfnResponder> cloudformation;
};

class Tasker {
 public:
  Tasker(Config config, Dependencies dependencies, CompletionOptions completion_options = {});

  // Handles one event. Returns the response; throws Error for a function error (its name is the
  // errorType callers Catch: InvalidRequest, ConcurrentExecution, ... or the AWS error name).
  Json handle(const Json& event, const aws::CallContext& context);

  // The same for an event already checked by check_event() or read_event() (events.hpp).
  Json handle(const CheckedEvent& event, const aws::CallContext& context);

  // Reads `payload` with read_event() (bounded: depth, UTF-8) and handles it; returns the
  // response text.
  std::string handle_payload(std::string_view payload, const aws::CallContext& context);

  const Config& config() const { return config_; }

 private:
  Json run_action(const Json& event, const ActionRequest& request, const aws::CallContext& context);
  // Tells `waiter` how the already completed statement of `record` ended (a repeated start with
  // the same idempotency key, whose earlier waiter has been answered).
  void answer_finished(const StatementRecord& record, const Waiter& waiter,
                       const aws::CallContext& context);
  std::string resolve_statement_id(const std::string& statement_id,
                                   const std::string& execution_arn,
                                   const aws::CallContext& context);

  Config config_;
  Dependencies deps_;
  Launcher launcher_;
  CustomResources custom_resources_;
  Notifier notifier_;
  Completions completions_;
  Reconciler reconciler_;
  QueryRunner query_runner_;
  bool cold_ = true;  // no event handled yet: the next one counts as a cold start
};

}  // namespace rstasker::tasker
