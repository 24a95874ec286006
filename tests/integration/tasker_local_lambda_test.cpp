// tasker-local's Lambda, as a function's author meets it: a small custom runtime (Python, speaking
// the Runtime API) deployed into moto and invoked through the edge. Environment and Runtime API
// headers, warm reuse, concurrency, timeouts, crashes, error posts, init errors, code from S3, a
// configuration change, a zip without bootstrap, and how an SQS event-source mapping reads the
// function's answer under ReportBatchItemFailures.
#include <gtest/gtest.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <functional>
#include <future>
#include <memory>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "local/event_source.hpp"
#include "rstasker/aws/http.hpp"
#include "rstasker/aws/json_client.hpp"
#include "rstasker/aws/sigv4.hpp"
#include "rstasker/common/deadline.hpp"
#include "rstasker/common/json.hpp"
#include "rstasker/common/text.hpp"
#include "support/moto_server.hpp"
#include "support/paths.hpp"
#include "support/process.hpp"
#include "support/tasker_local.hpp"

namespace rstasker::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

const aws::Credentials kKey{"AKIDLAMBDATEST", "lambda-test-secret", ""};
constexpr const char* kRegion = "us-east-1";
constexpr const char* kRole = "arn:aws:iam::123456789012:role/runtime-test";

// A custom runtime in a few lines of Python: echoes the event with what Lambda told it, and
// misbehaves on request (sleep, crash, fail); MODE=init-error fails its initialisation. It logs a
// SIGTERM and exits, or with MODE=ignore-sigterm carries on.
constexpr const char* kRuntime = R"PY(
import json, os, signal, sys, time, urllib.request

api = "http://" + os.environ["AWS_LAMBDA_RUNTIME_API"] + "/2018-06-01/runtime"

def on_sigterm(signum, frame):
    print("SIGTERM received by", os.getpid(), flush=True)
    if os.environ.get("MODE") != "ignore-sigterm":
        sys.exit(0)

signal.signal(signal.SIGTERM, on_sigterm)

def post(path, body, error_type=None):
    headers = {"Content-Type": "application/json"}
    if error_type:
        headers["Lambda-Runtime-Function-Error-Type"] = error_type
    request = urllib.request.Request(api + path, data=json.dumps(body).encode(), headers=headers,
                                     method="POST")
    urllib.request.urlopen(request).read()

if os.environ.get("MODE") == "init-error":
    post("/init/error", {"errorType": "Boom", "errorMessage": "cannot start"}, "Boom")
    sys.exit(1)

print("runtime started", flush=True)
while True:
    with urllib.request.urlopen(api + "/invocation/next") as answer:
        headers = answer.headers
        event = json.loads(answer.read())
    request_id = headers["Lambda-Runtime-Aws-Request-Id"]
    print("handling", request_id, flush=True)
    if event.get("Records"):
        # An SQS batch (event-source mapping): the first record's body is the answer, sent as it
        # is, JSON or not.
        print("batch of", len(event["Records"]), "answered", event["Records"][0]["body"], flush=True)
        urllib.request.urlopen(urllib.request.Request(
            api + "/invocation/" + request_id + "/response",
            data=event["Records"][0]["body"].encode(), method="POST")).read()
        continue
    if event.get("sleep"):
        time.sleep(event["sleep"])
    if event.get("crash"):
        os._exit(3)
    if event.get("fail"):
        post("/invocation/" + request_id + "/error",
             {"errorType": "Failed", "errorMessage": event["fail"], "stackTrace": []}, "Failed")
        continue
    names = ["AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_REGION",
             "AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "LAMBDA_TASK_ROOT", "GREETING",
             "AWS_LAMBDA_FUNCTION_VERSION"]
    post("/invocation/" + request_id + "/response", {
        "event": event,
        "pid": os.getpid(),
        "env": {name: os.environ.get(name) for name in names},
        "deadline_ms": int(headers["Lambda-Runtime-Deadline-Ms"]),
        "arn": headers["Lambda-Runtime-Invoked-Function-Arn"],
        "trace": headers.get("Lambda-Runtime-Trace-Id"),
        "cwd": os.getcwd(),
    })
)PY";

class TaskerLocalLambdaTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    if (MotoServer::unavailable_reason()) return;
    try {
      edge_port_ = free_tcp_port();
      moto_ = std::make_unique<MotoServer>(MotoOptions{.moto_port = edge_port_});
      work_dir_ = test_log_dir() / ("tasker-local-lambda." + std::to_string(::getpid()));
      std::filesystem::remove_all(work_dir_);
      std::filesystem::create_directories(work_dir_);
      tasker_local_ =
          start_tasker_local({.port = edge_port_,
                              .moto_url = moto_->endpoint(),
                              .region = kRegion,
                              .key = kKey,
                              .work_dir = work_dir_,
                              .extra = {"--max-instances", "4", "--log-level", "debug"}});
      edge_ = "http://127.0.0.1:" + std::to_string(edge_port_);
      transport_ = aws::make_curl_transport();
      moto_->query("iam", {{"Action", "CreateRole"},
                           {"RoleName", "runtime-test"},
                           {"AssumeRolePolicyDocument",
                            R"({"Version":"2012-10-17","Statement":[{"Effect":"Allow","Principal":)"
                            R"({"Service":"lambda.amazonaws.com"},"Action":"sts:AssumeRole"}]})"},
                           {"Version", "2010-05-08"}});
      runtime_zip_ = make_zip("runtime", "bootstrap",
                              std::string("#!") + MotoServer::python()->string() + "\n" + kRuntime);
    } catch (const std::exception& e) {
      start_error_ = e.what();
    }
  }

  static void TearDownTestSuite() {
    expect_clean_stop(tasker_local_);
    moto_.reset();
    std::error_code ignored;
    std::filesystem::remove_all(work_dir_ / "code", ignored);
  }

  void SetUp() override {
    RSTASKER_SKIP_IF_UNAVAILABLE(MotoServer::unavailable_reason());
    ASSERT_TRUE(start_error_.empty()) << start_error_;
  }

  // A zip holding one executable file.
  static std::string make_zip(const std::string& name, const std::string& file,
                              const std::string& content) {
    const auto dir = work_dir_ / ("package-" + name);
    std::filesystem::create_directories(dir);
    std::ofstream(dir / file) << content;
    std::filesystem::permissions(
        dir / file, std::filesystem::perms::owner_all | std::filesystem::perms::group_read |
                        std::filesystem::perms::others_read | std::filesystem::perms::group_exec |
                        std::filesystem::perms::others_exec);
    const auto zip = work_dir_ / (name + ".zip");
    std::filesystem::remove(zip);
    int status = run_to_completion({.argv = {"zip", "-q", zip.string(), file}, .working_dir = dir});
    if (status != 0) throw std::runtime_error("zip failed");
    return read_file(zip);
  }

  static aws::HttpResponse send(const std::string& base, const std::string& method,
                                const std::string& path, const std::string& body,
                                aws::Headers headers = {}, const std::string& service = "lambda") {
    aws::HttpRequest request;
    request.method = method;
    request.url = base + path;
    request.headers = std::move(headers);
    request.body = body;
    if (!body.empty() && service == "lambda")
      request.set_header("Content-Type", "application/json");
    aws::Signer(kRegion, service).sign(request, kKey, std::chrono::system_clock::now());
    return transport_->send(request, Deadline::after(60s));
  }

  // CreateFunction through the edge (which keeps the zip), with the runtime's code by default.
  static void create_function(const std::string& name, int timeout_seconds,
                              const Json& variables = Json::object(),
                              const std::string& zip = runtime_zip_) {
    Json create = {{"FunctionName", name},
                   {"Runtime", "provided.al2023"},
                   {"Handler", "bootstrap"},
                   {"Role", kRole},
                   {"Timeout", timeout_seconds},
                   {"MemorySize", 256},
                   {"Code", {{"ZipFile", rstasker::base64_encode(zip)}}},
                   {"Environment", {{"Variables", variables}}}};
    aws::HttpResponse created = send(edge_, "POST", "/2015-03-31/functions", create.dump());
    ASSERT_EQ(created.status, 201) << created.body;
  }

  static aws::HttpResponse invoke(const std::string& name, const Json& event) {
    return send(edge_, "POST", "/2015-03-31/functions/" + name + "/invocations", event.dump(),
                {{"X-Amz-Invocation-Type", "RequestResponse"}});
  }

  // The runtime's echo of a successful invocation.
  static Json echo(const std::string& name, const Json& event = Json::object()) {
    aws::HttpResponse response = invoke(name, event);
    EXPECT_EQ(response.status, 200) << response.body;
    EXPECT_EQ(response.header("X-Amz-Function-Error"), "") << response.body;
    try {
      return Json::parse(response.body);
    } catch (const std::exception&) {
      ADD_FAILURE() << "not JSON: " << response.body;
      return Json::object();
    }
  }

  static inline std::unique_ptr<MotoServer> moto_;
  static inline std::unique_ptr<Process> tasker_local_;
  static inline int edge_port_ = 0;
  static inline std::string edge_;
  static inline std::filesystem::path work_dir_;
  static inline std::shared_ptr<aws::HttpTransport> transport_;
  static inline std::string runtime_zip_;
  static inline std::string start_error_;
};

