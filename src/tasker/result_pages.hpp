// GetStatementResult pages cut to what one Lambda response can carry, with a page token of our
// own that resumes inside a Data API page.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "rstasker/aws/json_client.hpp"
#include "rstasker/common/json.hpp"
#include "rstasker/services/redshift_data.hpp"

namespace rstasker::tasker {

// Starts the NextToken values this function makes when it splits a Data API page.
inline constexpr std::string_view kSplitPageTokenPrefix = "rstasker-page-1:";

// One page of GetStatementResult for statement `id`: the Data API's page as it comes when its
// compact JSON fits in `max_bytes`; else its first Records that fit, and a NextToken of ours that
// resumes at the first record left out (the Data API's own NextToken comes back once its page is
// used up). `next_token` is "" for the first page, a Data API token, or one of ours. Throws
// InvalidRequest for a token of ours that does not decode or points past its page, and
// ResponseTooLarge when a single record does not fit.
Json result_page(services::RedshiftData& redshift, const std::string& id,
                 const std::string& next_token, std::size_t max_bytes,
                 const aws::CallContext& context);

}  // namespace rstasker::tasker
