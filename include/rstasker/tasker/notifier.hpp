// Calling a waiter back: Step Functions task tokens and CloudFormation response URLs.
#pragma once

#include <memory>

#include "rstasker/aws/json_client.hpp"
#include "rstasker/services/step_functions.hpp"
#include "rstasker/tasker/cloudformation.hpp"
#include "rstasker/tasker/outcome.hpp"
#include "rstasker/tasker/state_table.hpp"

namespace rstasker::tasker {

// The part of `waiter` that must never reach a log or an error: its task token, or its
// CloudFormation response URL; "" when it has none. Every path that calls a waiter back
// (completion events, reconcile, custom resources) registers it as a secret for its duration.
std::string waiter_secret(const Waiter& waiter);

class Notifier {
 public:
  Notifier(std::shared_ptr<services::StepFunctions> step_functions,
           CustomResources& custom_resources);

  // Tells `waiter` how its statement ended. Step Functions: SendTaskSuccess with the completion
  // event as output, or SendTaskFailure with error FAILED and a JSON cause {state, statementId,
  // statementName, error}. CloudFormation: the response PUT. Returns normally once delivered, or
  // when the waiter no longer exists (TaskTimedOut, TaskDoesNotExist, InvalidToken; a response
  // URL that refuses the PUT with a 4xx: logged as a warning); throws Error when delivery failed
  // and may succeed later.
  void notify(const Waiter& waiter, const Outcome& outcome, const aws::CallContext& context);

  // Whether `waiter` still waits, for a claim taken over from a claimant that died mid-way (it
  // may already have called back). Step Functions: a heartbeat on the token tells (a closed task
  // answers TaskTimedOut / InvalidToken), so the task is called back exactly once. A
  // CloudFormation response URL (a pre-signed S3 PUT) cannot be asked: true, so a claimant that
  // died between its PUT and marking the record done gets the response PUT a second time. That
  // PUT carries the identical body (CustomResources::respond_completion is deterministic), so it
  // overwrites the S3 object with the same bytes. Throws Error when the answer is unknown.
  bool still_waiting(const Waiter& waiter, const aws::CallContext& context);

 private:
  std::shared_ptr<services::StepFunctions> step_functions_;
  CustomResources& custom_resources_;
};

// The cause sent with SendTaskFailure (JSON text within Step Functions' 32,768-character limit;
// an over-long error text is shortened, the JSON stays whole).
std::string failure_cause(const Outcome& outcome);

}  // namespace rstasker::tasker