TEST_F(TaskerLocalLambdaTest, RuntimeGetsTheEventTheEnvironmentAndTheRuntimeHeaders) {
  ASSERT_NO_FATAL_FAILURE(create_function("echo", 30, {{"GREETING", "hello"}}));
  const auto before = now_epoch_ms();
  Json reply = echo("echo", {{"question", 42}});
  EXPECT_EQ(reply.at("event"), Json({{"question", 42}}));
  const Json& env = reply.at("env");
  EXPECT_EQ(env.at("AWS_LAMBDA_FUNCTION_NAME"), "echo");
  EXPECT_EQ(env.at("AWS_LAMBDA_FUNCTION_MEMORY_SIZE"), "256");
  EXPECT_EQ(env.at("AWS_LAMBDA_FUNCTION_VERSION"), "$LATEST");
  EXPECT_EQ(env.at("AWS_REGION"), kRegion);
  EXPECT_EQ(env.at("AWS_ENDPOINT_URL"), edge_);
  EXPECT_EQ(env.at("AWS_ACCESS_KEY_ID"), kKey.access_key_id);
  EXPECT_EQ(env.at("GREETING"), "hello");
  EXPECT_EQ(reply.at("cwd"), env.at("LAMBDA_TASK_ROOT"));
  EXPECT_EQ(reply.at("arn"), "arn:aws:lambda:us-east-1:123456789012:function:echo");
  EXPECT_TRUE(reply.at("trace").is_string() && !reply.at("trace").get<std::string>().empty());
  const auto deadline = reply.at("deadline_ms").get<std::int64_t>();
  EXPECT_GE(deadline, before + 29'000);
  EXPECT_LE(deadline, now_epoch_ms() + 30'000);
}

TEST_F(TaskerLocalLambdaTest, AWarmInstanceServesTheNextInvocation) {
  ASSERT_NO_FATAL_FAILURE(create_function("warm", 30));
  const Json first = echo("warm");
  const Json second = echo("warm");
  EXPECT_EQ(first.at("pid"), second.at("pid"));
}

TEST_F(TaskerLocalLambdaTest, ConcurrentInvocationsRunOnSeveralInstances) {
  ASSERT_NO_FATAL_FAILURE(create_function("parallel", 30));
  std::vector<std::future<Json>> calls;
  for (int i = 0; i < 3; ++i) {
    calls.push_back(std::async(std::launch::async, [] {
      return echo("parallel", {{"sleep", 1}});
    }));
  }
  std::set<int> pids;
  for (auto& call : calls) pids.insert(call.get().at("pid").get<int>());
  EXPECT_EQ(pids.size(), 3u);
}

TEST_F(TaskerLocalLambdaTest, AnInvocationPastTheTimeoutFailsAndTheInstanceIsReplaced) {
  ASSERT_NO_FATAL_FAILURE(create_function("slow", 1));
  const int pid = echo("slow").at("pid").get<int>();
  const auto started = Clock::now();
  aws::HttpResponse response = invoke("slow", {{"sleep", 10}});
  const auto took = Clock::now() - started;
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.header("X-Amz-Function-Error"), "Unhandled");
  Json error = Json::parse(response.body);
  EXPECT_EQ(error.at("errorType"), "Sandbox.Timedout") << response.body;
  EXPECT_NE(error.at("errorMessage").get<std::string>().find("Task timed out after 1.00 seconds"),
            std::string::npos);
  EXPECT_LT(took, 5s);
  EXPECT_NE(echo("slow").at("pid").get<int>(), pid) << "the timed-out instance was reused";
}

TEST_F(TaskerLocalLambdaTest, ACrashIsAFunctionErrorAndTheNextInvocationWorks) {
  ASSERT_NO_FATAL_FAILURE(create_function("crashes", 30));
  aws::HttpResponse response = invoke("crashes", {{"crash", true}});
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.header("X-Amz-Function-Error"), "Unhandled");
  Json error = Json::parse(response.body);
  EXPECT_EQ(error.at("errorType"), "Runtime.ExitError") << response.body;
  EXPECT_NE(error.at("errorMessage").get<std::string>().find("exit status 3"), std::string::npos);
  EXPECT_EQ(echo("crashes").at("event"), Json::object());
}

