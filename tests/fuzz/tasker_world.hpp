// A tasker over in-memory services for the fuzz targets that feed it events: a fresh one per
// input, so no input depends on what an earlier one left behind.
#pragma once

#include <spdlog/spdlog.h>

#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string_view>

#include "rstasker/common/error.hpp"
#include "rstasker/tasker/tasker.hpp"
#include "support/fakes.hpp"

namespace rstasker::fuzz {

// Runs `payload` through Tasker::handle_payload. A named Error is the expected answer to bad
// input; any other exception is a finding (the runtime would answer it as an InternalError, a
// bug), reported by aborting so libFuzzer keeps the input.
inline void handle(std::string_view payload) {
  static const bool quiet = [] {
    spdlog::set_level(spdlog::level::off);
    return true;
  }();
  (void)quiet;
  using namespace rstasker::testing;
  tasker::Dependencies deps{
      std::make_shared<FakeRedshiftData>(), std::make_shared<MemoryStateTable>(),
      std::make_shared<FakeStepFunctions>(), std::make_shared<FakeCfnResponder>()};
  tasker::Tasker tasker(test_config(), deps);
  aws::CallContext context{Deadline::after(std::chrono::hours(1)), {}};
  try {
    tasker.handle_payload(payload, context);
  } catch (const Error&) {
  } catch (const std::exception& e) {
    std::fprintf(stderr, "not a named Error: %s\n", e.what());
    std::abort();
  }
}

}  // namespace rstasker::fuzz
