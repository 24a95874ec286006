// How a statement ended, as the completion event (or reconcile's DescribeStatement) tells it.
#pragma once

#include <string>

#include "rstasker/common/json.hpp"
#include "rstasker/services/redshift_data.hpp"

namespace rstasker::tasker {

struct Outcome {
  services::StatementStatus status = services::StatementStatus::kUnknown;  // terminal
  std::string statement_id;
  std::string statement_name;
  std::string error;       // the Data API's error text for FAILED / ABORTED ("" otherwise)
  std::int64_t rows = -1;  // rows affected / returned, when known
  // The completion event as EventBridge delivered it (reconcile builds one of the same shape).
  Json event;

  bool succeeded() const { return status == services::StatementStatus::kFinished; }
};

}  // namespace rstasker::tasker
