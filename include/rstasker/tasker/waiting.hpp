// "What is waiting now": the operators' view of the waiting index (the listWaiting action).
#pragma once

#include <cstdint>
#include <string>

#include "rstasker/aws/json_client.hpp"
#include "rstasker/common/json.hpp"
#include "rstasker/tasker/state_table.hpp"

namespace rstasker::tasker {

// One page of the statements waiting for their completion, oldest first:
// {"waiting": [{"statementName", "statementId", "state" (WAITING / CLAIMED), "waiter"
// (StepFunctions / CloudFormation / None), "target" (the execution ARN, or {"stackId",
// "logicalResourceId", "requestType"}), "startedAt" (ISO 8601), "ageSeconds", "singleton"
// (bool), "lastReconcileAt" (ISO 8601) and "lastReconcileResult" ("stillRunning" or
// "retryLater") once reconcile has visited it while it waited, "lastAttemptUntil" (ISO 8601, when
// a completion attempt — an event's or reconcile's — claimed it: until when that claim
// holds)}], "nextToken"} with "nextToken" only when more
// follow. No secret is listed: no task token, no response URL. `limit` is 1 to 100; `cursor`
// is "" or a page's nextToken (InvalidRequest otherwise).
Json list_waiting(StateTable& state, std::size_t limit, const std::string& cursor,
                  std::int64_t now_ms, const aws::CallContext& context);

}  // namespace rstasker::tasker
