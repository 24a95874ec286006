// The redacting, Lambda-shaped log formatter behind spdlog's default logger.
#include "rstasker/common/log.hpp"

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cstdlib>
#include <ctime>
#include <map>
#include <mutex>
#include <vector>

#include "rstasker/common/json.hpp"
#include "rstasker/common/text.hpp"

namespace rstasker::log {

namespace {

constexpr std::string_view kRedacted = "<redacted>";
constexpr std::size_t kMinSecretLength = 8;

// Field names whose values are secret, compared case-insensitively.
constexpr std::array<std::string_view, 14> kSensitiveKeys = {
    "tasktoken",         "task_token",           "password",      "secretaccesskey",
    "secret_access_key", "sessiontoken",         "session_token", "x-amz-security-token",
    "x-amz-signature",   "x-amz-credential",     "authorization", "responseurl",
    "response_url",      "aws_secret_access_key"};

struct State {
  std::mutex mutex;
  std::string request_id;
  Json invocation_fields = Json::object();
  std::map<std::string, int, std::less<>> secrets;  // value -> registration count
};

State& state() {
  static State instance;
  return instance;
}

// The structured fields of the work in progress on this thread (ScopedFields), innermost last.
thread_local std::vector<std::pair<std::string, Json>> scoped_fields;

bool is_reserved_field(std::string_view key) {
  return key == "timestamp" || key == "level" || key == "message" || key == "requestId";
}

// Adds the invocation's and this thread's structured fields to a JSON line, redacted.
void add_fields(Json& out, const Json& invocation_fields) {
  auto add = [&out](const std::string& key, const Json& value) {
    if (is_reserved_field(key)) return;
    out[key] = value.is_string() ? Json(redact(value.get<std::string>())) : value;
  };
  for (const auto& [key, value] : invocation_fields.items()) add(key, value);
  for (const auto& [key, value] : scoped_fields) add(key, value);
}

bool is_space(char c) {
  return c == ' ' || c == '\t';
}

// Length of the quote opening at `i` in `text`: 1 for " or ', 2 for an escaped \" (JSON inside a
// JSON string), 0 for none.
std::size_t quote_length(const std::string& text, std::size_t i) {
  if (i < text.size() && (text[i] == '"' || text[i] == '\'')) return 1;
  if (text.compare(i, 2, "\\\"") == 0) return 2;
  return 0;
}

// Redacts the value following one occurrence of a sensitive key that ends at `pos` in `text`.
// Returns the position to continue scanning from.
std::size_t redact_value_after(std::string& text, std::string& lower, std::size_t pos) {
  std::size_t i = pos + quote_length(text, pos);  // the closing quote of a quoted key
  while (i < text.size() && is_space(text[i])) ++i;
  char separator = 0;
  if (i < text.size() && (text[i] == ':' || text[i] == '=')) {
    separator = text[i++];
    while (i < text.size() && is_space(text[i])) ++i;
  }
  std::size_t quote = quote_length(text, i);
  if (separator == 0 && quote == 0) return pos;  // "password is required": prose, not a value

  std::size_t begin = i + quote;
  std::size_t end = begin;
  if (quote != 0) {
    const std::string closing = text.substr(i, quote);
    while (end < text.size() && text.compare(end, quote, closing) != 0) {
      end += (quote == 1 && text[end] == '\\') ? 2 : 1;
    }
    end = std::min(end, text.size());
  } else if (separator == ':') {
    // An HTTP header ("Authorization: AWS4-HMAC-SHA256 Credential=..."): to the end of the line.
    while (end < text.size() && text[end] != '\n' && text[end] != '\r') ++end;
  } else {
    // A query parameter or key=value pair: to the next delimiter.
    while (end < text.size() &&
           std::string_view("&,;}\"' \t\r\n").find(text[end]) == std::string_view::npos) {
      ++end;
    }
  }
  if (end == begin) return begin;
  text.replace(begin, end - begin, kRedacted);
  lower.replace(begin, end - begin, kRedacted);
  return begin + kRedacted.size();
}

void redact_sensitive_fields(std::string& text) {
  std::string lower = ascii_lower(text);
  for (std::string_view key : kSensitiveKeys) {
    std::size_t from = 0;
    while ((from = lower.find(key, from)) != std::string::npos) {
      // Only whole words: "mytasktoken" is not "tasktoken".
      bool starts_word = from == 0 || !(std::isalnum(static_cast<unsigned char>(lower[from - 1])) ||
                                        lower[from - 1] == '_' || lower[from - 1] == '-');
      std::size_t after = from + key.size();
      if (!starts_word) {
        from = after;
        continue;
      }
      from = redact_value_after(text, lower, after);
    }
  }
}

void redact_registered_secrets(std::string& text) {
  auto& s = state();
  std::lock_guard lock(s.mutex);
  for (const auto& [secret, count] : s.secrets) {
    std::size_t pos = 0;
    while ((pos = text.find(secret, pos)) != std::string::npos) {
      text.replace(pos, secret.size(), kRedacted);
      pos += kRedacted.size();
    }
  }
}

std::string_view level_name(spdlog::level::level_enum level) {
  switch (level) {
    case spdlog::level::trace:
      return "TRACE";
    case spdlog::level::debug:
      return "DEBUG";
    case spdlog::level::info:
      return "INFO";
    case spdlog::level::warn:
      return "WARN";
    case spdlog::level::err:
      return "ERROR";
    case spdlog::level::critical:
      return "FATAL";
    default:
      return "INFO";
  }
}

std::string iso_timestamp(spdlog::log_clock::time_point when) {
  auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(when.time_since_epoch()).count();
  std::time_t seconds = static_cast<std::time_t>(ms / 1000);
  std::tm utc{};
  gmtime_r(&seconds, &utc);
  std::array<char, 32> buf{};
  std::size_t n = std::strftime(buf.data(), buf.size(), "%Y-%m-%dT%H:%M:%S", &utc);
  return std::string(buf.data(), n) + fmt::format(".{:03d}Z", static_cast<int>(ms % 1000));
}

class LambdaFormatter final : public spdlog::formatter {
 public:
  explicit LambdaFormatter(Format format) : format_(format) {}

