// Runs the AWS SigV4 test suite (header signing) against compute_signature and Signer::sign.
//
// Cases come from $SIGV4_SUITE_DIR (a relative path is read from the caller's directory), else
// from ../shared/sigv4-suite beside the checkout; without either the test is skipped (exit 77),
// or fails under RSTASKER_REQUIRE_SERVERS=1 (CI), where nothing may skip silently. A
// case is a folder holding context.json, request.txt and the header-canonical-request /
// header-string-to-sign / header-signature files.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <nlohmann/json.hpp>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

#include "rstasker/aws/sigv4.hpp"
#include "support/paths.hpp"
#include "support/process.hpp"

namespace {

namespace fs = std::filesystem;
using rstasker::aws::Credentials;
using rstasker::aws::HttpRequest;
using rstasker::aws::SigningParams;

constexpr int kSkipped = 77;
constexpr const char* kCaseFiles[] = {"context.json", "request.txt", "header-canonical-request.txt",
                                      "header-string-to-sign.txt", "header-signature.txt"};

// The file's bytes with CR removed (the suite may be checked out with Windows line endings).
std::string read_text(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw std::runtime_error("cannot read " + path.string());
  std::ostringstream buffer;
  buffer << in.rdbuf();
  std::string text = buffer.str();
  std::erase(text, '\r');
  return text;
}

// Expected outputs never end with a line break; some copies of the files add one.
std::string read_expected(const fs::path& path) {
  std::string text = read_text(path);
  while (!text.empty() && text.back() == '\n') text.pop_back();
  return text;
}

// request.txt: "METHOD PATH HTTP/1.1", header lines split at their first ':', a line starting with
// whitespace continuing the previous header's value (kept with its line break: folding it is the
// signer's job), a blank line, then the body as is.
HttpRequest parse_request(const std::string& text) {
  std::vector<std::string_view> lines;
  std::string_view rest = text;
  std::size_t body_at = std::string::npos;
  while (true) {
    const std::size_t newline = rest.find('\n');
    const std::string_view line = rest.substr(0, newline);
    if (!lines.empty() && line.empty()) {
      body_at = newline == std::string_view::npos
                    ? text.size()
                    : static_cast<std::size_t>(line.data() - text.data()) + 1;
      break;
    }
    lines.push_back(line);
    if (newline == std::string_view::npos) break;
    rest = rest.substr(newline + 1);
  }
  if (lines.empty() || lines.front().empty()) throw std::runtime_error("request.txt is empty");

  const std::string_view request_line = lines.front();
  const std::size_t method_end = request_line.find(' ');
  const std::size_t version_at = request_line.rfind(" HTTP/");
  if (method_end == std::string_view::npos || version_at == std::string_view::npos ||
      version_at < method_end) {
    throw std::runtime_error("bad request line: " + std::string(request_line));
  }
  HttpRequest request;
  request.method = std::string(request_line.substr(0, method_end));
  const std::string path(request_line.substr(method_end + 1, version_at - method_end - 1));

  for (std::size_t i = 1; i < lines.size(); ++i) {
    const std::string_view line = lines[i];
    if (line.front() == ' ' || line.front() == '\t') {
      // A folded (continuation) line is one more value of the header above it, as the suite's
      // own parser reads it: the signer joins repeated values with ',' in request order.
      if (request.headers.empty()) throw std::runtime_error("continuation line before a header");
      request.headers.emplace_back(request.headers.back().first, std::string(line));
      continue;
    }
    const std::size_t colon = line.find(':');
    if (colon == std::string_view::npos) {
      throw std::runtime_error("header line without ':': " + std::string(line));
    }
    request.headers.emplace_back(std::string(line.substr(0, colon)),
                                 std::string(line.substr(colon + 1)));
  }
  if (body_at != std::string::npos && body_at < text.size()) request.body = text.substr(body_at);

  // The suite's requests all name their host; the URL only has to carry the path and query.
  std::string host = "example.amazonaws.com";
  if (const std::string* value = request.header("host")) {
    host = *value;
    host.erase(0, host.find_first_not_of(" \t"));
    host.erase(host.find_last_not_of(" \t") + 1);
  }
  request.url = "https://" + host + path;
  return request;
}

// "2015-08-30T12:36:00Z"
std::chrono::system_clock::time_point parse_timestamp(const std::string& text) {
  int year = 0;
  unsigned month = 0, day = 0, hour = 0, minute = 0, second = 0;
  if (std::sscanf(text.c_str(), "%d-%u-%uT%u:%u:%uZ", &year, &month, &day, &hour, &minute,
                  &second) != 6) {
    throw std::runtime_error("bad timestamp: " + text);
  }
  using namespace std::chrono;
  const sys_days date{std::chrono::year{year} / std::chrono::month{month} / std::chrono::day{day}};
  return date + hours{hour} + minutes{minute} + seconds{second};
}

struct Case {
  HttpRequest request;
  Credentials credentials;
  SigningParams params;
  std::string canonical_request;
  std::string string_to_sign;
  std::string signature;
};

Case load_case(const fs::path& dir) {
  Case c;
  const nlohmann::json context = nlohmann::json::parse(read_text(dir / "context.json"));
  const nlohmann::json& credentials = context.at("credentials");
  c.credentials.access_key_id = credentials.at("access_key_id").get<std::string>();
  c.credentials.secret_access_key = credentials.at("secret_access_key").get<std::string>();
  c.credentials.session_token = credentials.value("token", std::string());
  c.params.region = context.at("region").get<std::string>();
  c.params.service = context.at("service").get<std::string>();
  c.params.time = parse_timestamp(context.at("timestamp").get<std::string>());
  c.params.normalize_path = context.value("normalize", true);
  c.params.sign_body = context.value("sign_body", false);
  c.params.omit_session_token = context.value("omit_session_token", false);
  c.params.signed_body_value = context.value("signed_body_value", std::string());
  c.request = parse_request(read_text(dir / "request.txt"));
  c.canonical_request = read_expected(dir / "header-canonical-request.txt");
  c.string_to_sign = read_expected(dir / "header-string-to-sign.txt");
  c.signature = read_expected(dir / "header-signature.txt");
  return c;
}

std::string escaped(std::string_view text) {
  std::string out;
  for (const char ch : text) {
    const auto c = static_cast<unsigned char>(ch);
    if (c == '\\' || c == '"') {
      out.push_back('\\');
      out.push_back(ch);
    } else if (c < 0x20 || c >= 0x7f) {
      char hex[5];
      std::snprintf(hex, sizeof hex, "\\x%02x", c);
      out += hex;
    } else {
      out.push_back(ch);
    }
  }
  return out;
}

// "<what> line N: expected "…" got "…"" for the first line that differs.
std::string diff(std::string_view what, std::string_view expected, std::string_view actual) {
  std::size_t line = 1;
  while (true) {
    const std::size_t e_end = expected.find('\n');
    const std::size_t a_end = actual.find('\n');
    const std::string_view e = expected.substr(0, e_end);
    const std::string_view a = actual.substr(0, a_end);
    if (e != a || (e_end == std::string_view::npos) != (a_end == std::string_view::npos)) {
      std::string out = std::string(what) + " line " + std::to_string(line) + ": expected \"" +
                        escaped(e) + "\" got \"" + escaped(a) + "\"";
      if (e == a)
        out += e_end == std::string_view::npos ? " (got extra lines)" : " (got fewer lines)";
      return out;
    }
    if (e_end == std::string_view::npos) return std::string(what) + " differs";
    expected.remove_prefix(e_end + 1);
    actual.remove_prefix(a_end + 1);
    ++line;
  }
}

// Empty when the case passes, else what differs.
std::string check_case(const Case& c) {
  const auto result = rstasker::aws::compute_signature(c.request, c.credentials, c.params);
  if (result.canonical_request != c.canonical_request) {
    return diff("canonical request", c.canonical_request, result.canonical_request);
  }
  if (result.string_to_sign != c.string_to_sign) {
    return diff("string to sign", c.string_to_sign, result.string_to_sign);
  }
  if (result.signature != c.signature) return diff("signature", c.signature, result.signature);

  // Signer::sign must agree wherever its fixed per-service conventions are the case's.
  const bool s3 = c.params.service == "s3";
  if (c.params.normalize_path == !s3 && c.params.sign_body == s3 && !c.params.omit_session_token &&
      c.params.signed_body_value.empty()) {
    HttpRequest signed_request = c.request;
    rstasker::aws::Signer(c.params.region, c.params.service)
        .sign(signed_request, c.credentials, c.params.time);
    const std::string* authorization = signed_request.header("authorization");
    if (authorization == nullptr || *authorization != result.authorization) {
      return diff("Signer::sign Authorization", result.authorization,
                  authorization ? *authorization : "(none)");
    }
  }
  return {};
}

bool is_case(const fs::path& dir) {
  return std::all_of(std::begin(kCaseFiles), std::end(kCaseFiles),
                     [&](const char* name) { return fs::is_regular_file(dir / name); });
}

// ctest runs this test inside the build tree, so a relative SIGV4_SUITE_DIR is read as the
// caller meant it: from the shell's directory ($PWD, which ctest passes on unchanged), else from
// the checkout.
fs::path resolve_suite_dir(const fs::path& given) {
  if (given.is_absolute()) return given;
  std::vector<fs::path> bases;
  if (const char* pwd = std::getenv("PWD"); pwd != nullptr && *pwd == '/') bases.emplace_back(pwd);
  bases.push_back(rstasker::testing::source_dir());
  for (const auto& base : bases) {
    if (fs::is_directory(base / given)) return base / given;
  }
  return given;
}

}  // namespace

