// A moto server for one test binary (or one test), started through scripts/moto_launcher.py so
// the Step Functions fixes described at the top of that script are in place.
#pragma once

#include <filesystem>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "rstasker/aws/credentials.hpp"
#include "rstasker/aws/http.hpp"
#include "support/process.hpp"

namespace rstasker::testing {

struct MotoOptions {
  // Make moto check every request's SigV4 signature and IAM permissions (see MotoServer).
  bool signature_checking = false;
  // Extra environment for moto.
  std::vector<std::pair<std::string, std::string>> env{};
  // MOTO_PORT: where Step Functions' executor sends its Lambda/SQS/... calls. 0 means moto's own
  // port; the local stack sets it to tasker-local's edge port.
  int moto_port = 0;
};

// `python3 scripts/moto_launcher.py -H 127.0.0.1 -p <free port>`, ready when the constructor
// returns, stopped by the destructor. Starting one takes about a second: share one per test
// suite (SetUpTestSuite) rather than one per test where the tests allow.
//
// With signature_checking, moto is started with INITIAL_NO_AUTH_ACTION_COUNT=3 and the fixture
// spends exactly those three unauthenticated requests on IAM CreateUser, PutUserPolicy (Action
// "*", Resource "*") and CreateAccessKey; from then on moto refuses any request not signed with
// that key (HTTP 403, SignatureDoesNotMatch or InvalidClientTokenId). Note that Step Functions'
// executor signs its own service calls with a fixed dummy key, so executions that call other
// services only work without signature checking.
class MotoServer {
 public:
  // Why moto cannot run here (no python3, or no moto with its server extras for it), or nullopt.
  // Tests check it first: RSTASKER_SKIP_IF_UNAVAILABLE(MotoServer::unavailable_reason()).
  // The answer is computed once per process.
  static std::optional<std::string> unavailable_reason();

  // Starts moto and, with signature checking, creates the test user. Throws std::runtime_error
  // (with moto's log) when moto does not come up, and rstasker::Error when the bootstrap fails.
  explicit MotoServer(MotoOptions options = {});
  ~MotoServer();
  MotoServer(const MotoServer&) = delete;
  MotoServer& operator=(const MotoServer&) = delete;

  // "http://127.0.0.1:<port>"
  const std::string& endpoint() const { return endpoint_; }
  int port() const { return port_; }
  // "us-east-1"
  const std::string& region() const { return region_; }
  // The IAM user's access key with signature checking; a fixed dummy key without it.
  const aws::Credentials& credentials() const { return credentials_; }
  // AWS_ENDPOINT_URL, AWS_REGION, AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (and AWS_SESSION_TOKEN
  // when the credentials have one) for code under test; nullopt for everything else.
  aws::EnvLookup env() const;
  const std::filesystem::path& log_path() const { return process_->log_path(); }

  // POST /moto-api/config {"stepfunctions": {"execute_state_machine": true}}: from now on
  // StartExecution really runs state machines (moto's default only records them).
  void enable_state_machine_execution();

  // Sends a query-protocol request (IAM, STS, ...): POST / with `params` form-encoded (e.g.
  // {{"Action", "ListUsers"}, {"Version", "2010-05-08"}}), signed for `signing_name` with
  // `credentials` (the fixture's own when nullopt). Returns the XML body; throws rstasker::Error
  // (name from the XML <Code>) for a non-2xx answer.
  using QueryParams = std::vector<std::pair<std::string, std::string>>;
  std::string query(std::string_view signing_name, const QueryParams& params,
                    const std::optional<aws::Credentials>& credentials = std::nullopt) const;

  // The interpreter that runs the launcher: $RSTASKER_PYTHON, else the one `python3` in PATH
  // resolves to (asked once, so pyenv's shim is not paid for on every start).
  static std::optional<std::filesystem::path> python();

 private:
  void bootstrap_iam_user();

  std::string region_ = "us-east-1";
  int port_ = 0;
  std::string endpoint_;
  aws::Credentials credentials_;
  std::shared_ptr<aws::HttpTransport> transport_;
  std::unique_ptr<Process> process_;
};

}  // namespace rstasker::testing
