// The local stack for end-to-end tests: scripts/local-stack as a child process, clients for the
// edge, and bounded polls of what cannot be awaited (executions, statements).
#include "local_stack.hpp"

#include <unistd.h>

#include <fstream>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "rstasker/aws/sigv4.hpp"
#include "rstasker/common/deadline.hpp"
#include "support/moto_server.hpp"
#include "support/paths.hpp"
#include "support/postgres_server.hpp"
#include "support/process.hpp"

namespace rstasker::testing {
namespace {

using namespace std::chrono_literals;
using Clock = std::chrono::steady_clock;

// The whole file, or "" when it cannot be read (a log that is not written yet).
std::string slurp(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

std::string last_bytes(const std::string& text, std::size_t count = 6000) {
  return text.size() <= count ? text : "[...]\n" + text.substr(text.size() - count);
}

// KEY=VALUE lines (the script's env and outputs files).
std::map<std::string, std::string> parse_assignments(const std::string& text) {
  std::map<std::string, std::string> values;
  std::istringstream lines(text);
  for (std::string line; std::getline(lines, line);) {
    const auto eq = line.find('=');
    if (eq == std::string::npos || eq == 0) continue;
    values[line.substr(0, eq)] = line.substr(eq + 1);
  }
  return values;
}

std::string field_text(const Json& field) {
  if (field.contains("stringValue")) return field.at("stringValue").get<std::string>();
  if (field.contains("longValue")) return std::to_string(field.at("longValue").get<long long>());
  if (field.contains("booleanValue"))
    return field.at("booleanValue").get<bool>() ? "true" : "false";
  if (field.contains("doubleValue")) return field.at("doubleValue").dump();
  return {};
}

}  // namespace

std::optional<std::string> LocalStack::unavailable_reason() {
  if (auto why = PostgresServer::unavailable_reason()) return why;
  if (auto why = MotoServer::unavailable_reason()) return why;
  for (const char* program : {"zip", "curl", "setsid"}) {
    if (!find_program(program)) {
      return std::string(program) + " is not installed (scripts/local-stack needs it)";
    }
  }
  return std::nullopt;
}

LocalStack::LocalStack(std::filesystem::path dir)
    : dir_(std::move(dir)), transport_(aws::make_curl_transport()) {
  std::string output;
  // A stack a previous run left behind (its watchdog normally takes it down) goes first.
  if (std::filesystem::exists(dir_ / "ports")) run_script({"down"}, output, 60s);
  std::filesystem::remove_all(dir_);
  std::filesystem::create_directories(dir_);

  up_ = true;  // from here on a failure must take down whatever started
  try {
    if (run_script({"deploy"}, output, 240s) != 0) {
      throw std::runtime_error("scripts/local-stack deploy failed:\n" + last_bytes(output));
    }
    read_env_file();
  } catch (...) {
    down();
    throw;
  }
  credentials_ = {env("AWS_ACCESS_KEY_ID"), env("AWS_SECRET_ACCESS_KEY"), ""};
  const std::string edge = env("AWS_ENDPOINT_URL");
  const std::string region = env("AWS_REGION");
  auto client = [&](const aws::JsonProtocol& protocol, const std::string& signing_name) {
    // One attempt: a test that meets an error should see it, not a retry that hides it.
    return std::make_unique<aws::JsonClient>(protocol, aws::Endpoint{edge, region, signing_name},
                                             credentials_, transport_,
                                             aws::RetryPolicy{.max_attempts = 1});
  };
  step_functions_ = client(aws::protocol::kStepFunctions, "states");
  sqs_ = client(aws::protocol::kSqs, "sqs");
  data_api_ = client(aws::protocol::kRedshiftData, "redshift-data");
}

LocalStack::~LocalStack() {
  down();
}

int LocalStack::down() {
  if (!up_) return 0;
  up_ = false;
  std::string output;
  return run_script({"down"}, output, 120s);
}

int LocalStack::run_script(const std::vector<std::string>& args, std::string& output,
                           std::chrono::seconds timeout) const {
  ProcessOptions options;
  options.argv = {(source_dir() / "scripts" / "local-stack").string()};
  options.argv.insert(options.argv.end(), args.begin(), args.end());
  options.env = {
      {"RSTASKER_LOCAL_STACK_DIR", dir_.string()},
      {"RSTASKER_BUILD_DIR", binary_dir().string()},
      {"RSTASKER_LOCAL_STACK_PREBUILT", "1"},
      {"RSTASKER_FUNCTION_BOOTSTRAP", (binary_dir() / "redshift-tasker").string()},
      {"RSTASKER_LOCAL_STACK_OWNER_PID", std::to_string(::getpid())},
  };
  // <build>/test-logs/<state dir>.<n>.<command>.log: every run of the script, for the reader.
  const auto log = test_log_dir() / (dir_.filename().string() + "." +
                                     std::to_string(++script_runs_) + "." + args.front() + ".log");
  options.log_file = log;
  int status = run_to_completion(options, timeout);
  output = slurp(log);
  return status;
}

std::map<std::string, int> LocalStack::recorded_pids() const {
  std::map<std::string, int> pids;
  auto first_line = [](const std::filesystem::path& file) {
    std::istringstream in(slurp(file));
    std::string line;
    std::getline(in, line);
    return line;
  };
  for (const char* name : {"watchdog", "moto", "tasker-local"}) {
    const std::string pid = first_line(dir_ / (std::string(name) + ".pid"));
    if (!pid.empty()) pids[name] = std::stoi(pid);
  }
  const std::string postmaster = first_line(dir_ / "pg" / "data" / "postmaster.pid");
  if (!postmaster.empty()) pids["postgres"] = std::stoi(postmaster);
  return pids;
}

void LocalStack::read_env_file() {
  env_ = parse_assignments(slurp(dir_ / "env"));
  if (env_.empty()) throw std::runtime_error("no environment file at " + (dir_ / "env").string());
}

const std::string& LocalStack::env(const std::string& name) const {
  auto it = env_.find(name);
  if (it == env_.end()) {
    throw std::runtime_error(name + " is not in " + (dir_ / "env").string());
  }
  return it->second;
}

std::map<std::string, std::string> LocalStack::deploy_stack(
    const std::string& name, const std::filesystem::path& template_file,
    const std::map<std::string, std::string>& parameters) {
  std::vector<std::string> args = {"deploy-stack", name, template_file.string()};
  for (const auto& [key, value] : parameters) args.push_back(key + "=" + value);
  std::string output;
  if (run_script(args, output, 120s) != 0) {
    throw std::runtime_error("deploying " + name + " failed:\n" + last_bytes(output));
  }
  auto outputs = parse_assignments(slurp(dir_ / "stacks" / (name + ".env")));
  if (outputs.empty()) throw std::runtime_error("stack " + name + " has no outputs:\n" + output);
  return outputs;
}

aws::HttpResponse LocalStack::invoke(const std::string& function, const std::string& payload,
                                     const std::string& type) const {
  aws::HttpRequest request;
  request.method = "POST";
  request.url = env("AWS_ENDPOINT_URL") + "/2015-03-31/functions/" + function + "/invocations";
  request.headers = {{"X-Amz-Invocation-Type", type}, {"Content-Type", "application/json"}};
  request.body = payload;
  aws::Signer(env("AWS_REGION"), "lambda")
      .sign(request, credentials_, std::chrono::system_clock::now());
  return transport_->send(request, Deadline::after(120s));
}

Json LocalStack::invoke_tasker(const Json& event) const {
  aws::HttpResponse response = invoke(env("TASKER_FUNCTION_NAME"), event.dump());
  if (response.status != 200 || !response.header("X-Amz-Function-Error").empty()) {
    throw std::runtime_error("invoking the tasker with " + event.dump() + " failed: HTTP " +
                             std::to_string(response.status) + " " + response.body);
  }
  return Json::parse(response.body);
}

std::string LocalStack::function_logs() const {
  std::string text;
  const std::filesystem::path dir =
      std::filesystem::path(env("TASKER_LOG_DIR")) / env("TASKER_FUNCTION_NAME");
  std::error_code error;
  for (const auto& entry : std::filesystem::directory_iterator(dir, error)) {
    text += slurp(entry.path());
  }
  return text;
}

std::string start_execution(const aws::JsonClient& sfn, const std::string& machine_arn,
                            const std::string& name, const Json& input) {
  return sfn
      .call("StartExecution",
            {{"stateMachineArn", machine_arn}, {"name", name}, {"input", input.dump()}}, {})
      .at("executionArn")
      .get<std::string>();
}

Execution await_execution(const aws::JsonClient& sfn, const std::string& execution_arn,
                          std::chrono::seconds timeout) {
  Execution execution;
  execution.arn = execution_arn;
  const auto give_up = Clock::now() + timeout;
  while (true) {
    execution.described = sfn.call("DescribeExecution", {{"executionArn", execution_arn}}, {});
    execution.status = execution.described.at("status").get<std::string>();
    if (execution.status != "RUNNING" || Clock::now() > give_up) break;
    std::this_thread::sleep_for(100ms);
  }
  if (auto output = execution.described.find("output");
      output != execution.described.end() && output->is_string()) {
    execution.output = Json::parse(output->get<std::string>());
  }
  Json request = {{"executionArn", execution_arn}, {"maxResults", 1000}};
  while (true) {
    Json page = sfn.call("GetExecutionHistory", request, {});
    for (const Json& event : page.value("events", Json::array())) {
      execution.history.push_back(event);
      const std::string type = event.value("type", "");
      if (type.ends_with("StateEntered")) {
        execution.path.push_back(event.at("stateEnteredEventDetails").at("name"));
      }
    }
    if (!page.contains("nextToken") || page.at("nextToken").is_null()) break;
    request["nextToken"] = page.at("nextToken");
  }
  return execution;
}

Json run_sql(const LocalStack& stack, const std::string& sql) {
  const aws::JsonClient& data_api = stack.data_api();
  const std::string id = data_api
                             .call("ExecuteStatement",
                                   {{"ClusterIdentifier", stack.env("TASKER_CLUSTER_IDENTIFIER")},
                                    {"Database", stack.env("TASKER_DATABASE")},
                                    {"DbUser", stack.env("TASKER_DB_USER")},
                                    {"Sql", sql}},
                                   {})
                             .at("Id")
                             .get<std::string>();
  Json described;
  const bool ended = eventually(
      [&] {
        described = data_api.call("DescribeStatement", {{"Id", id}}, {});
        const std::string status = described.at("Status");
        return status == "FINISHED" || status == "FAILED" || status == "ABORTED";
      },
      60s, 20ms);
  if (!ended || described.at("Status") != "FINISHED") {
    throw std::runtime_error("`" + sql + "` did not finish: " + described.dump());
  }
  if (!described.value("HasResultSet", false)) return Json::object();
  return data_api.call("GetStatementResult", {{"Id", id}}, {});
}

std::string sql_value(const LocalStack& stack, const std::string& sql) {
  Json result = run_sql(stack, sql);
  const Json records = result.value("Records", Json::array());
  if (records.empty() || records[0].empty()) return {};
  return field_text(records[0][0]);
}

bool eventually(const std::function<bool()>& check, std::chrono::milliseconds timeout,
                std::chrono::milliseconds interval) {
  const auto give_up = Clock::now() + timeout;
  while (true) {
    if (check()) return true;
    if (Clock::now() > give_up) return false;
    std::this_thread::sleep_for(interval);
  }
}

}  // namespace rstasker::testing