TEST_F(TaskerLocalLambdaTest, AnErrorPostedByTheRuntimeIsTheInvocationsError) {
  ASSERT_NO_FATAL_FAILURE(create_function("fails", 30));
  aws::HttpResponse response = invoke("fails", {{"fail", "no such thing"}});
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.header("X-Amz-Function-Error"), "Unhandled");
  Json error = Json::parse(response.body);
  EXPECT_EQ(error.at("errorType"), "Failed");
  EXPECT_EQ(error.at("errorMessage"), "no such thing");
}

TEST_F(TaskerLocalLambdaTest, AnInitErrorFailsTheInvocationWithTheRuntimesError) {
  ASSERT_NO_FATAL_FAILURE(create_function("cannot-start", 30, {{"MODE", "init-error"}}));
  aws::HttpResponse response = invoke("cannot-start", Json::object());
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.header("X-Amz-Function-Error"), "Unhandled");
  Json error = Json::parse(response.body);
  EXPECT_EQ(error.at("errorType"), "Boom") << response.body;
  EXPECT_EQ(error.at("errorMessage"), "cannot start");
}

TEST_F(TaskerLocalLambdaTest, AZipWithoutBootstrapIsAnInvalidEntrypoint) {
  const std::string zip = make_zip("no-bootstrap", "handler.sh", "#!/bin/sh\n");
  ASSERT_NO_FATAL_FAILURE(create_function("no-bootstrap", 30, Json::object(), zip));
  aws::HttpResponse response = invoke("no-bootstrap", Json::object());
  EXPECT_EQ(response.status, 200);
  EXPECT_EQ(response.header("X-Amz-Function-Error"), "Unhandled");
  EXPECT_EQ(Json::parse(response.body).at("errorType"), "Runtime.InvalidEntrypoint")
      << response.body;
}

TEST_F(TaskerLocalLambdaTest, CodeDeployedFromS3IsFoundInMotosBuckets) {
  // As CloudFormation deploys it: the zip in S3, the function created inside moto (the edge
  // never sees the zip). A comment makes this zip's hash differ from the one the edge kept.
  const std::string zip = make_zip("from-s3", "bootstrap",
                                   std::string("#!") + MotoServer::python()->string() + "\n" +
                                       kRuntime + "\n# deployed from S3\n");
  ASSERT_EQ(send(moto_->endpoint(), "PUT", "/artifacts", "", {}, "s3").status, 200);
  ASSERT_EQ(
      send(moto_->endpoint(), "PUT", "/artifacts/functions/runtime.zip", zip, {}, "s3").status,
      200);
  Json create = {{"FunctionName", "from-s3"},
                 {"Runtime", "provided.al2023"},
                 {"Handler", "bootstrap"},
                 {"Role", kRole},
                 {"Code", {{"S3Bucket", "artifacts"}, {"S3Key", "functions/runtime.zip"}}}};
  aws::HttpResponse created =
      send(moto_->endpoint(), "POST", "/2015-03-31/functions", create.dump());
  ASSERT_EQ(created.status, 201) << created.body;
  EXPECT_EQ(echo("from-s3", {{"via", "s3"}}).at("event"), Json({{"via", "s3"}}));
}

