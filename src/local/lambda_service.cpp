// Lambda on one machine. Each function has a pool: a queue of invocations and the instances that
// serve it. An instance is a process plus its own Runtime API listener; an idle instance is one
// whose GET /next is blocked waiting for the queue, so instances pull work and stay warm.
//
// Threads: callers of invoke() wait for their invocation's outcome; each instance's Runtime API
// has a few handler threads; one supervisor thread forks every instance (so their parent-death
// signal stays armed for as long as tasker-local lives), reaps them, enforces timeouts and tears
// finished instances down; a few workers run Event invocations. One mutex guards all pools.
#include "local/lambda_service.hpp"

#include <fcntl.h>
#include <httplib.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdlib>
#include <deque>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <thread>
#include <utility>
#include <vector>

#include "local/child_process.hpp"
#include "local/function_config.hpp"
#include "rstasker/common/deadline.hpp"
#include "rstasker/common/error.hpp"
#include "rstasker/common/text.hpp"

namespace rstasker::local {
namespace {

using Clock = std::chrono::steady_clock;

constexpr std::size_t kMaxSyncPayload = 6291456;  // 6 MB
constexpr std::size_t kMaxAsyncPayload = 262144;  // 256 KB
constexpr std::size_t kMaxResponse = 6291556;     // as Lambda: 100 bytes more than 6 MiB
constexpr std::size_t kLogTailBytes = 4096;
constexpr auto kSupervisorTick = std::chrono::milliseconds(50);
// How long an instance stopped on purpose (idle, retired, shutdown) has between SIGTERM and
// SIGKILL. Lambda gives a runtime 500 ms when it has extensions; longer here so that a
// sanitizer build's leak check (run on SIGTERM) can finish and be read in the function's log.
constexpr auto kStopGrace = std::chrono::seconds(3);
constexpr auto kConfigTimeout = std::chrono::seconds(10);

std::string error_payload(std::string_view type, std::string_view message) {
  return dump_json(Json{{"errorType", std::string(type)}, {"errorMessage", std::string(message)}});
}

std::string seconds_text(int seconds) {
  return fmt::format("{:.2f}", static_cast<double>(seconds));
}

// What an invocation ended with.
struct Outcome {
  bool function_error = false;
  std::string payload;                 // the response, or the error JSON
  std::string error_type;              // for function errors
  std::optional<Error> service_error;  // the invocation could not run at all (shutdown)
};

Outcome function_failure(std::string_view type, std::string_view message) {
  return {true, error_payload(type, message), std::string(type), std::nullopt};
}

class Invocation {
 public:
  std::string request_id;
  std::string payload;
  std::string client_context;
  std::string trace_id;
  std::string invoked_arn;
  // Set when an instance takes it (guarded by the service mutex until then).
  Clock::time_point deadline{};
  Clock::time_point started{};
  std::filesystem::path log_path;
  off_t log_start = 0;
  off_t log_end = 0;

  // The first outcome wins; later ones (a response racing a timeout) are ignored.
  bool complete(Outcome outcome) {
    std::lock_guard lock(mutex_);
    if (outcome_) return false;
    outcome_ = std::move(outcome);
    done_.notify_all();
    return true;
  }
  Outcome wait() {
    std::unique_lock lock(mutex_);
    done_.wait(lock, [this] { return outcome_.has_value(); });
    return *outcome_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable done_;
  std::optional<Outcome> outcome_;
};

enum class State { kStarting, kIdle, kBusy, kReturning, kDead };

struct Pool;

// One execution environment. Fields are guarded by the service mutex unless noted.
struct Instance {
  std::uint64_t id = 0;
  std::string hex_id;  // 32 hex digits, as in a Lambda log stream name
  Pool* pool = nullptr;
  FunctionConfig config;  // the revision it runs
  ChildSpec spec;
  int log_fd = -1;
  std::filesystem::path log_path;
  pid_t pid = -1;
  int pidfd = -1;
  Clock::time_point spawned_at{};
  Clock::time_point idle_since{};
  std::optional<Clock::duration> init_duration;  // reported with the first invocation
  State state = State::kStarting;
  bool reached_next = false;
  bool retired = false;                      // runs an older revision: takes no more invocations
  bool stopping = false;                     // being killed: its GET /next must return
  bool expected_exit = false;                // killed on purpose (idle, retired, timeout, shutdown)
  std::optional<Clock::time_point> kill_at;  // sent SIGTERM: SIGKILL if still there by then
  std::optional<Outcome> init_error;         // posted to /init/error, or an init timeout
  std::shared_ptr<Invocation> current;

  // Runtime API listener (not guarded: created before the instance is shared, joined after it
  // is dead).
  std::unique_ptr<httplib::Server> server;
  std::thread server_thread;
  int port = 0;

