// Fuzz target: SigV4's canonical request. The input is a raw request ("METHOD TARGET" line, then
// "Name:value" header lines, a blank line, the body). Checked: signing never fails on it except by
// a named Error, gives the same result twice and with a cached signing key, and the Authorization
// header names exactly the signed headers of the canonical request.
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <string_view>

#include "rstasker/aws/sigv4.hpp"
#include "rstasker/common/error.hpp"

namespace {

using namespace rstasker::aws;

[[noreturn]] void finding(const char* what) {
  std::fprintf(stderr, "%s\n", what);
  std::abort();
}

HttpRequest parse(std::string_view text) {
  HttpRequest request;
  std::size_t line_end = text.find('\n');
  std::string_view first = text.substr(0, line_end);
  const std::size_t space = first.find(' ');
  request.method = std::string(first.substr(0, space));
  const std::string_view target = space == std::string_view::npos ? "/" : first.substr(space + 1);
  request.url = "https://example.amazonaws.com" + std::string(target.starts_with('/') ? "" : "/") +
                std::string(target);
  while (line_end != std::string_view::npos) {
    const std::size_t start = line_end + 1;
    line_end = text.find('\n', start);
    const std::string_view line = text.substr(start, line_end - start);
    if (line.empty()) {
      if (line_end != std::string_view::npos) request.body = std::string(text.substr(line_end + 1));
      break;
    }
    const std::size_t colon = line.find(':');
    request.headers.emplace_back(
        std::string(line.substr(0, colon)),
        colon == std::string_view::npos ? std::string() : std::string(line.substr(colon + 1)));
  }
  return request;
}

// The SignedHeaders list of the canonical request: its second-to-last line.
std::string signed_headers_line(const std::string& canonical) {
  const std::size_t last = canonical.rfind('\n');
  const std::size_t before = canonical.rfind('\n', last - 1);
  return canonical.substr(before + 1, last - before - 1);
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const HttpRequest request = parse({reinterpret_cast<const char*>(data), size});
  const Credentials credentials{"AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY", "TOKEN"};
  for (bool normalize : {true, false}) {
    SigningParams params;
    params.region = "us-east-1";
    params.service = "service";
    params.time = std::chrono::system_clock::from_time_t(1440938160);
    params.normalize_path = normalize;
    try {
      const SigningResult first = compute_signature(request, credentials, params);
      const SigningResult again = compute_signature(request, credentials, params);
      const std::string key = derive_signing_key(credentials.secret_access_key, "20150830",
                                                 params.region, params.service);
      const SigningResult cached = compute_signature(request, credentials, params, key);
      if (first.canonical_request != again.canonical_request ||
          first.signature != again.signature || first.signature != cached.signature) {
        finding("signing the same request twice differs");
      }
      const std::string listed =
          "SignedHeaders=" + signed_headers_line(first.canonical_request) + ",";
      if (first.authorization.find(listed) == std::string::npos) {
        finding("Authorization does not name the canonical request's signed headers");
      }
    } catch (const rstasker::Error&) {
    }
  }
  HttpRequest signed_request = request;
  try {
    Signer("us-east-1", "s3").sign(signed_request, credentials, std::chrono::system_clock::now());
  } catch (const rstasker::Error&) {
  }
  return 0;
}
