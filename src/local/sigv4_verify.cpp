// SigV4 verification: parse the Authorization header, rebuild the request from the headers it
// names, sign it again with the accepted secret, and compare.
#include "local/sigv4_verify.hpp"

#include <openssl/crypto.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdio>
#include <optional>
#include <set>
#include <utility>

#include "rstasker/aws/sigv4.hpp"
#include "rstasker/common/error.hpp"

namespace rstasker::local {
namespace {

constexpr int kForbidden = 403;
constexpr std::string_view kAlgorithm = "AWS4-HMAC-SHA256";

[[noreturn]] void refuse(std::string_view name, std::string message) {
  throw Error(name, std::move(message), kForbidden);
}

std::string lowercase(std::string_view text) {
  std::string out(text);
  for (char& c : out) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

std::string_view trim(std::string_view text) {
  while (!text.empty() && (text.front() == ' ' || text.front() == '\t')) text.remove_prefix(1);
  while (!text.empty() && (text.back() == ' ' || text.back() == '\t')) text.remove_suffix(1);
  return text;
}

std::vector<std::string_view> split(std::string_view text, char separator) {
  std::vector<std::string_view> parts;
  std::size_t pos = 0;
  while (true) {
    std::size_t end = text.find(separator, pos);
    parts.push_back(text.substr(pos, end == std::string_view::npos ? end : end - pos));
    if (end == std::string_view::npos) break;
    pos = end + 1;
  }
  return parts;
}

struct Authorization {
  std::string access_key_id;
  std::string date;  // yyyymmdd
  std::string region;
  std::string service;
  std::vector<std::string> signed_headers;  // lowercase, as listed
  std::string signature;
};

Authorization parse_authorization(std::string_view header) {
  header = trim(header);
  const std::size_t space = header.find(' ');
  if (header.substr(0, space) != kAlgorithm) {
    refuse(auth_errors::kIncompleteSignature,
           "Authorization header requires the AWS4-HMAC-SHA256 algorithm: '" +
               std::string(header.substr(0, space)) + "' is not supported.");
  }
  std::string_view credential;
  std::string_view signed_headers;
  std::string_view signature;
  if (space != std::string_view::npos) {
    for (std::string_view part : split(header.substr(space + 1), ',')) {
      part = trim(part);
      const std::size_t eq = part.find('=');
      if (eq == std::string_view::npos) continue;
      const std::string_view key = part.substr(0, eq);
      const std::string_view value = part.substr(eq + 1);
      if (key == "Credential") credential = value;
      if (key == "SignedHeaders") signed_headers = value;
      if (key == "Signature") signature = value;
    }
  }
  std::string missing;
  if (credential.empty()) missing += " Authorization header requires 'Credential' parameter.";
  if (signed_headers.empty()) {
    missing += " Authorization header requires 'SignedHeaders' parameter.";
  }
  if (signature.empty()) missing += " Authorization header requires 'Signature' parameter.";
  if (!missing.empty()) {
    refuse(auth_errors::kIncompleteSignature, std::string(trim(missing)));
  }

  const std::vector<std::string_view> scope = split(credential, '/');
  if (scope.size() != 5 || scope[0].empty() || scope[1].size() != 8 || scope[2].empty() ||
      scope[3].empty() || scope[4] != "aws4_request") {
    refuse(auth_errors::kIncompleteSignature,
           "Credential must have the form <access key>/<yyyymmdd>/<region>/<service>/aws4_request"
           ", not '" +
               std::string(credential) + "'.");
  }
  Authorization auth;
  auth.access_key_id = std::string(scope[0]);
  auth.date = std::string(scope[1]);
  auth.region = std::string(scope[2]);
  auth.service = std::string(scope[3]);
  auth.signature = lowercase(signature);
  for (std::string_view name : split(signed_headers, ';')) {
    if (name.empty()) {
      refuse(auth_errors::kIncompleteSignature, "SignedHeaders has an empty header name.");
    }
    auth.signed_headers.push_back(lowercase(name));
  }
  return auth;
}

// "yyyymmddThhmmssZ" as a time point, or nullopt when it is not one.
std::optional<std::chrono::system_clock::time_point> parse_amz_date(std::string_view text) {
  if (text.size() != 16 || text[8] != 'T' || text[15] != 'Z') return std::nullopt;
  auto number = [&](std::size_t at, std::size_t size) -> std::optional<int> {
    int value = 0;
    const char* begin = text.data() + at;
    auto [end, ec] = std::from_chars(begin, begin + size, value);
    if (ec != std::errc() || end != begin + size) return std::nullopt;
    return value;
  };
  auto year = number(0, 4);
  auto month = number(4, 2);
  auto day = number(6, 2);
  auto hour = number(9, 2);
  auto minute = number(11, 2);
  auto second = number(13, 2);
  if (!year || !month || !day || !hour || !minute || !second) return std::nullopt;
  using namespace std::chrono;
  const year_month_day ymd{std::chrono::year(*year), std::chrono::month(*month),
                           std::chrono::day(*day)};
  if (!ymd.ok() || *hour > 23 || *minute > 59 || *second > 60) return std::nullopt;
  return sys_days(ymd) + hours(*hour) + minutes(*minute) + seconds(*second);
}

std::string format_amz_date(std::chrono::system_clock::time_point time) {
  using namespace std::chrono;
  const auto secs = floor<seconds>(time);
  const auto day = floor<days>(secs);
  const year_month_day ymd{day};
  const hh_mm_ss<seconds> hms{secs - day};
  char out[32];
  std::snprintf(out, sizeof out, "%04d%02u%02uT%02ld%02ld%02lldZ", static_cast<int>(ymd.year()),
                static_cast<unsigned>(ymd.month()), static_cast<unsigned>(ymd.day()),
                static_cast<long>(hms.hours().count()), static_cast<long>(hms.minutes().count()),
                static_cast<long long>(hms.seconds().count()));
  return out;
}

bool constant_time_equal(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace

SignatureVerifier::SignatureVerifier(std::vector<AcceptedKey> keys, std::chrono::seconds max_skew)
    : keys_(std::move(keys)), max_skew_(max_skew) {}

SignedCaller SignatureVerifier::verify(const aws::HttpRequest& request, std::string_view service,
                                       std::string_view region,
                                       std::chrono::system_clock::time_point now) const {
  const std::string* header = request.header("Authorization");
  if (header == nullptr || trim(*header).empty()) {
    refuse(auth_errors::kMissingToken, "Missing Authentication Token");
  }
  const Authorization auth = parse_authorization(*header);

  const std::string* amz_date = request.header("X-Amz-Date");
  if (amz_date == nullptr) {
    refuse(auth_errors::kIncompleteSignature,
           "Authorization header requires existence of a 'X-Amz-Date' header.");
  }
  const auto signed_at = parse_amz_date(trim(*amz_date));
  if (!signed_at) {
    refuse(auth_errors::kIncompleteSignature,
           "X-Amz-Date must have the form yyyymmddThhmmssZ, not '" + *amz_date + "'.");
  }
  const std::set<std::string> signed_names(auth.signed_headers.begin(), auth.signed_headers.end());
  if (!signed_names.contains("host")) {
    refuse(auth_errors::kIncompleteSignature,
           "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.");
  }

  const auto key = std::find_if(keys_.begin(), keys_.end(), [&](const AcceptedKey& k) {
    return k.credentials.access_key_id == auth.access_key_id;
  });
  if (key == keys_.end()) {
    refuse(auth_errors::kUnrecognizedClient,
           "The security token included in the request is invalid.");
  }
  const std::string* token = request.header("X-Amz-Security-Token");
  const std::string sent_token = token != nullptr ? std::string(trim(*token)) : std::string();
  if (!constant_time_equal(sent_token, key->credentials.session_token)) {
    refuse(auth_errors::kUnrecognizedClient,
           "The security token included in the request is invalid.");
  }

  const std::string date_text = std::string(trim(*amz_date));
  if (auth.date != date_text.substr(0, 8)) {
    refuse(auth_errors::kInvalidSignature,
           "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from "
           "HTTP: '" +
               auth.date + "' != '" + date_text.substr(0, 8) + "', from '" + date_text + "'.");
  }
  if (auth.region != region) {
    refuse(auth_errors::kInvalidSignature, "Credential should be scoped to a valid region: '" +
                                               auth.region + "' is not '" + std::string(region) +
                                               "', the region this local stack serves.");
  }
  if (auth.service != service) {
    refuse(auth_errors::kInvalidSignature,
           "Credential should be scoped to correct service: '" + std::string(service) + "'.");
  }
  if (*signed_at + max_skew_ < now) {
    refuse(auth_errors::kInvalidSignature,
           "Signature expired: " + date_text + " is now earlier than " +
               format_amz_date(now - max_skew_) + " (" + format_amz_date(now) + " - " +
               std::to_string(max_skew_.count() / 60) + " min.)");
  }
  if (*signed_at - max_skew_ > now) {
    refuse(auth_errors::kInvalidSignature,
           "Signature not yet current: " + date_text + " is still later than " +
               format_amz_date(now + max_skew_) + " (" + format_amz_date(now) + " + " +
               std::to_string(max_skew_.count() / 60) + " min.)");
  }

  // The request as the client signed it: only the headers it named. X-Amz-Date, the session
  // token and the content hash are put back by the signer itself (from the params below).
  aws::HttpRequest canonical;
  canonical.method = request.method;
  canonical.url = request.url;
  canonical.body = request.body;
  for (const std::string& name : auth.signed_headers) {
    if (request.header(name) == nullptr) {
      refuse(auth_errors::kIncompleteSignature,
             "The request does not carry the signed header '" + name + "'.");
    }
    if (name == "x-amz-date" || name == "x-amz-security-token" || name == "x-amz-content-sha256") {
      continue;
    }
    for (const auto& [header_name, value] : request.headers) {
      if (lowercase(header_name) == name) canonical.headers.emplace_back(header_name, value);
    }
  }
  aws::SigningParams params;
  params.region = auth.region;
  params.service = auth.service;
  params.time = *signed_at;
  params.normalize_path = service != "s3";
  params.sign_body = signed_names.contains("x-amz-content-sha256");
  params.omit_session_token = !signed_names.contains("x-amz-security-token");
  aws::Credentials credentials = key->credentials;
  credentials.session_token = sent_token;

  const aws::SigningResult expected = aws::compute_signature(canonical, credentials, params);
  if (!constant_time_equal(expected.signature, auth.signature)) {
    refuse(auth_errors::kInvalidSignature,
           "The request signature we calculated does not match the signature you provided. "
           "Check your AWS Secret Access Key and signing method. Consult the service "
           "documentation for details.");
  }
  return {auth.access_key_id, key->principal_arn};
}

}  // namespace rstasker::local
