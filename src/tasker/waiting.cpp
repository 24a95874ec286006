// The listWaiting action: the waiting index, page by page, without secrets.
#include "rstasker/tasker/waiting.hpp"

#include <algorithm>

#include "rstasker/common/deadline.hpp"
#include "rstasker/tasker/metrics.hpp"

namespace rstasker::tasker {

namespace {

// Who waits, named without the secret that reaches them (task token, response URL).
Json target_of(const StatementRecord& record) {
  if (record.waiter.kind == WaiterKind::kCloudFormation) {
    const Json& request = record.waiter.cloudformation;
    return {{"stackId", string_member(request, "StackId")},
            {"logicalResourceId", string_member(request, "LogicalResourceId")},
            {"requestType", string_member(request, "RequestType")}};
  }
  return record.key.id;
}

}  // namespace

Json list_waiting(StateTable& state, std::size_t limit, const std::string& cursor,
                  std::int64_t now_ms, const aws::CallContext& context) {
  WaitingPage page = state.waiting_before(now_ms, limit, cursor, context);
  Json waiting = Json::array();
  for (const StatementRecord& record : page.records) {
    Json item = {{"statementName", record.key.statement_name()},
                 {"statementId", record.statement_id},
                 {"state", std::string(to_string(record.state))},
                 {"waiter", std::string(metric::waiter_name(record.waiter.kind))},
                 {"target", target_of(record)},
                 {"startedAt", iso8601_utc(record.created_at_ms)},
                 {"ageSeconds", std::max<std::int64_t>(0, (now_ms - record.created_at_ms) / 1000)},
                 {"singleton", !record.lock_key.empty()}};
    if (record.reconciled_at_ms > 0) {
      item["lastReconcileAt"] = iso8601_utc(record.reconciled_at_ms);
      item["lastReconcileResult"] = record.reconcile_result;
    }
    if (record.claim_until_ms > 0) item["lastAttemptUntil"] = iso8601_utc(record.claim_until_ms);
    waiting.push_back(std::move(item));
  }
  Json out = {{"waiting", std::move(waiting)}};
  if (!page.next.empty()) out["nextToken"] = page.next;
  return out;
}

}  // namespace rstasker::tasker
