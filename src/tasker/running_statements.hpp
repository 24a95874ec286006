// The singleton rule's other half: a statement with the same SQL and parameters already running on
// the target, whoever started it (the singleton lock only sees other singletons).
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "rstasker/aws/json_client.hpp"
#include "rstasker/services/redshift_data.hpp"

namespace rstasker::tasker {

// Named parameters as (name, value) pairs sorted by name: their order does not change a
// statement, so this is how two requests' parameters are compared.
std::vector<std::pair<std::string, std::string>> canonical_parameters(
    const std::vector<services::SqlParameter>& parameters);

// The id of a statement that runs (SUBMITTED, PICKED or STARTED) on `target` with exactly `sqls`
// (in order; one statement or a batch) and exactly `parameters` (in any order), among the
// statements of the Data API caller's IAM role (ListStatements, filtered by cluster or workgroup
// and database); nullopt when there is none. A statement named `own_name` is the caller's own
// (an earlier attempt of the same start, under the same name) and is never its twin. Throws the
// Data API's Error when it cannot tell.
std::optional<std::string> find_running_twin(services::RedshiftData& redshift,
                                             const services::RedshiftTarget& target,
                                             const std::vector<std::string>& sqls,
                                             const std::vector<services::SqlParameter>& parameters,
                                             const std::string& own_name,
                                             const aws::CallContext& context);

}  // namespace rstasker::tasker