TEST_F(TaskerLocalLambdaTest, AConfigurationChangeRetiresTheWarmInstances) {
  ASSERT_NO_FATAL_FAILURE(create_function("changes", 30, {{"GREETING", "before"}}));
  const Json before = echo("changes");
  EXPECT_EQ(before.at("env").at("GREETING"), "before");
  aws::HttpResponse updated =
      send(edge_, "PUT", "/2015-03-31/functions/changes/configuration",
           Json({{"Environment", {{"Variables", {{"GREETING", "after"}}}}}}).dump());
  ASSERT_EQ(updated.status, 200) << updated.body;
  // Configurations are cached for a second.
  Json after;
  const auto give_up = Clock::now() + 10s;
  while (true) {
    after = echo("changes");
    if (after.at("env").at("GREETING") == "after" || Clock::now() > give_up) break;
    std::this_thread::sleep_for(100ms);
  }
  EXPECT_EQ(after.at("env").at("GREETING"), "after");
  EXPECT_NE(after.at("pid"), before.at("pid"));
}

// Everything the function's instances wrote to their logs so far.
std::string function_logs(const std::filesystem::path& functions_dir, const std::string& name) {
  std::string text;
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(functions_dir / name, error)) {
    text += read_file(entry.path());
  }
  return text;
}

// Asks `predicate` until it holds (true) or `limit` passes (false).
bool eventually(const std::function<bool()>& predicate, std::chrono::seconds limit = 15s) {
  const auto give_up = Clock::now() + limit;
  while (!predicate()) {
    if (Clock::now() > give_up) return false;
    std::this_thread::sleep_for(50ms);
  }
  return true;
}

// An instance stopped on purpose (here: retired by a configuration change) is told with SIGTERM,
// as Lambda shuts a sandbox down, so a runtime can end cleanly (and a sanitizer build run its leak
// check); one that ignores SIGTERM is killed a few seconds later.
TEST_F(TaskerLocalLambdaTest, AnInstanceStoppedOnPurposeGetsSigtermThenSigkill) {
  for (const std::string mode : {"exit", "ignore-sigterm"}) {
    SCOPED_TRACE(mode);
    const std::string name = "stopped-" + mode;
    ASSERT_NO_FATAL_FAILURE(create_function(name, 30, {{"MODE", mode}, {"GREETING", "before"}}));
    const int before = echo(name).at("pid").get<int>();
    aws::HttpResponse updated = send(
        edge_, "PUT", "/2015-03-31/functions/" + name + "/configuration",
        Json({{"Environment", {{"Variables", {{"MODE", mode}, {"GREETING", "after"}}}}}}).dump());
    ASSERT_EQ(updated.status, 200) << updated.body;
    int after = before;
    EXPECT_TRUE(eventually([&] {
      Json answer = echo(name);
      after = answer.at("pid").get<int>();
      return answer.at("env").at("GREETING") == "after";
    }));
    EXPECT_NE(after, before);
    const std::string received = "SIGTERM received by " + std::to_string(before);
    EXPECT_TRUE(eventually([&] {
      return function_logs(work_dir_ / "functions", name).find(received) != std::string::npos;
    })) << function_logs(work_dir_ / "functions", name);
    // Gone either way: by its own exit, or by the SIGKILL that follows an ignored SIGTERM.
    EXPECT_TRUE(eventually([&] { return ::kill(before, 0) != 0 && errno == ESRCH; }))
        << "instance " << before << " still runs";
  }
}