  ~Instance() {
    if (log_fd >= 0) ::close(log_fd);
    if (pidfd >= 0) ::close(pidfd);
  }
};

struct Pool {
  std::string arn;
  FunctionConfig config;
  std::filesystem::path bootstrap;  // of the current revision
  std::deque<std::shared_ptr<Invocation>> queue;
  std::vector<std::shared_ptr<Instance>> instances;
};

struct AsyncJob {
  FunctionConfig config;
  std::filesystem::path bootstrap;
  InvokeRequest request;
  std::string request_id;
};

std::string random_hex(std::size_t digits) {
  std::string uuid;
  while (uuid.size() < digits) {
    for (char c : random_uuid()) {
      if (c != '-') uuid += c;
    }
  }
  return uuid.substr(0, digits);
}

std::string utc_now(const char* format) {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char text[64];
  std::strftime(text, sizeof text, format, &tm);
  return text;
}

void append_to(int fd, std::string_view text) {
  while (!text.empty()) {
    const ssize_t written = ::write(fd, text.data(), text.size());
    if (written <= 0) {
      if (written < 0 && errno == EINTR) continue;
      return;
    }
    text.remove_prefix(static_cast<std::size_t>(written));
  }
}

off_t file_size(int fd) {
  const off_t end = ::lseek(fd, 0, SEEK_END);
  return end < 0 ? 0 : end;
}

// The peak resident memory of a process, in MB (VmHWM), or 0 when unknown.
long max_memory_mb(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.starts_with("VmHWM:")) return std::strtol(line.c_str() + 6, nullptr, 10) / 1024;
  }
  return 0;
}

std::string read_range(const std::filesystem::path& path, off_t start, off_t end) {
  if (end <= start) return {};
  start = std::max(start, end - static_cast<off_t>(kLogTailBytes));
  std::ifstream in(path, std::ios::binary);
  in.seekg(start);
  std::string text(static_cast<std::size_t>(end - start), '\0');
  in.read(text.data(), static_cast<std::streamsize>(text.size()));
  text.resize(static_cast<std::size_t>(in.gcount()));
  return text;
}

void stop_listener(Instance& instance) {
  if (!instance.server) return;
  // stop() is a no-op until the listener runs; it starts within moments of the instance.
  for (int i = 0; i < 200 && !instance.server->is_running(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  instance.server->stop();
  if (instance.server_thread.joinable()) instance.server_thread.join();
}

}  // namespace

class LambdaService::Impl {
 public:
  Impl(LambdaOptions options, std::shared_ptr<const MotoClient> moto,
       std::shared_ptr<CodeStore> code)
      : options_(std::move(options)), moto_(std::move(moto)), code_(std::move(code)) {
    wake_fd_ = ::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (wake_fd_ < 0) throw service_error("eventfd failed");
    std::filesystem::create_directories(options_.log_dir);
    supervisor_ = std::thread([this] { supervise(); });
    for (int i = 0; i < std::max(1, options_.async_workers); ++i) {
      async_workers_.emplace_back([this] { run_async_jobs(); });
    }
  }

  ~Impl() {
    shutdown();
    if (wake_fd_ >= 0) ::close(wake_fd_);
  }

  InvokeResult invoke(const InvokeRequest& request, InvocationType type) {
    if (stopping_) throw service_error("tasker-local is shutting down");
    const FunctionConfig config = function_config(request.function, request.qualifier);
    if (!config.runs_locally()) {
      throw Error("InvalidRuntimeException",
                  "tasker-local runs only custom-runtime (provided.*) zip functions; " +
                      config.name + " uses " +
                      (config.package_type == "Zip" ? config.runtime : config.package_type) +
                      ", which the local stack cannot run.",
                  502);
    }
    const std::size_t limit = type == InvocationType::kEvent ? kMaxAsyncPayload : kMaxSyncPayload;
    if (request.payload.size() > limit) {
      throw Error("RequestTooLargeException",
                  fmt::format("Request must be smaller than {} bytes for the InvokeFunction "
                              "operation",
                              limit),
                  413);
    }
    InvokeRequest checked = request;
    if (checked.payload.empty()) checked.payload = "{}";
    try {
      parse_json(checked.payload, "the payload", "InvalidRequestContentException");
    } catch (const Error& e) {
      throw Error(e.name(), "Could not parse request body into json: " + e.message(), 400);
    }
    if (config.reserved_concurrency && *config.reserved_concurrency == 0) {
      throw Error("TooManyRequestsException", "Rate Exceeded.", 429);
    }

    InvokeResult result;
    result.executed_version = config.version;
    result.request_id = random_uuid();
    if (type == InvocationType::kDryRun) {
      result.status = 204;
      return result;
    }
    const std::filesystem::path bootstrap = bootstrap_for(config);
    if (type == InvocationType::kEvent) {
      {
        std::lock_guard lock(async_mutex_);
        async_jobs_.push_back({config, bootstrap, std::move(checked), result.request_id});
      }
      async_ready_.notify_one();
      spdlog::info("lambda {}: queued Event invocation {}", config.name, result.request_id);
      result.status = 202;
      return result;
    }
    return execute(config, bootstrap, checked, result.request_id);
  }

  std::string why_not_runnable(const std::string& function) {
    try {
      const FunctionConfig config = function_config(function, "");
      if (config.runs_locally()) return "";
      return config.name + " uses " +
             (config.package_type == "Zip" ? config.runtime : config.package_type) +
             "; tasker-local runs only provided.* zip functions";
    } catch (const Error& e) {
      return e.name() + ": " + e.message();
    }
  }

  void shutdown() {
    {
      std::lock_guard lock(mutex_);
      if (stopping_.exchange(true)) return;
      for (auto& [arn, pool] : pools_) {
        for (auto& invocation : pool->queue) {
          invocation->complete({false, {}, {}, service_error("tasker-local is shutting down")});
        }
        pool->queue.clear();
        for (auto& instance : pool->instances) stop(*instance);
      }
      work_ready_.notify_all();
    }
    async_ready_.notify_all();
    for (auto& worker : async_workers_) {
      if (worker.joinable()) worker.join();
    }
    wake_supervisor();
    if (supervisor_.joinable()) supervisor_.join();
  }

 private:
  // --- Configuration and code ------------------------------------------------------------------

  FunctionConfig function_config(const std::string& function, const std::string& qualifier) {
    if (function.empty()) {
      throw Error("ValidationException", "1 validation error detected: FunctionName is empty", 400);
    }
    const std::string key = function + "\n" + qualifier;
    {
      std::lock_guard lock(config_mutex_);
      auto it = config_cache_.find(key);
      if (it != config_cache_.end() && Clock::now() - it->second.second < options_.config_ttl) {
        return it->second.first;
      }
    }
    std::string path = "/2015-03-31/functions/" + encode_path_segment(function);
    if (!qualifier.empty()) path += "?Qualifier=" + encode_path_segment(qualifier);
    FunctionConfig config;
    try {
      config = FunctionConfig::from_get_function(
          moto_->rest_json("GET", path, nullptr, Deadline::after(kConfigTimeout)));
    } catch (const Error& e) {
      if (e.http_status() == 404 || e.name() == "ResourceNotFoundException") {
        throw Error("ResourceNotFoundException", e.message(), 404);
      }
      throw;
    }
    std::lock_guard lock(config_mutex_);
    config_cache_[key] = {config, Clock::now()};
    return config;
  }

  std::filesystem::path bootstrap_for(const FunctionConfig& config) {
    if (!options_.bootstrap_override.empty()) return options_.bootstrap_override;
    return code_->unpacked(config) / "bootstrap";
  }

  // --- Running invocations ---------------------------------------------------------------------

  InvokeResult execute(const FunctionConfig& config, const std::filesystem::path& bootstrap,
                       const InvokeRequest& request, const std::string& request_id) {
    auto invocation = std::make_shared<Invocation>();
    invocation->request_id = request_id;
    invocation->payload = request.payload;
    invocation->client_context = request.client_context;
    invocation->trace_id = request.trace_id;
    invocation->invoked_arn = config.arn;
    const auto started = Clock::now();
    {
      std::lock_guard lock(mutex_);
      if (stopping_) throw service_error("tasker-local is shutting down");
      Pool& pool = pool_for(config, bootstrap);
      pool.queue.push_back(invocation);
      spawn_as_needed(pool);
      work_ready_.notify_all();
    }
    Outcome outcome = invocation->wait();
    if (outcome.service_error) throw *outcome.service_error;

    InvokeResult result;
    result.request_id = request_id;
    result.executed_version = config.version;
    result.payload = std::move(outcome.payload);
    if (outcome.function_error) result.function_error = "Unhandled";
    if (request.tail_log) {
      result.log_tail =
          read_range(invocation->log_path, invocation->log_start, invocation->log_end);
    }
    const auto millis =
        std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now() - started).count();
    if (outcome.function_error) {
      spdlog::info("lambda {}: invocation {} failed after {} ms: {}", config.name, request_id,
                   millis, outcome.error_type);
    } else {
      spdlog::info("lambda {}: invocation {} succeeded in {} ms", config.name, request_id, millis);
    }
    return result;
  }

  void run_async_jobs() {
    while (true) {
      AsyncJob job;
      {
        std::unique_lock lock(async_mutex_);
        async_ready_.wait(lock, [this] { return stopping_ || !async_jobs_.empty(); });
        if (stopping_) {
          if (!async_jobs_.empty()) {
            spdlog::warn("lambda: dropping {} queued Event invocations at shutdown",
                         async_jobs_.size());
            async_jobs_.clear();
          }
          return;
        }
        job = std::move(async_jobs_.front());
        async_jobs_.pop_front();
      }
      try {
        execute(job.config, job.bootstrap, job.request, job.request_id);
      } catch (const Error& e) {
        spdlog::warn("lambda {}: Event invocation {} did not run: {}: {}", job.config.name,
                     job.request_id, e.name(), e.message());
      }
    }
  }

  // --- Pools and instances (callers hold mutex_) ----------------------------------------------

  Pool& pool_for(const FunctionConfig& config, const std::filesystem::path& bootstrap) {
    auto& slot = pools_[config.arn];
    if (!slot) {
      slot = std::make_unique<Pool>();
      slot->arn = config.arn;
      slot->config = config;
      slot->bootstrap = bootstrap;
    }
    Pool& pool = *slot;
    if (pool.config.revision() != config.revision() || pool.bootstrap != bootstrap) {
      spdlog::info("lambda {}: code or configuration changed; retiring its instances", config.name);
      pool.config = config;
      pool.bootstrap = bootstrap;
    }
    for (auto& instance : pool.instances) {
      if ((instance->config.revision() != pool.config.revision() ||
           instance->spec.argv[0] != pool.bootstrap.string()) &&
          !instance->retired) {
        instance->retired = true;
        if (instance->state == State::kStarting || instance->state == State::kIdle) {
          stop(*instance);
        }
      }
    }
    return pool;
  }

  int instance_limit(const Pool& pool) const {
    int limit = std::max(1, options_.max_instances);
    if (pool.config.reserved_concurrency && *pool.config.reserved_concurrency > 0) {
      limit = std::min(limit, *pool.config.reserved_concurrency);
    }
    return limit;
  }

  // Starts instances until every queued invocation has one that will take it (or the limit).
  void spawn_as_needed(Pool& pool) {
    std::size_t ready = 0;
    int live = 0;
    for (const auto& instance : pool.instances) {
      if (instance->state == State::kDead) continue;
      ++live;
      if (instance->retired || instance->stopping) continue;
      if (instance->state != State::kBusy) ++ready;
    }
    while (ready < pool.queue.size() && live < instance_limit(pool)) {
      try {
        pool.instances.push_back(new_instance(pool));
      } catch (const Error& e) {
        // No listener, log file or fork: the oldest waiting invocation learns why.
        fail_oldest(pool, {false, {}, {}, e});
        continue;
      }
      ++ready;
      ++live;
    }
  }

  std::shared_ptr<Instance> new_instance(Pool& pool) {
    const std::filesystem::path& bootstrap = pool.bootstrap;
    auto instance = std::make_shared<Instance>();
    instance->id = ++instance_counter_;
    instance->hex_id = random_hex(32);
    instance->pool = &pool;
    instance->config = pool.config;
    const FunctionConfig& config = instance->config;

    std::filesystem::path dir = options_.log_dir / config.name;
    std::filesystem::create_directories(dir);
    instance->log_path =
        dir / (utc_now("%Y%m%d-%H%M%S") + "-" + instance->hex_id.substr(0, 8) + ".log");
    instance->log_fd =
        ::open(instance->log_path.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
    if (instance->log_fd < 0) {
      throw service_error("cannot open the function log " + instance->log_path.string());
    }

    start_runtime_api(*instance);

    const std::filesystem::path task_root = bootstrap.parent_path();
    std::map<std::string, std::string> env;
    for (const std::string& name : options_.inherited_env) {
      if (const char* value = std::getenv(name.c_str()); value != nullptr) env[name] = value;
    }
    env["LANG"] = env.contains("LANG") ? env["LANG"] : "en_US.UTF-8";
    if (!env.contains("PATH")) env["PATH"] = "/usr/local/bin:/usr/bin:/bin";
    for (const auto& [name, value] : config.environment) env[name] = value;
    const auto& credentials = options_.function_credentials;
    env["AWS_LAMBDA_FUNCTION_NAME"] = config.name;
    env["AWS_LAMBDA_FUNCTION_VERSION"] = config.version;
    env["AWS_LAMBDA_FUNCTION_MEMORY_SIZE"] = std::to_string(config.memory_mb);
    env["AWS_LAMBDA_LOG_GROUP_NAME"] = "/aws/lambda/" + config.name;
    env["AWS_LAMBDA_LOG_STREAM_NAME"] =
        utc_now("%Y/%m/%d/") + "[" + config.version + "]" + instance->hex_id;
    env["AWS_LAMBDA_INITIALIZATION_TYPE"] = "on-demand";
    env["AWS_LAMBDA_RUNTIME_API"] = "127.0.0.1:" + std::to_string(instance->port);
    env["AWS_REGION"] = options_.region;
    env["AWS_DEFAULT_REGION"] = options_.region;
    env["AWS_ACCESS_KEY_ID"] = credentials.access_key_id;
    env["AWS_SECRET_ACCESS_KEY"] = credentials.secret_access_key;
    if (credentials.session_token.empty()) {
      env.erase("AWS_SESSION_TOKEN");
    } else {
      env["AWS_SESSION_TOKEN"] = credentials.session_token;
    }
    env["AWS_ENDPOINT_URL"] = options_.endpoint_url;
    // The stack's CloudFormation response URLs are plain http on the loopback interface (the
    // tests' receivers); production accepts only S3's https URLs. A function's own value wins.
    env.emplace("CFN_RESPONSE_URLS", "any");
    env["LAMBDA_TASK_ROOT"] = task_root.string();
    env["LAMBDA_RUNTIME_DIR"] = task_root.string();
    env["_HANDLER"] = config.handler;
    env["TZ"] = ":UTC";

    instance->spec.argv = {bootstrap.string()};
    for (const auto& [name, value] : env) instance->spec.env.push_back(name + "=" + value);
    instance->spec.working_dir = task_root;
    instance->spec.output_fd = instance->log_fd;
    instance->spawned_at = Clock::now();
    spawn_queue_.push_back(instance);
    wake_supervisor();
    spdlog::debug("lambda {}: starting instance {} (runtime API 127.0.0.1:{}, log {})", config.name,
                  instance->hex_id.substr(0, 8), instance->port, instance->log_path.string());
    return instance;
  }

  void start_runtime_api(Instance& instance) {
    instance.server = std::make_unique<httplib::Server>();
    httplib::Server& server = *instance.server;
    server.new_task_queue = [] { return new httplib::ThreadPool(3); };
    Instance* self = &instance;
    server.Get("/2018-06-01/runtime/invocation/next",
               [this, self](const httplib::Request&, httplib::Response& res) { next(*self, res); });
    // Bodies come through content readers: cpp-httplib refuses form-encoded bodies over 8 KB
    // otherwise, and `curl -d` (a shell runtime) posts with that content type.
    auto read_body = [](const httplib::ContentReader& read) {
      std::string body;
      read([&body](const char* data, std::size_t size) {
        body.append(data, size);
        return true;
      });
      return body;
    };
    server.Post(R"(/2018-06-01/runtime/invocation/([^/]+)/response)",
                [this, self, read_body](const httplib::Request& req, httplib::Response& res,
                                        const httplib::ContentReader& read) {
                  post_result(*self, req.matches[1], req, read_body(read), res, false);
                });
    server.Post(R"(/2018-06-01/runtime/invocation/([^/]+)/error)",
                [this, self, read_body](const httplib::Request& req, httplib::Response& res,
                                        const httplib::ContentReader& read) {
                  post_result(*self, req.matches[1], req, read_body(read), res, true);
                });
    server.Post("/2018-06-01/runtime/init/error",
                [this, self, read_body](const httplib::Request& req, httplib::Response& res,
                                        const httplib::ContentReader& read) {
                  post_init_error(*self, req, read_body(read), res);
                });
    instance.port = server.bind_to_any_port("127.0.0.1");
    if (instance.port <= 0) throw service_error("cannot bind a Runtime API port");
    instance.server_thread = std::thread([&server] { server.listen_after_bind(); });
  }

  // Marks an instance for death and SIGKILLs it (once it has a pid; spawn checks `stopping`):
  // what Lambda does on a time-out or a failed init.
  void kill(Instance& instance, bool expected) {
    if (expected) instance.expected_exit = true;
    instance.stopping = true;
    if (instance.pid > 0) kill_child_group(instance.pid);
    work_ready_.notify_all();
  }

  // Stops an instance on purpose (idle, retired, shutdown) as Lambda shuts a sandbox down:
  // SIGTERM, then SIGKILL after kStopGrace (enforce_timers) if it has not exited. An instance
  // without a process yet is killed when it gets one (spawn checks `stopping`).
  void stop(Instance& instance) {
    if (instance.stopping) return;  // already on its way out
    if (instance.pid <= 0) {
      kill(instance, /*expected=*/true);
      return;
    }
    instance.expected_exit = true;
    instance.stopping = true;
    instance.kill_at = Clock::now() + kStopGrace;
    kill_child_group(instance.pid, SIGTERM);
    work_ready_.notify_all();
  }

  // Fails the oldest invocation still waiting for an instance (after a failed start).
  void fail_oldest(Pool& pool, Outcome outcome) {
    if (pool.queue.empty()) return;
    auto invocation = pool.queue.front();
    pool.queue.pop_front();
    invocation->complete(std::move(outcome));
  }

  // Writes END and REPORT, records where the invocation's output ends, and completes it.
  void finish(Instance& instance, const std::shared_ptr<Invocation>& invocation, Outcome outcome) {
    if (invocation->started != Clock::time_point{}) {
      const double millis =
          std::chrono::duration<double, std::milli>(Clock::now() - invocation->started).count();
      std::string report = fmt::format(
          "END RequestId: {}\nREPORT RequestId: {}\tDuration: {:.2f} ms\tBilled Duration: {} ms\t"
          "Memory Size: {} MB\tMax Memory Used: {} MB",
          invocation->request_id, invocation->request_id, millis, static_cast<long>(millis) + 1,
          instance.config.memory_mb, instance.pid > 0 ? max_memory_mb(instance.pid) : 0);
      if (instance.init_duration) {
        report +=
            fmt::format("\tInit Duration: {:.2f} ms",
                        std::chrono::duration<double, std::milli>(*instance.init_duration).count());
        instance.init_duration.reset();
      }
      if (outcome.function_error) report += "\tStatus: error\tError Type: " + outcome.error_type;
      append_to(instance.log_fd, report + "\n");
      invocation->log_end = file_size(instance.log_fd);
    }
    invocation->complete(std::move(outcome));
  }

  // --- Runtime API handlers (threads of an instance's listener) --------------------------------

  void next(Instance& instance, httplib::Response& res) {
    std::shared_ptr<Invocation> invocation;
    {
      std::unique_lock lock(mutex_);
      if (instance.current) {
        // The runtime asked for more work without answering: Lambda would fail that invocation.
        finish(instance, instance.current,
               function_failure("Runtime.InvalidResponse",
                                "RequestId: " + instance.current->request_id +
                                    " Error: the runtime requested the next invocation without "
                                    "posting a response"));
        instance.current.reset();
      }
      if (!instance.reached_next) {
        instance.reached_next = true;
        instance.init_duration = Clock::now() - instance.spawned_at;
      }
      instance.state = State::kIdle;
      instance.idle_since = Clock::now();
      work_ready_.wait(lock, [&] {
        return stopping_ || instance.stopping || instance.retired || !instance.pool->queue.empty();
      });
      if (stopping_ || instance.stopping || instance.retired) {
        if (instance.retired) stop(instance);
        res.status = 410;
        res.set_content(error_payload("Runtime.Shutdown", "this instance is being stopped"),
                        "application/json");
        return;
      }
      invocation = instance.pool->queue.front();
      instance.pool->queue.pop_front();
      instance.current = invocation;
      instance.state = State::kBusy;
      invocation->started = Clock::now();
      invocation->deadline =
          invocation->started + std::chrono::seconds(instance.config.timeout_seconds);
      invocation->log_path = instance.log_path;
      invocation->log_start = file_size(instance.log_fd);
      append_to(instance.log_fd, "START RequestId: " + invocation->request_id +
                                     " Version: " + instance.config.version + "\n");
    }
    const std::int64_t deadline_ms =
        now_epoch_ms() + std::int64_t{instance.config.timeout_seconds} * 1000;
    res.status = 200;
    res.set_header("Lambda-Runtime-Aws-Request-Id", invocation->request_id);
    res.set_header("Lambda-Runtime-Deadline-Ms", std::to_string(deadline_ms));
    res.set_header("Lambda-Runtime-Invoked-Function-Arn", invocation->invoked_arn);
    res.set_header("Lambda-Runtime-Trace-Id",
                   invocation->trace_id.empty()
                       ? "Root=1-" + random_hex(8) + "-" + random_hex(24) + ";Sampled=0"
                       : invocation->trace_id);
    if (!invocation->client_context.empty()) {
      res.set_header("Lambda-Runtime-Client-Context", invocation->client_context);
    }
    res.set_content(invocation->payload, "application/json");
  }

  void post_result(Instance& instance, const std::string& request_id, const httplib::Request& req,
                   const std::string& body, httplib::Response& res, bool is_error) {
    std::lock_guard lock(mutex_);
    if (!instance.current || instance.current->request_id != request_id) {
      res.status = 400;
      res.set_content(error_payload("InvalidRequestID", "Invalid request ID"), "application/json");
      return;
    }
    auto invocation = std::move(instance.current);
    instance.current.reset();
    instance.state = State::kReturning;
    instance.idle_since = Clock::now();

    Outcome outcome;
    if (is_error) {
      std::string type = req.get_header_value("Lambda-Runtime-Function-Error-Type");
      outcome.function_error = true;
      try {
        Json error = parse_json(body, "error", "InvalidError");
        if (!error.is_object()) throw Error("InvalidError", "not an object");
        if (type.empty() && error.contains("errorType") && error["errorType"].is_string()) {
          type = error["errorType"].get<std::string>();
        }
        outcome.payload = body;
      } catch (const Error&) {
        if (type.empty()) type = "Runtime.Unknown";
        outcome.payload = error_payload(type, body);
      }
      outcome.error_type = type.empty() ? "Runtime.Unknown" : type;
      res.status = 202;
      res.set_content(R"({"status":"OK"})", "application/json");
    } else if (body.size() > kMaxResponse) {
      outcome = function_failure(
          "Function.ResponseSizeTooLarge",
          fmt::format("Response payload size exceeded maximum allowed payload size ({} bytes).",
                      kMaxResponse));
      res.status = 413;
      res.set_content(error_payload("RequestEntityTooLarge",
                                    fmt::format("Exceeded maximum allowed payload size ({} bytes).",
                                                kMaxResponse)),
                      "application/json");
    } else {
      outcome.payload = body;
      res.status = 202;
      res.set_content(R"({"status":"OK"})", "application/json");
    }
    finish(instance, invocation, std::move(outcome));
    if (instance.retired) stop(instance);
  }

  void post_init_error(Instance& instance, const httplib::Request& req, const std::string& body,
                       httplib::Response& res) {
    std::lock_guard lock(mutex_);
    std::string type = req.get_header_value("Lambda-Runtime-Function-Error-Type");
    std::string payload = body;
    try {
      Json error = parse_json(body, "error", "InvalidError");
      if (type.empty() && error.is_object() && error.contains("errorType") &&
          error["errorType"].is_string()) {
        type = error["errorType"].get<std::string>();
      }
    } catch (const Error&) {
      payload = error_payload(type.empty() ? "Runtime.Unknown" : type, body);
    }
    if (type.empty()) type = "Runtime.Unknown";
    spdlog::warn("lambda {}: instance {} failed to initialise: {}", instance.config.name,
                 instance.hex_id.substr(0, 8), truncate_utf8_bytes(payload, 500));
    instance.init_error = Outcome{true, payload, type, std::nullopt};
    kill(instance, /*expected=*/false);
    res.status = 202;
    res.set_content(R"({"status":"OK"})", "application/json");
  }

  // --- Supervisor --------------------------------------------------------------------------------

  void wake_supervisor() {
    const std::uint64_t one = 1;
    [[maybe_unused]] auto ignored = ::write(wake_fd_, &one, sizeof one);
  }

  void supervise() {
    while (true) {
      start_spawned();
      wait_for_events();
      reap_exits();
      enforce_timers();
      if (tear_down_dead()) break;
    }
  }

  // Forks the instances new_instance queued (here, so PR_SET_PDEATHSIG follows this thread).
  void start_spawned() {
    std::vector<std::shared_ptr<Instance>> batch;
    {
      std::lock_guard lock(mutex_);
      batch.swap(spawn_queue_);
    }
    for (auto& instance : batch) {
      pid_t pid = -1;
      std::optional<Error> failure;
      bool cancelled = false;
      {
        std::lock_guard lock(mutex_);
        cancelled = instance->stopping;
      }
      if (!cancelled) {
        try {
          pid = start_child(instance->spec);
        } catch (const Error& e) {
          failure = e;
        }
      }
      std::lock_guard lock(mutex_);
      if (cancelled) {
        on_exit(instance, std::nullopt);
        continue;
      }
      if (failure) {
        spdlog::warn("lambda {}: cannot start {}: {}", instance->config.name,
                     instance->spec.argv[0], failure->message());
        append_to(instance->log_fd, failure->name() + ": " + failure->message() + "\n");
        instance->init_error = function_failure(failure->name(), failure->message());
        on_exit(instance, std::nullopt);
        continue;
      }
      instance->pid = pid;
      instance->pidfd = static_cast<int>(::syscall(SYS_pidfd_open, pid, 0));
      if (instance->stopping) kill_child_group(pid);
    }
  }

  void wait_for_events() {
    std::vector<pollfd> fds{{wake_fd_, POLLIN, 0}};
    {
      std::lock_guard lock(mutex_);
      for (const auto& [arn, pool] : pools_) {
        for (const auto& instance : pool->instances) {
          if (instance->pidfd >= 0) fds.push_back({instance->pidfd, POLLIN, 0});
        }
      }
    }
    ::poll(fds.data(), fds.size(), static_cast<int>(kSupervisorTick.count()));
    std::uint64_t count = 0;
    [[maybe_unused]] auto ignored = ::read(wake_fd_, &count, sizeof count);
  }

  void reap_exits() {
    std::lock_guard lock(mutex_);
    for (auto& [arn, pool] : pools_) {
      // on_exit removes from the vector: iterate over a copy.
      auto instances = pool->instances;
      for (auto& instance : instances) {
        if (instance->pid <= 0 || instance->state == State::kDead) continue;
        int status = 0;
        if (::waitpid(instance->pid, &status, WNOHANG) == instance->pid) on_exit(instance, status);
      }
    }
  }

  // An instance's process is gone (or never started: `status` empty). Fails what it leaves
  // unfinished, and starts replacements for waiting invocations.
  void on_exit(const std::shared_ptr<Instance>& dying, std::optional<int> status) {
    Instance& instance = *dying;
    const State was = instance.state;
    instance.state = State::kDead;
    if (instance.pid > 0) kill_child_group(instance.pid);  // helpers left in its group
    const std::string how = status ? describe_wait_status(*status) : "did not start";
    Pool& pool = *instance.pool;
    if (instance.current) {
      auto invocation = std::move(instance.current);
      instance.current.reset();
      if (stopping_) {
        finish(instance, invocation,
               {false, {}, {}, service_error("tasker-local is shutting down")});
      } else {
        append_to(instance.log_fd, "RequestId: " + invocation->request_id +
                                       " Error: Runtime exited with error: " + how + "\n");
        finish(
            instance, invocation,
            function_failure("Runtime.ExitError", "RequestId: " + invocation->request_id +
                                                      " Error: Runtime exited with error: " + how));
      }
    } else if (!stopping_ &&
               (instance.init_error || (was == State::kStarting && !instance.expected_exit))) {
      Outcome outcome =
          instance.init_error
              ? *instance.init_error
              : function_failure("Runtime.ExitError", "Error: Runtime exited with error: " + how);
      fail_oldest(pool, std::move(outcome));
    } else if (!instance.expected_exit && !stopping_) {
      spdlog::warn("lambda {}: instance {} exited while idle ({})", instance.config.name,
                   instance.hex_id.substr(0, 8), how);
    }
    spdlog::debug("lambda {}: instance {} ended ({})", instance.config.name,
                  instance.hex_id.substr(0, 8), how);
    std::erase_if(pool.instances, [&](const auto& p) { return p.get() == &instance; });
    dead_.push_back(dying);
    if (!stopping_ && !pool.queue.empty()) spawn_as_needed(pool);
    work_ready_.notify_all();
  }

  void enforce_timers() {
    std::lock_guard lock(mutex_);
    const auto now = Clock::now();
    for (auto& [arn, pool] : pools_) {
      for (auto& instance : pool->instances) {
        if (instance->state != State::kDead && instance->kill_at && now >= *instance->kill_at) {
          spdlog::debug("lambda {}: instance {} outlived its SIGTERM; killing it",
                        instance->config.name, instance->hex_id.substr(0, 8));
          instance->kill_at.reset();
          kill_child_group(instance->pid);
        }
        if (instance->state == State::kDead || instance->stopping) continue;
        if (instance->state == State::kBusy && instance->current &&
            now >= instance->current->deadline) {
          auto invocation = std::move(instance->current);
          instance->current.reset();
          const std::string message =
              "Task timed out after " + seconds_text(instance->config.timeout_seconds) + " seconds";
          append_to(instance->log_fd,
                    utc_now("%Y-%m-%dT%H:%M:%SZ ") + invocation->request_id + " " + message + "\n");
          finish(*instance, invocation,
                 function_failure("Sandbox.Timedout",
                                  "RequestId: " + invocation->request_id + " Error: " + message));
          kill(*instance, /*expected=*/true);
        } else if (instance->state == State::kStarting && !instance->reached_next &&
                   instance->pid > 0 && now - instance->spawned_at > options_.init_timeout) {
          instance->init_error = function_failure(
              "Sandbox.Timedout", "Error: the runtime did not ask for an invocation within " +
                                      std::to_string(options_.init_timeout.count()) +
                                      " seconds of starting");
          kill(*instance, /*expected=*/false);
        } else if ((instance->state == State::kIdle || instance->state == State::kReturning) &&
                   now - instance->idle_since > options_.idle_timeout) {
          spdlog::debug("lambda {}: stopping idle instance {}", instance->config.name,
                        instance->hex_id.substr(0, 8));
          stop(*instance);
        }
      }
    }
  }

  // Stops the listeners of dead instances and releases them. Returns true when shutting down
  // and nothing is left to supervise.
  bool tear_down_dead() {
    std::vector<std::shared_ptr<Instance>> dead;
    bool finished = false;
    {
      std::lock_guard lock(mutex_);
      dead.swap(dead_);
      if (stopping_ && spawn_queue_.empty()) {
        finished = std::all_of(pools_.begin(), pools_.end(),
                               [](const auto& entry) { return entry.second->instances.empty(); });
      }
    }
    for (auto& instance : dead) {
      stop_listener(*instance);
      if (instance->pidfd >= 0) ::close(instance->pidfd);
      if (instance->log_fd >= 0) ::close(instance->log_fd);
      instance->pidfd = -1;
      instance->log_fd = -1;
    }
    return finished;
  }

  LambdaOptions options_;
  std::shared_ptr<const MotoClient> moto_;
  std::shared_ptr<CodeStore> code_;

  std::mutex config_mutex_;
  std::map<std::string, std::pair<FunctionConfig, Clock::time_point>> config_cache_;

  std::mutex mutex_;
  std::condition_variable work_ready_;
  std::atomic<bool> stopping_{false};
  std::map<std::string, std::unique_ptr<Pool>> pools_;
  std::vector<std::shared_ptr<Instance>> spawn_queue_;
  std::vector<std::shared_ptr<Instance>> dead_;
  std::uint64_t instance_counter_ = 0;

  std::mutex async_mutex_;
  std::condition_variable async_ready_;
  std::deque<AsyncJob> async_jobs_;
  std::vector<std::thread> async_workers_;

  int wake_fd_ = -1;
  std::thread supervisor_;
};

LambdaService::LambdaService(LambdaOptions options, std::shared_ptr<const MotoClient> moto,
                             std::shared_ptr<CodeStore> code)
    : impl_(std::make_unique<Impl>(std::move(options), std::move(moto), std::move(code))) {}

LambdaService::~LambdaService() = default;

InvokeResult LambdaService::invoke(const InvokeRequest& request, InvocationType type) {
  return impl_->invoke(request, type);
}

std::string LambdaService::why_not_runnable(const std::string& function) {
  return impl_->why_not_runnable(function);
}

void LambdaService::shutdown() {
  impl_->shutdown();
}

}  // namespace rstasker::local
