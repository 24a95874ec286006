// Issue target: with 50 ms of latency on every AWS call, a 10-record completion batch takes less
// than twice the time of a single-record batch (records are processed concurrently). The
// services are the in-memory fakes with the latency added in front of every call. Prints one
// JSON line.
#include <spdlog/spdlog.h>

#include <chrono>
#include <cstdio>
#include <thread>

#include "rstasker/tasker/tasker.hpp"
#include "support/fakes.hpp"

namespace {

using rstasker::Deadline;
using rstasker::Json;
using rstasker::aws::CallContext;
using namespace rstasker::tasker;
using namespace rstasker::testing;

constexpr std::chrono::milliseconds kLatency{50};

void delay() {
  std::this_thread::sleep_for(kLatency);
}

class SlowRedshift : public FakeRedshiftData {
 public:
  Json describe_statement(const std::string& id, const CallContext& c) override {
    delay();
    return FakeRedshiftData::describe_statement(id, c);
  }
};

class SlowStepFunctions : public FakeStepFunctions {
 public:
  void send_task_success(const std::string& t, const std::string& o,
                         const CallContext& c) override {
    delay();
    FakeStepFunctions::send_task_success(t, o, c);
  }
  void send_task_failure(const std::string& t, const std::string& e, const std::string& cause,
                         const CallContext& c) override {
    delay();
    FakeStepFunctions::send_task_failure(t, e, cause, c);
  }
};

// Seconds for one batch of `records` completions (half FINISHED, half FAILED, so the FAILED ones
// also pay a DescribeStatement).
double batch_seconds(int records) {
  auto redshift = std::make_shared<SlowRedshift>();
  auto state = std::make_shared<MemoryStateTable>();
  auto sfn = std::make_shared<SlowStepFunctions>();
  auto cfn = std::make_shared<FakeCfnResponder>();
  Tasker tasker(rstasker::testing::test_config(), Dependencies{redshift, state, sfn, cfn});
  CallContext context{Deadline::after(std::chrono::minutes(5)), {}};
  Json list = Json::array();
  for (int i = 0; i < records; ++i) {
    Json out = tasker.handle(
        {{"sqlStatement", "select 1"},
         {"executionArn", "arn:aws:states:us-east-1:1:execution:M:r" + std::to_string(i)},
         {"taskToken", "token-" + std::to_string(i)}},
        context);
    std::string state_name = i % 2 == 0 ? "FINISHED" : "FAILED";
    Json body = {{"source", "aws.redshift-data"},
                 {"detail-type", "Redshift Data Statement Status Change"},
                 {"detail",
                  {{"statementName", out["StatementName"]},
                   {"statementId", out["Id"]},
                   {"state", state_name}}}};
    list.push_back(
        {{"messageId", std::to_string(i)}, {"eventSource", "aws:sqs"}, {"body", body.dump()}});
  }
  // Every state-table call pays the latency too.
  state->before_operation = [](std::string_view) { delay(); };
  Json batch = {{"Records", list}};
  auto start = std::chrono::steady_clock::now();
  Json response = tasker.handle(batch, context);
  double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  if (!response["batchItemFailures"].empty() || sfn->callbacks().size() != std::size_t(records)) {
    std::fprintf(stderr, "batch of %d did not complete cleanly\n", records);
    std::exit(1);
  }
  return seconds;
}

}  // namespace

int main() {
  spdlog::set_level(spdlog::level::off);
  double best_single = 1e9, best_ten = 1e9;
  for (int i = 0; i < 3; ++i) {
    best_single = std::min(best_single, batch_seconds(1));
    best_ten = std::min(best_ten, batch_seconds(10));
  }
  Json out = {{"latency_per_call_ms", kLatency.count()},
              {"single_record_batch_ms", best_single * 1000},
              {"ten_record_batch_ms", best_ten * 1000},
              {"ratio", best_ten / best_single}};
  std::printf("%s\n", out.dump().c_str());
  return 0;
}
