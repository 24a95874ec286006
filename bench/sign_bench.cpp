// SigV4 signing rate on a Redshift Data API ExecuteStatement call. bench/botocore_sign.py signs
// the same request with botocore; compare its figure with BM_SignerSign's signatures_per_second:
//   build/bench/sign_bench --benchmark_format=json
#include <benchmark/benchmark.h>

#include <chrono>
#include <string>

#include "rstasker/aws/sigv4.hpp"

namespace {

using rstasker::aws::Credentials;
using rstasker::aws::HttpRequest;

// Keep in step with bench/botocore_sign.py: same URL, headers, body and credentials.
constexpr const char* kBody =
    R"json({"ClusterIdentifier":"analytics-cluster-1","Database":"dev","DbUser":"tasker",)json"
    R"json("Sql":"CALL etl.load_daily_orders(:run_date, :source)","Parameters":[{"name":"run_date",)json"
    R"json("value":"2024-05-01"},{"name":"source","value":"s3://landing/orders/"}],)json"
    R"json("StatementName":"tasker:load_daily_orders:7f3c2a","WithEvent":true,)json"
    R"json("ClientToken":"0b8f6f2e-5d0a-4c4e-9a51-3f7d2a9c1e88"})json";

// A Lambda session token is about 1 KB; this one has the same length and alphabet.
std::string session_token() {
  std::string token;
  while (token.size() < 960) token += "IQoJb3JpZ2luX2VjEXAMPLE/";
  token.resize(960);
  return token;
}

Credentials credentials() {
  return {"ASIAIOSFODNN7EXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", session_token()};
}

HttpRequest execute_statement() {
  HttpRequest request;
  request.method = "POST";
  request.url = "https://redshift-data.us-east-1.amazonaws.com/";
  request.body = kBody;
  request.headers = {
      {"Content-Type", "application/x-amz-json-1.1"},
      {"X-Amz-Target", "RedshiftData.ExecuteStatement"},
      {"Content-Length", std::to_string(request.body.size())},
      {"X-Amzn-Trace-Id",
       "Root=1-5759e988-bd862e3fe1be46a994272793;Parent=53995c3f42cd8ad8;Sampled=1"}};
  return request;
}

void count_signatures(benchmark::State& state) {
  state.counters["signatures_per_second"] =
      benchmark::Counter(1, benchmark::Counter::kIsIterationInvariantRate);
}

// What a client does per call: a fresh request (copied, as botocore builds a new AWSRequest each
// time), signed by a long-lived Signer whose key cache is warm.
void BM_SignerSign(benchmark::State& state) {
  const rstasker::aws::Signer signer("us-east-1", "redshift-data");
  const Credentials creds = credentials();
  const HttpRequest prototype = execute_statement();
  for (auto _ : state) {
    HttpRequest request = prototype;
    signer.sign(request, creds, std::chrono::system_clock::now());
    benchmark::DoNotOptimize(request.headers.back().second.data());
  }
  count_signatures(state);
}
BENCHMARK(BM_SignerSign);

// Signing alone: the same request object signed again (as before a retry).
void BM_SignerResign(benchmark::State& state) {
  const rstasker::aws::Signer signer("us-east-1", "redshift-data");
  const Credentials creds = credentials();
  HttpRequest request = execute_statement();
  for (auto _ : state) {
    signer.sign(request, creds, std::chrono::system_clock::now());
    benchmark::DoNotOptimize(request.headers.back().second.data());
  }
  count_signatures(state);
}
BENCHMARK(BM_SignerResign);

// compute_signature without a cached key: the four key-deriving HMACs every time, plus the
// SigningResult strings.
void BM_ComputeSignatureNoCache(benchmark::State& state) {
  const Credentials creds = credentials();
  const HttpRequest request = execute_statement();
  rstasker::aws::SigningParams params;
  params.region = "us-east-1";
  params.service = "redshift-data";
  for (auto _ : state) {
    params.time = std::chrono::system_clock::now();
    auto result = rstasker::aws::compute_signature(request, creds, params);
    benchmark::DoNotOptimize(result.signature.data());
  }
  count_signatures(state);
}
BENCHMARK(BM_ComputeSignatureNoCache);

}  // namespace

BENCHMARK_MAIN();