int main() {
  fs::path suite;
  bool explicit_suite = false;
  if (const char* dir = std::getenv("SIGV4_SUITE_DIR"); dir != nullptr && *dir != '\0') {
    suite = resolve_suite_dir(dir);
    explicit_suite = true;
  } else if (const auto shared = rstasker::testing::shared_dir();
             shared && fs::is_directory(*shared / "sigv4-suite")) {
    suite = *shared / "sigv4-suite";
  } else {
    std::cout << "sigv4 conformance: no suite (set SIGV4_SUITE_DIR, or place the cases in "
                 "../shared/sigv4-suite beside the checkout)";
    if (rstasker::testing::servers_required()) {
      std::cout << "; RSTASKER_REQUIRE_SERVERS=1 forbids skipping\n";
      return 1;
    }
    std::cout << ": skipped\n";
    return kSkipped;
  }

  std::vector<fs::path> cases;
  std::error_code error;
  for (const auto& entry : fs::directory_iterator(suite, error)) {
    if (entry.is_directory() && is_case(entry.path())) cases.push_back(entry.path());
  }
  if (error) {
    std::cout << "sigv4 conformance: cannot read " << suite << ": " << error.message() << "\n";
    return 1;
  }
  std::sort(cases.begin(), cases.end());
  if (cases.empty()) {
    std::cout << "sigv4 conformance: no case in " << suite << "\n";
    return explicit_suite || rstasker::testing::servers_required() ? 1 : kSkipped;
  }

  std::size_t passed = 0;
  for (const fs::path& dir : cases) {
    std::string failure;
    try {
      failure = check_case(load_case(dir));
    } catch (const std::exception& e) {
      failure = std::string("error: ") + e.what();
    }
    if (failure.empty()) {
      ++passed;
    } else {
      std::cout << "FAIL " << dir.filename().string() << ": " << failure << "\n";
    }
  }
  std::cout << "sigv4 conformance: " << passed << "/" << cases.size() << " cases pass\n";
  return passed == cases.size() ? 0 : 1;
}
