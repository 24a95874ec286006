// Event dispatch cost inside the binary, with the services faked (no I/O): parsing, validation,
// state bookkeeping and response building per event. Argument 1 runs with the EMF metrics on
// (written to /dev/null, so their formatting and write are counted), 0 with them off.
#include <benchmark/benchmark.h>
#include <spdlog/spdlog.h>

#include "rstasker/common/error.hpp"
#include "rstasker/common/metrics.hpp"
#include "rstasker/tasker/tasker.hpp"
#include "support/fakes.hpp"

namespace {

using rstasker::Deadline;
using rstasker::Json;
using namespace rstasker::tasker;
using namespace rstasker::testing;

struct Bench {
  std::shared_ptr<FakeRedshiftData> redshift = std::make_shared<FakeRedshiftData>();
  std::shared_ptr<MemoryStateTable> state = std::make_shared<MemoryStateTable>();
  std::shared_ptr<FakeStepFunctions> sfn = std::make_shared<FakeStepFunctions>();
  std::shared_ptr<FakeCfnResponder> cfn = std::make_shared<FakeCfnResponder>();
  Tasker tasker{rstasker::testing::test_config(), Dependencies{redshift, state, sfn, cfn}};
  rstasker::aws::CallContext context{Deadline::after(std::chrono::hours(1)), {}};

  // Metrics off (the hostile-event benchmarks measure parsing alone).
  Bench() { rstasker::metrics::init({}); }
  explicit Bench(const benchmark::State& state) {
    static std::FILE* null_out = std::fopen("/dev/null", "w");
    rstasker::metrics::init({state.range(0) != 0, "RedshiftTasker", "bench", null_out});
  }
  ~Bench() { rstasker::metrics::init({}); }
};

const std::string kExecute =
    R"({"action":"executeStatement","sqlStatement":"call sp_my_proc(4);",)"
    R"("executionArn":"arn:aws:states:eu-west-1:012345678910:execution:MachineName:fb69bfdf",)"
    R"("taskToken":"AAAAKgAAAAIAAAAAAAAAAUMsn4ME1wlWClf+m0JU="})";

void BM_ExecuteStatementCallback(benchmark::State& state) {
  Bench b(state);
  for (auto _ : state) benchmark::DoNotOptimize(b.tasker.handle_payload(kExecute, b.context));
}
BENCHMARK(BM_ExecuteStatementCallback)->ArgName("metrics")->Arg(0)->Arg(1);

void BM_InvalidEventRefused(benchmark::State& state) {
  Bench b(state);
  const std::string invalid = R"({"action":"describeStatement","statementId":"LATEST"})";
  for (auto _ : state) {
    try {
      b.tasker.handle_payload(invalid, b.context);
    } catch (const rstasker::Error& e) {
      benchmark::DoNotOptimize(e.name());
    }
  }
}
BENCHMARK(BM_InvalidEventRefused)->ArgName("metrics")->Arg(0)->Arg(1);

// A 10-record completion batch: parse, claim, call back, finish (services are in memory).
void BM_CompletionBatchOf10(benchmark::State& state) {
  Bench b(state);
  int token = 0;
  for (auto _ : state) {
    state.PauseTiming();
    Json records = Json::array();
    for (int i = 0; i < 10; ++i) {
      Json event = Json::parse(kExecute);
      event["taskToken"] = "token-" + std::to_string(++token);
      Json out = b.tasker.handle(event, b.context);
      Json body = {{"source", "aws.redshift-data"},
                   {"detail-type", "Redshift Data Statement Status Change"},
                   {"detail",
                    {{"statementName", out["StatementName"]},
                     {"statementId", out["Id"]},
                     {"state", "FINISHED"}}}};
      records.push_back(
          {{"messageId", std::to_string(i)}, {"eventSource", "aws:sqs"}, {"body", body.dump()}});
    }
    std::string payload = Json{{"Records", records}}.dump();
    state.ResumeTiming();
    benchmark::DoNotOptimize(b.tasker.handle_payload(payload, b.context));
  }
}
BENCHMARK(BM_CompletionBatchOf10)
    ->ArgName("metrics")
    ->Arg(0)
    ->Arg(1)
    ->Unit(benchmark::kMicrosecond);

// Hostile events of about 6 MB (Lambda's synchronous payload limit) refused through the whole
// path: parse, then validation. Flat: one object of many small members; wide: an array of many
// empty objects (the shape that made a depth-checking parser quadratic). Reports ms per MB.
std::string flat_event(std::size_t bytes) {
  std::string event = R"({"action":"executeStatement")";
  for (std::size_t i = 0; event.size() < bytes; ++i) event += ",\"k" + std::to_string(i) + "\":1";
  return event + "}";
}

std::string wide_event(std::size_t bytes) {
  std::string event = R"({"action":"executeStatement","padding":[{})";
  while (event.size() < bytes) event += ",{}";
  return event + "]}";
}

void refuse_event(benchmark::State& state, const std::string& payload) {
  Bench b;
  for (auto _ : state) {
    try {
      b.tasker.handle_payload(payload, b.context);
      state.SkipWithError("the event was accepted");
    } catch (const rstasker::Error& e) {
      benchmark::DoNotOptimize(e.name());
    }
  }
  const double mb = static_cast<double>(payload.size()) / 1e6;
  state.counters["ms_per_MB"] =
      benchmark::Counter(mb * static_cast<double>(state.iterations()) / 1e3,
                         benchmark::Counter::kIsRate | benchmark::Counter::kInvert);
  state.SetBytesProcessed(static_cast<std::int64_t>(payload.size()) * state.iterations());
}

constexpr std::size_t kSixMegabytes = 6'000'000;

void BM_FlatEventOf6MB(benchmark::State& state) {
  refuse_event(state, flat_event(kSixMegabytes));
}
BENCHMARK(BM_FlatEventOf6MB)->Unit(benchmark::kMillisecond);

void BM_WideEventOf6MB(benchmark::State& state) {
  refuse_event(state, wide_event(kSixMegabytes));
}
BENCHMARK(BM_WideEventOf6MB)->Unit(benchmark::kMillisecond);

}  // namespace

int main(int argc, char** argv) {
  spdlog::set_level(spdlog::level::off);  // measure the work, not the console
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  benchmark::Shutdown();
  return 0;
}