// Under ReportBatchItemFailures, as Lambda documents it: no answer, null, an empty or null
// batchItemFailures is a complete success; an answer that is not JSON, or a malformed entry, is a
// complete failure.
TEST(BatchItemFailures, AnswersAreReadAsLambdaReadsThem) {
  const std::set<std::string> batch = {"m1", "m2"};
  const std::set<std::string> none;
  for (const char* success : {"", " \n", "null", "{}", R"({"batchItemFailures":[]})",
                              R"({"batchItemFailures":null})", R"("done")"}) {
    EXPECT_EQ(local::batch_item_failures(success, batch), none) << "'" << success << "'";
  }
  EXPECT_EQ(local::batch_item_failures(R"({"batchItemFailures":[{"itemIdentifier":"m2"}]})", batch),
            std::set<std::string>{"m2"});
  for (const char* failure :
       {"not JSON", R"({"batchItemFailures":[{"itemIdentifier":"m2"})", "{'batchItemFailures': []}",
        R"({"batchItemFailures":{}})", R"({"batchItemFailures":[{"itemIdentifier":""}]})",
        R"({"batchItemFailures":[{"itemIdentifier":"m3"}]})",
        R"({"batchItemFailures":[{"id":"m1"}]})"}) {
    EXPECT_EQ(local::batch_item_failures(failure, batch), std::nullopt) << failure;
  }
}

TEST_F(TaskerLocalLambdaTest, AnSqsBatchAnsweredWithInvalidJsonIsRetriedWhole) {
  ASSERT_NO_FATAL_FAILURE(create_function("batches", 30));
  aws::JsonClient sqs(aws::protocol::kSqs, aws::Endpoint{edge_, kRegion, "sqs"}, kKey, transport_,
                      aws::RetryPolicy{.max_attempts = 1});
  auto create_queue = [&](const std::string& name, const Json& attributes) {
    return sqs.call("CreateQueue", {{"QueueName", name}, {"Attributes", attributes}}, {})
        .at("QueueUrl")
        .get<std::string>();
  };
  // A message whose batch failed comes back after a second and goes to the dead-letter queue at
  // its second receive; a message whose batch succeeded is deleted and never gets there.
  const std::string dlq = create_queue("batches-dlq", Json::object());
  const std::string queue = create_queue(
      "batches", {{"VisibilityTimeout", "1"},
                  {"RedrivePolicy",
                   Json({{"deadLetterTargetArn", "arn:aws:sqs:us-east-1:123456789012:batches-dlq"},
                         {"maxReceiveCount", "1"}})
                       .dump()}});
  aws::HttpResponse mapping =
      send(edge_, "POST", "/2015-03-31/event-source-mappings/",
           Json({{"FunctionName", "batches"},
                 {"EventSourceArn", "arn:aws:sqs:us-east-1:123456789012:batches"},
                 {"BatchSize", 1},
                 {"FunctionResponseTypes", {"ReportBatchItemFailures"}}})
               .dump());
  ASSERT_EQ(mapping.status / 100, 2) << mapping.body;

  auto send_message = [&](const std::string& body) {
    sqs.call("SendMessage", {{"QueueUrl", queue}, {"MessageBody", body}}, {});
  };
  send_message(R"({"batchItemFailures":[]})");  // success: deleted
  send_message("this is not JSON");             // complete failure: kept, then dead-lettered
  Json dead;
  const auto give_up = Clock::now() + 60s;
  while (!dead.contains("Messages") && Clock::now() < give_up) {
    dead = sqs.call("ReceiveMessage",
                    {{"QueueUrl", dlq}, {"MaxNumberOfMessages", 10}, {"WaitTimeSeconds", 2}}, {});
  }
  ASSERT_TRUE(dead.contains("Messages"))
      << "the batch answered with invalid JSON was deleted, not retried\n"
      << tasker_local_->log_tail();
  ASSERT_EQ(dead.at("Messages").size(), 1u) << dead.dump();
  EXPECT_EQ(dead.at("Messages")[0].at("Body"), "this is not JSON");
  // The successful one is gone (not waiting in the queue, not dead-lettered).
  Json left = sqs.call("GetQueueAttributes",
                       {{"QueueUrl", queue},
                        {"AttributeNames",
                         {"ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"}}},
                       {});
  EXPECT_EQ(left.at("Attributes").at("ApproximateNumberOfMessages"), "0") << left.dump();
  EXPECT_EQ(left.at("Attributes").at("ApproximateNumberOfMessagesNotVisible"), "0") << left.dump();
  Json more = sqs.call("ReceiveMessage", {{"QueueUrl", dlq}, {"MaxNumberOfMessages", 10}}, {});
  EXPECT_FALSE(more.contains("Messages")) << more.dump();
}

}  // namespace
}  // namespace rstasker::testing
