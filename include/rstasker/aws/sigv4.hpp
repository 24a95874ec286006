// AWS Signature Version 4 (header signing), built on OpenSSL.
#pragma once

#include <chrono>
#include <mutex>
#include <string>
#include <string_view>

#include "rstasker/aws/credentials.hpp"
#include "rstasker/aws/http.hpp"

namespace rstasker::aws {

struct SigningParams {
  std::string region;
  std::string service;
  std::chrono::system_clock::time_point time;
  // Remove "." / ".." segments and repeated slashes, and encode the path twice, as every service
  // but S3 expects. When false (S3) the path is kept as sent: escapes already in it (%XX) stay
  // as they are, only bytes that are neither unreserved nor '/' are percent-encoded.
  bool normalize_path = true;
  // Add and sign x-amz-content-sha256 (S3).
  bool sign_body = false;
  // Leave X-Amz-Security-Token out of the signed headers (a few services add it after signing).
  bool omit_session_token = false;
  // The payload hash to sign instead of the body's SHA-256, e.g. "UNSIGNED-PAYLOAD" (S3); empty
  // means: hash the body.
  std::string signed_body_value;
};

struct SigningResult {
  std::string canonical_request;
  std::string string_to_sign;
  std::string signature;      // lowercase hex
  std::string authorization;  // the Authorization header value
  std::string amz_date;       // yyyymmddThhmmssZ
};

// Computes the signature of `request` without modifying it.
//
// Signed headers: every header of the request except Authorization and the ones proxies and SDKs
// leave unsigned (User-Agent, X-Amzn-Trace-Id, Expect, Connection, Upgrade), plus the ones signing
// adds: X-Amz-Date, X-Amz-Security-Token (when the credentials have a session token and
// !omit_session_token), x-amz-content-sha256 (when sign_body). A header signing adds replaces any
// header of that name already on the request. Host is taken from the URL's authority (without
// user info and without the scheme's default port, as libcurl sends it) when the request has none.
//
// Canonical form: header names lowercased and sorted; values trimmed, every run of whitespace
// (line breaks of a folded value included) made one space, repeated headers joined with ',' in
// request order. Query: split on '&', each parameter on its first '=' (none means an empty value),
// names and values percent-decoded then encoded again with only A-Za-z0-9-_.~ left as they are,
// sorted by encoded name then encoded value.
//
// `signing_key` may be passed to skip the four HMACs that derive it (see derive_signing_key);
// otherwise it is derived. Throws Error(InternalError) when the URL has no scheme or host.
SigningResult compute_signature(const HttpRequest& request, const Credentials& credentials,
                                const SigningParams& params, std::string_view signing_key = {});

// HMAC chain secret -> date -> region -> service -> "aws4_request"; 32 raw bytes.
std::string derive_signing_key(std::string_view secret_access_key, std::string_view yyyymmdd,
                               std::string_view region, std::string_view service);

// Signs requests for one region and service, caching the signing key (which depends only on the
// secret, the date, the region and the service). Thread-safe: any number of threads may sign with
// one Signer at once.
//
// Service "s3" is signed the S3 way (path not normalized and encoded once, x-amz-content-sha256
// added and signed); every other service with the defaults of SigningParams.
class Signer {
 public:
  Signer(std::string region, std::string service);

  // Sets X-Amz-Date, X-Amz-Security-Token (when the credentials carry one), x-amz-content-sha256
  // (S3 only) and Authorization on `request`, replacing any earlier value, so a request can be
  // signed again before a retry. Never adds a Host header: the host signed is the request's Host
  // header when it has one, else the URL's authority, which is what libcurl sends.
  void sign(HttpRequest& request, const Credentials& credentials,
            std::chrono::system_clock::time_point now) const;

  const std::string& region() const { return region_; }
  const std::string& service() const { return service_; }

 private:
  // Copies the 32-byte signing key for (secret, date) into `key`, deriving it on a cache miss.
  void signing_key_for(const Credentials& credentials, std::string_view date,
                       unsigned char* key) const;

  std::string region_;
  std::string service_;
  bool s3_;
  mutable std::mutex mutex_;
  mutable std::string cached_secret_;
  mutable std::string cached_date_;
  mutable std::string cached_key_;
};

// Lowercase hex SHA-256 of `data`; raw HMAC-SHA256; hex encoding. Exposed for the signer's users
// (content hashes, client tokens) and tests.
std::string sha256_hex(std::string_view data);
std::string hmac_sha256(std::string_view key, std::string_view data);
std::string hex_encode(std::string_view bytes);

}  // namespace rstasker::aws
