// tasker-local: the local stack's companion process (Redshift Data API on PostgreSQL, Lambda, and
// the edge in front of moto). Argument parsing and wiring only; the roles live in their modules.
#include <spdlog/spdlog.h>

#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "local/code_store.hpp"
#include "local/data_api.hpp"
#include "local/edge.hpp"
#include "local/event_source.hpp"
#include "local/faults.hpp"
#include "local/lambda_service.hpp"
#include "local/moto_client.hpp"
#include "local/sigv4_verify.hpp"
#include "rstasker/aws/http.hpp"
#include "rstasker/common/error.hpp"
#include "rstasker/common/log.hpp"
#include "rstasker/services/event_bridge.hpp"
#include "rstasker/version.hpp"

namespace {

constexpr const char* kUsage =
    R"(tasker-local: Redshift Data API on PostgreSQL, Lambda and an edge in front of moto

Usage: tasker-local --port N --moto-url URL [options]

  --port N                 the edge port (TASKER_LOCAL_PORT)
  --host ADDR              address to listen on (TASKER_LOCAL_HOST; default 127.0.0.1)
  --moto-url URL           moto's own address, e.g. http://127.0.0.1:5000 (TASKER_LOCAL_MOTO_URL)
  --pg CONNINFO            libpq connection string for the Data API, e.g.
                           "host=127.0.0.1 port=5432 user=postgres passfile=/path/pgpass"
                           (TASKER_LOCAL_PG; a password belongs in a passfile, not here, where
                           `ps` shows it); without it Data API calls are refused
  --region R               the region served (AWS_REGION; default us-east-1)
  --account-id ID          the account in ARNs and events (TASKER_LOCAL_ACCOUNT_ID; default
                           123456789012)
  --access-key-id K        the key pair clients sign with, functions run with, and tasker-local
  --secret-access-key S    calls moto with (AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY)
  --accept-key K:S         also accept this key pair (repeatable; TASKER_LOCAL_ACCEPT_KEYS,
                           comma-separated). moto's Step Functions executor signs its Lambda
                           calls with ak:sk
  --endpoint-url URL       AWS_ENDPOINT_URL given to functions (TASKER_LOCAL_ENDPOINT_URL;
                           default http://127.0.0.1:<port>)
  --bootstrap PATH         run PATH as every provided.* function's bootstrap instead of the one
                           in its zip (TASKER_LOCAL_BOOTSTRAP)
  --log-dir DIR            function output, one file per instance (TASKER_LOCAL_LOG_DIR; default
                           $TMPDIR/tasker-local-<pid>/logs)
  --cache-dir DIR          unpacked function code (TASKER_LOCAL_CACHE_DIR; default
                           $TMPDIR/tasker-local-<pid>/code)
  --max-instances N        instances per function at most (TASKER_LOCAL_MAX_INSTANCES; default 8)
  --faults FILE            fault rules in force from the start (TASKER_LOCAL_FAULTS; JSON, see
                           docs/local-stack.md); PUT /_tasker_local/faults replaces them
  --log-level LEVEL        trace, debug, info, warn, error (LOG_LEVEL; default info)
  --help, --version

SIGTERM or SIGINT stops it cleanly: pollers stop, function instances are killed, exit status 0.
)";

struct Settings {
  int port = 0;
  std::string host = "127.0.0.1";
  std::string moto_url;
  std::string pg;
  std::string region = "us-east-1";
  std::string account_id = "123456789012";
  rstasker::aws::Credentials credentials;
  std::vector<rstasker::aws::Credentials> extra_keys;
  std::string endpoint_url;
  std::filesystem::path bootstrap;
  std::filesystem::path log_dir;
  std::filesystem::path cache_dir;
  int max_instances = 8;
  std::string log_level = "info";
  std::filesystem::path faults;
};

std::string env_or(const char* name, std::string fallback) {
  const char* value = std::getenv(name);
  return value != nullptr && *value != '\0' ? std::string(value) : fallback;
}

rstasker::aws::Credentials parse_key_pair(const std::string& text) {
  const std::size_t colon = text.find(':');
  if (colon == std::string::npos || colon == 0 || colon + 1 == text.size()) {
    throw std::invalid_argument("a key pair is ACCESS_KEY_ID:SECRET, not '" + text + "'");
  }
  return {text.substr(0, colon), text.substr(colon + 1), ""};
}

int parse_int(const std::string& text, const std::string& what) {
  std::size_t used = 0;
  const int value = std::stoi(text, &used);
  if (used != text.size() || value < 0) throw std::invalid_argument(what + " must be a number");
  return value;
}

Settings parse(int argc, char** argv) {
  Settings s;
  s.port = std::stoi(env_or("TASKER_LOCAL_PORT", "0"));
  s.host = env_or("TASKER_LOCAL_HOST", s.host);
  s.moto_url = env_or("TASKER_LOCAL_MOTO_URL", "");
  s.pg = env_or("TASKER_LOCAL_PG", "");
  s.region = env_or("AWS_REGION", env_or("AWS_DEFAULT_REGION", s.region));
  s.account_id = env_or("TASKER_LOCAL_ACCOUNT_ID", s.account_id);
  s.credentials = {env_or("AWS_ACCESS_KEY_ID", ""), env_or("AWS_SECRET_ACCESS_KEY", ""), ""};
  s.endpoint_url = env_or("TASKER_LOCAL_ENDPOINT_URL", "");
  s.bootstrap = env_or("TASKER_LOCAL_BOOTSTRAP", "");
  s.log_dir = env_or("TASKER_LOCAL_LOG_DIR", "");
  s.cache_dir = env_or("TASKER_LOCAL_CACHE_DIR", "");
  s.max_instances = std::stoi(env_or("TASKER_LOCAL_MAX_INSTANCES", "8"));
  s.log_level = env_or("LOG_LEVEL", s.log_level);
  s.faults = env_or("TASKER_LOCAL_FAULTS", "");
  std::string keys = env_or("TASKER_LOCAL_ACCEPT_KEYS", "");
  for (std::size_t pos = 0; pos < keys.size();) {
    std::size_t comma = keys.find(',', pos);
    if (comma == std::string::npos) comma = keys.size();
    if (comma > pos) s.extra_keys.push_back(parse_key_pair(keys.substr(pos, comma - pos)));
    pos = comma + 1;
  }

  for (int i = 1; i < argc; ++i) {
    std::string arg = argv[i];
    std::string value;
    bool has_value = false;
    if (auto eq = arg.find('='); arg.starts_with("--") && eq != std::string::npos) {
      value = arg.substr(eq + 1);
      arg = arg.substr(0, eq);
      has_value = true;
    }
    auto next = [&]() -> std::string {
      if (has_value) return value;
      if (i + 1 >= argc) throw std::invalid_argument(arg + " needs a value");
      return argv[++i];
    };
    if (arg == "--port") {
      s.port = parse_int(next(), "--port");
    } else if (arg == "--host") {
      s.host = next();
    } else if (arg == "--moto-url") {
      s.moto_url = next();
    } else if (arg == "--pg") {
      s.pg = next();
    } else if (arg == "--region") {
      s.region = next();
    } else if (arg == "--account-id") {
      s.account_id = next();
    } else if (arg == "--access-key-id") {
      s.credentials.access_key_id = next();
    } else if (arg == "--secret-access-key") {
      s.credentials.secret_access_key = next();
    } else if (arg == "--accept-key") {
      s.extra_keys.push_back(parse_key_pair(next()));
    } else if (arg == "--endpoint-url") {
      s.endpoint_url = next();
    } else if (arg == "--bootstrap") {
      s.bootstrap = next();
    } else if (arg == "--log-dir") {
      s.log_dir = next();
    } else if (arg == "--cache-dir") {
      s.cache_dir = next();
    } else if (arg == "--max-instances") {
      s.max_instances = parse_int(next(), "--max-instances");
    } else if (arg == "--faults") {
      s.faults = next();
    } else if (arg == "--log-level") {
      s.log_level = next();
    } else {
      throw std::invalid_argument("unknown argument '" + arg + "'");
    }
  }
  if (s.port <= 0 || s.port > 65535) throw std::invalid_argument("--port is required");
  if (s.moto_url.empty()) throw std::invalid_argument("--moto-url is required");
  if (s.credentials.access_key_id.empty() || s.credentials.secret_access_key.empty()) {
    throw std::invalid_argument("--access-key-id and --secret-access-key are required");
  }
  if (s.max_instances < 1) throw std::invalid_argument("--max-instances must be at least 1");
  if (s.endpoint_url.empty()) s.endpoint_url = "http://127.0.0.1:" + std::to_string(s.port);
  const auto scratch =
      std::filesystem::temp_directory_path() / ("tasker-local-" + std::to_string(::getpid()));
  if (s.log_dir.empty()) s.log_dir = scratch / "logs";
  if (s.cache_dir.empty()) s.cache_dir = scratch / "code";
  if (!s.bootstrap.empty()) s.bootstrap = std::filesystem::absolute(s.bootstrap);
  return s;
}

spdlog::level::level_enum level_of(const std::string& name) {
  spdlog::level::level_enum level = spdlog::level::from_str(name);
  if (level == spdlog::level::off && name != "off") {
    std::string lower;
    for (char c : name) lower += static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    level = spdlog::level::from_str(lower == "warning" ? "warn" : lower);
  }
  return level == spdlog::level::off ? spdlog::level::info : level;
}

int run(const Settings& s) {
  using namespace rstasker;
  // Termination signals are taken by sigwait below; block them before any thread starts.
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGTERM);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGHUP);
  pthread_sigmask(SIG_BLOCK, &signals, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  std::shared_ptr<aws::HttpTransport> transport = aws::make_curl_transport();
  auto moto = std::make_shared<local::MotoClient>(s.moto_url, s.region, s.credentials, transport);
  auto code = std::make_shared<local::CodeStore>(s.cache_dir, moto);

  local::LambdaOptions lambda_options;
  lambda_options.region = s.region;
  lambda_options.endpoint_url = s.endpoint_url;
  lambda_options.function_credentials = s.credentials;
  lambda_options.bootstrap_override = s.bootstrap;
  lambda_options.log_dir = s.log_dir;
  lambda_options.max_instances = s.max_instances;
  local::LambdaService lambda(lambda_options, moto, code);

  local::FaultRules rules;
  if (!s.faults.empty()) {
    std::ifstream in(s.faults);
    if (!in) throw Error(error_names::kConfigurationError, "cannot read " + s.faults.string());
    std::ostringstream text;
    text << in.rdbuf();
    rules =
        local::parse_fault_rules(parse_json(text.str(), s.faults.string(), "InvalidFaultRules"));
  }
  // Declared before the Data API: its publisher thread calls the injector until it stops.
  auto faults = std::make_shared<local::FaultInjector>(std::move(rules));

  std::unique_ptr<local::DataApi> data_api;
  if (!s.pg.empty()) {
    auto events = std::make_shared<services::EventBridge>(
        moto->json_client(aws::protocol::kEventBridge, aws::service::kEventBridge));
    local::DataApiOptions options;
    options.pg_conninfo = s.pg;
    options.region = s.region;
    options.account_id = s.account_id;
    options.publish = faults->wrap_publish([events](const services::EventEntry& entry) {
      events->put_events({entry}, {Deadline::after(std::chrono::seconds(10)), {}});
    });
    data_api = std::make_unique<local::DataApi>(std::move(options));
  }

  std::vector<local::AcceptedKey> keys{
      {s.credentials, "arn:aws:iam::" + s.account_id + ":user/local-stack"}};
  for (const auto& key : s.extra_keys) {
    keys.push_back({key, "arn:aws:iam::" + s.account_id + ":user/" + key.access_key_id});
  }
  local::EdgeOptions edge_options;
  edge_options.host = s.host;
  edge_options.port = s.port;
  edge_options.region = s.region;
  edge_options.moto_url = s.moto_url;
  edge_options.faults = faults;
  local::Edge edge(edge_options, local::SignatureVerifier(std::move(keys)), data_api.get(), lambda,
                   code);
  edge.start();

  local::EventSourcePollers pollers({}, moto, lambda);
  pollers.start();

  spdlog::info("tasker-local {} listening on http://{}:{} (moto {}, Data API {}, function logs {})",
               kVersion, s.host, s.port, s.moto_url, data_api ? "on PostgreSQL" : "off",
               s.log_dir.string());

  int signal_number = 0;
  sigwait(&signals, &signal_number);
  spdlog::info("signal {}: shutting down", signal_number);
  lambda.shutdown();
  pollers.stop();
  edge.stop();
  data_api.reset();
  spdlog::info("tasker-local stopped");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc > 1 && (std::string(argv[1]) == "--help" || std::string(argv[1]) == "-h")) {
    std::cout << kUsage;
    return 0;
  }
  if (argc > 1 && std::string(argv[1]) == "--version") {
    std::cout << "tasker-local " << rstasker::kVersion << '\n';
    return 0;
  }
  Settings settings;
  try {
    settings = parse(argc, argv);
  } catch (const std::exception& e) {
    std::cerr << "tasker-local: " << e.what() << "\n\n" << kUsage;
    return 2;
  }
  rstasker::log::Settings log_settings;
  log_settings.level = level_of(settings.log_level);
  log_settings.format = rstasker::log::Format::kText;
  rstasker::log::init(log_settings);
  rstasker::log::add_secret(settings.credentials.secret_access_key);
  try {
    return run(settings);
  } catch (const rstasker::Error& e) {
    spdlog::critical("{}: {}", e.name(), e.message());
    return 1;
  } catch (const std::exception& e) {
    spdlog::critical("{}", e.what());
    return 1;
  }
}