  void format(const spdlog::details::log_msg& msg, spdlog::memory_buf_t& dest) override {
    std::string message = redact(std::string_view(msg.payload.data(), msg.payload.size()));
    std::string request_id;
    Json invocation_fields;
    {
      std::lock_guard lock(state().mutex);
      request_id = state().request_id;
      if (format_ == Format::kJson) invocation_fields = state().invocation_fields;
    }
    std::string line;
    if (format_ == Format::kJson) {
      Json out = {{"timestamp", iso_timestamp(msg.time)},
                  {"level", level_name(msg.level)},
                  {"message", message}};
      if (!request_id.empty()) out["requestId"] = request_id;
      add_fields(out, invocation_fields);
      line = dump_json(out);
    } else {
      line = fmt::format("{} {} {} {}", iso_timestamp(msg.time), level_name(msg.level),
                         request_id.empty() ? "-" : request_id, message);
    }
    line.push_back('\n');
    dest.append(line.data(), line.data() + line.size());
  }

  std::unique_ptr<spdlog::formatter> clone() const override {
    return std::make_unique<LambdaFormatter>(format_);
  }

 private:
  Format format_;
};

bool parse_level(std::string_view name, spdlog::level::level_enum* level) {
  std::string lower = ascii_lower(name);
  static const std::map<std::string, spdlog::level::level_enum, std::less<>> kLevels = {
      {"trace", spdlog::level::trace},    {"debug", spdlog::level::debug},
      {"info", spdlog::level::info},      {"warn", spdlog::level::warn},
      {"warning", spdlog::level::warn},   {"error", spdlog::level::err},
      {"fatal", spdlog::level::critical}, {"critical", spdlog::level::critical}};
  auto it = kLevels.find(lower);
  if (it == kLevels.end()) return false;
  *level = it->second;
  return true;
}

}  // namespace

Settings settings_from_environment(std::string* problems) {
  Settings settings;
  const char* level = std::getenv("AWS_LAMBDA_LOG_LEVEL");
  const char* level_var = "AWS_LAMBDA_LOG_LEVEL";
  if (level == nullptr || *level == '\0') {
    level = std::getenv("LOG_LEVEL");
    level_var = "LOG_LEVEL";
  }
  if (level != nullptr && *level != '\0' && !parse_level(level, &settings.level) && problems) {
    *problems += fmt::format(
        "{}={} is not a log level (TRACE, DEBUG, INFO, WARN, ERROR, FATAL); "
        "using INFO. ",
        level_var, level);
  }
  if (const char* format = std::getenv("AWS_LAMBDA_LOG_FORMAT"); format && *format) {
    std::string f = ascii_lower(format);
    if (f == "text") {
      settings.format = Format::kText;
    } else if (f != "json" && problems) {
      *problems +=
          fmt::format("AWS_LAMBDA_LOG_FORMAT={} is not JSON or Text; using JSON. ", format);
    }
  }
  return settings;
}

void init(const Settings& settings) {
  auto sink = std::make_shared<spdlog::sinks::stderr_sink_mt>();
  auto logger = std::make_shared<spdlog::logger>("rstasker", sink);
  logger->set_formatter(std::make_unique<LambdaFormatter>(settings.format));
  logger->set_level(settings.level);
  logger->flush_on(spdlog::level::trace);  // a crash must not swallow the last lines
  spdlog::set_default_logger(std::move(logger));
}

void set_request_id(std::string request_id) {
  std::lock_guard lock(state().mutex);
  state().request_id = std::move(request_id);
}

void set_invocation_field(std::string_view key, Json value) {
  std::lock_guard lock(state().mutex);
  if (value.is_null()) {
    state().invocation_fields.erase(std::string(key));
  } else {
    state().invocation_fields[std::string(key)] = std::move(value);
  }
}

void clear_invocation_fields() {
  std::lock_guard lock(state().mutex);
  state().invocation_fields = Json::object();
}

ScopedFields::ScopedFields(std::initializer_list<std::pair<std::string_view, Json>> fields) {
  for (const auto& [key, value] : fields) {
    if (value.is_null() || (value.is_string() && value.get_ref<const std::string&>().empty())) {
      continue;
    }
    scoped_fields.emplace_back(std::string(key), value);
    ++pushed_;
  }
}

ScopedFields::~ScopedFields() {
  scoped_fields.resize(scoped_fields.size() - pushed_);
}

void add_secret(std::string_view value) {
  if (value.size() < kMinSecretLength) return;
  std::lock_guard lock(state().mutex);
  ++state().secrets[std::string(value)];
}

void forget_secret(std::string_view value) {
  std::lock_guard lock(state().mutex);
  auto it = state().secrets.find(value);
  if (it != state().secrets.end() && --it->second == 0) state().secrets.erase(it);
}

ScopedSecret::ScopedSecret(std::string value) : value_(std::move(value)) {
  add_secret(value_);
}
ScopedSecret::~ScopedSecret() {
  forget_secret(value_);
}

std::string redact(std::string_view text) {
  std::string out(text);
  redact_registered_secrets(out);
  redact_sensitive_fields(out);
  return out;
}

}  // namespace rstasker::log
