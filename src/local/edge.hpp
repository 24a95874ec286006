// tasker-local's one port: Redshift Data API calls (X-Amz-Target: RedshiftData.*) and Lambda
// Invoke (POST /2015-03-31/functions/<name>/invocations) are served here, signature checked;
// every other request is passed to moto unchanged and moto's answer passed back.
#pragma once

#include <memory>
#include <string>

#include "local/code_store.hpp"
#include "local/data_api.hpp"
#include "local/faults.hpp"
#include "local/lambda_service.hpp"
#include "local/sigv4_verify.hpp"

namespace httplib {
class Server;
}

namespace rstasker::local {

struct EdgeOptions {
  std::string host = "127.0.0.1";
  int port = 0;
  std::string region = "us-east-1";
  std::string moto_url;  // where everything else goes
  // Request handler threads: a RequestResponse invocation holds one for as long as it runs.
  int threads = 64;
  // Faults injected into the requests passing (and its control endpoint); none when null.
  std::shared_ptr<FaultInjector> faults;
};

class Edge {
 public:
  // `data_api` may be null (no PostgreSQL configured): Data API calls are then refused with
  // InternalServerException. `code` receives the zips of CreateFunction / UpdateFunctionCode
  // calls passing through (see CodeStore).
  Edge(EdgeOptions options, SignatureVerifier verifier, DataApi* data_api, LambdaService& lambda,
       std::shared_ptr<CodeStore> code);
  // stop()
  ~Edge();
  Edge(const Edge&) = delete;
  Edge& operator=(const Edge&) = delete;

  // Binds host:port and starts serving. Throws Error(InternalError) when the port cannot be
  // bound.
  void start();
  // Stops listening and waits for the requests in progress (release blocked Lambda invocations
  // first: LambdaService::shutdown). Idempotent.
  void stop();

 private:
  class Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace rstasker::local
