// CloudFormation custom resources: seed-compatible `sqlStatement` requests and the built-in
// resource types Custom::RedshiftSql and Custom::RedshiftUser.
//
// A request whose SQL starts is answered when the statement completes (the completion path calls
// respond_completion); a request found wrong before any SQL runs is answered at once with
// FAILED and a reason that says what to fix, and one with nothing to run (an empty *Sql
// property, an Update that changes nothing) with SUCCESS. Either way the invocation itself
// returns normally, unless the request cannot be answered at all (no usable ResponseURL): then
// InvalidRequest.
//
// Rolling back a failed Custom::RedshiftUser Update: the failed Update changed nothing (its SQL
// is one transaction, or none ran), but CloudFormation's rollback Update sends the failed
// properties as OldResourceProperties, and running the reverse diff from them (a rename back
// from a name that never existed, ...) would fail the rollback too. So every FAILED answer to
// such an Update first records, in the state table, the resource's physical id with digests of
// both property sets (canonical JSON: keys sorted, no whitespace); an Update of that id from
// exactly those failed properties back to exactly the kept ones is answered SUCCESS without
// SQL, Redshift already being in that state. A later successful Update forgets the record, so a
// real change back is never skipped. Records expire with the table's TTL.
//
// Physical ids: a Create answers "<LogicalResourceId>:<16 hex>" (a digest of StackId,
// LogicalResourceId and RequestId, so a redelivered request gets the same id); a Create that
// fails answers "<LogicalResourceId>:rstasker-create-failed:<16 hex>", and a Delete of such an
// id succeeds at once without SQL. Update and Delete keep the id of the request, whoever made it.
#pragma once

#include <memory>
#include <string>

#include "rstasker/aws/json_client.hpp"
#include "rstasker/common/json.hpp"
#include "rstasker/services/cfn_response.hpp"
#include "rstasker/tasker/config.hpp"
#include "rstasker/tasker/launcher.hpp"
#include "rstasker/tasker/outcome.hpp"
#include "rstasker/tasker/state_table.hpp"

namespace rstasker::tasker {

class CustomResources {
 public:
  // `state` remembers failed Custom::RedshiftUser Updates (see above), so that their rollbacks
  // are answered without SQL.
  CustomResources(const Config& config, Launcher& launcher,
                  std::shared_ptr<services::CfnResponder> responder,
                  std::shared_ptr<StateTable> state);

  // Handles one custom-resource request (the event as received). Returns a small summary
  // ({"Status": "STARTED"|"SUCCESS"|"FAILED", "PhysicalResourceId": ..., plus "Reason" for an
  // answer given at once, "StatementId" / "StatementName" for a started statement}). Throws
  // InvalidRequest without a usable ResponseURL; rethrows a retryable start failure (nothing
  // has been answered, so retrying the invocation is safe) and a failure to deliver an answer.
  Json handle(const Json& request, const aws::CallContext& context);

  // Sends the response for a statement started by handle(), now finished: SUCCESS when
  // outcome.succeeded(), else FAILED with the state and the Data API's error text. `waiter_request`
  // is the Waiter::cloudformation document handle() stored (ResponseURL, StackId, RequestId,
  // LogicalResourceId, RequestType, ResourceType, PhysicalResourceId, FailedPhysicalResourceId,
  // Data, and UserUpdate for a Custom::RedshiftUser Update). The same inputs always give the same
  // body, so answering a redelivery again is harmless. A Custom::RedshiftUser Update's failure is
  // recorded (its success forgets an earlier one) before the answer is sent. Throws Error when it
  // cannot be delivered (retryable() says whether to try again).
  void respond_completion(const Json& waiter_request, const Outcome& outcome,
                          const aws::CallContext& context);

 private:
  // Records (failed) or forgets (succeeded) the Update of `physical_id`; `digests` is the
  // UserUpdate member of a waiter. Recording: a failure that may pass is rethrown (the answer
  // then waits for a retry), any other is logged and the answer goes out regardless.
  // Forgetting: every failure is rethrown as retryable; the SUCCESS answer waits for it.
  void note_user_update(const std::string& physical_id, const Json& digests, bool failed,
                        const aws::CallContext& context);

  const Config& config_;
  Launcher& launcher_;
  std::shared_ptr<services::CfnResponder> responder_;
  std::shared_ptr<StateTable> state_;
};

// The response body for a request: Status, Reason (required for FAILED), PhysicalResourceId,
// StackId, RequestId, LogicalResourceId, NoEcho, Data. Never more than kMaxCfnResponseBytes:
// Reason and then Data are shortened (the JSON stays whole).
std::string cfn_response_body(const Json& request, bool success, const std::string& reason,
                              const std::string& physical_id, const Json& data = Json::object());

}  // namespace rstasker::tasker
