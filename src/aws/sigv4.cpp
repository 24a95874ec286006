// AWS Signature Version 4 header signing on OpenSSL 3. Signing sits on the path of every AWS
// call, so the canonical request is built in per-thread buffers that keep their capacity: once
// warm, signing allocates only the strings it hands back.
#include "rstasker/aws/sigv4.hpp"

#include <openssl/crypto.h>
#include <openssl/sha.h>

#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <vector>

#include "rstasker/common/error.hpp"
#include "rstasker/common/text.hpp"

namespace rstasker::aws {
namespace {

constexpr std::string_view kAlgorithm = "AWS4-HMAC-SHA256";
constexpr std::size_t kDigestSize = 32;
constexpr std::size_t kBlockSize = 64;
constexpr std::size_t kAmzDateSize = 16;  // yyyymmddThhmmssZ
constexpr char kHexLower[] = "0123456789abcdef";
constexpr char kHexUpper[] = "0123456789ABCDEF";

[[noreturn]] void crypto_failure(const char* what) {
  throw Error(error_names::kInternalError, std::string("OpenSSL failure: ") + what);
}

// --- Hashing -----------------------------------------------------------------------------------

// SHA-256 through OpenSSL's low-level interface. OpenSSL 3 marks it deprecated in favour of EVP,
// whose provider dispatch costs about 90 ns per digest: over a tenth of a signature, which hashes
// four short messages (measured with bench/run). Every OpenSSL 3 release has these functions.
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wdeprecated-declarations"
class Sha256 {
 public:
  Sha256() {
    if (SHA256_Init(&ctx_) != 1) crypto_failure("SHA256_Init");
  }
  // The state of an HMAC's inner or outer hash is derived from the key.
  ~Sha256() { OPENSSL_cleanse(&ctx_, sizeof ctx_); }
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void add(const void* data, std::size_t size) {
    if (size != 0 && SHA256_Update(&ctx_, data, size) != 1) crypto_failure("SHA256_Update");
  }
  void add(std::string_view data) { add(data.data(), data.size()); }
  void end(unsigned char* out) {
    if (SHA256_Final(out, &ctx_) != 1) crypto_failure("SHA256_Final");
  }

 private:
  SHA256_CTX ctx_;
};
#pragma GCC diagnostic pop

void sha256(std::string_view data, unsigned char* out) {
  Sha256 h;
  h.add(data);
  h.end(out);
}

// HMAC-SHA256 (RFC 2104): EVP_MAC / HMAC() would fetch and set up a MAC object per call, which
// costs more than the hashing itself for messages this short.
// `wipe`: clear the key-derived pad blocks afterwards (when the key is the secret or a step of
// the derivation; the per-request key is the signing key, which the cache keeps anyway).
void hmac(std::string_view key, std::string_view data, unsigned char* out, bool wipe = false) {
  unsigned char block[kBlockSize] = {};
  if (key.size() > kBlockSize) {
    sha256(key, block);
  } else if (!key.empty()) {
    std::memcpy(block, key.data(), key.size());
  }
  unsigned char pad[kBlockSize];
  unsigned char inner[kDigestSize];

  for (std::size_t i = 0; i < kBlockSize; ++i) pad[i] = static_cast<unsigned char>(block[i] ^ 0x36);
  Sha256 first;
  first.add(pad, kBlockSize);
  first.add(data);
  first.end(inner);

  for (std::size_t i = 0; i < kBlockSize; ++i) pad[i] = static_cast<unsigned char>(block[i] ^ 0x5c);
  Sha256 second;
  second.add(pad, kBlockSize);
  second.add(inner, kDigestSize);
  second.end(out);
  if (wipe) {
    OPENSSL_cleanse(block, sizeof block);
    OPENSSL_cleanse(pad, sizeof pad);
    OPENSSL_cleanse(inner, sizeof inner);
  }
}

std::string_view as_chars(const unsigned char* bytes, std::size_t size) {
  return {reinterpret_cast<const char*>(bytes), size};
}

void append_hex(std::string& out, const unsigned char* bytes, std::size_t size) {
  const std::size_t at = out.size();
  out.resize(at + 2 * size);
  char* p = out.data() + at;
  for (std::size_t i = 0; i < size; ++i) {
    *p++ = kHexLower[bytes[i] >> 4];
    *p++ = kHexLower[bytes[i] & 0x0f];
  }
}

void derive_key(std::string_view secret, std::string_view date, std::string_view region,
                std::string_view service, unsigned char* out) {
  std::string prefixed;
  prefixed.reserve(4 + secret.size());
  prefixed.append("AWS4").append(secret);
  unsigned char k1[kDigestSize];
  unsigned char k2[kDigestSize];
  hmac(prefixed, date, k1, true);
  hmac(as_chars(k1, kDigestSize), region, k2, true);
  hmac(as_chars(k2, kDigestSize), service, k1, true);
  hmac(as_chars(k1, kDigestSize), "aws4_request", out, true);
  OPENSSL_cleanse(prefixed.data(), prefixed.size());
  OPENSSL_cleanse(k1, sizeof k1);
  OPENSSL_cleanse(k2, sizeof k2);
}

// --- Character classes -------------------------------------------------------------------------

constexpr bool is_unreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '_' || c == '.' || c == '~';
}

// The bytes isspace() accepts in the C locale: trimmed and collapsed in header values.
constexpr bool is_space(unsigned char c) {
  return c == ' ' || (c >= '\t' && c <= '\r');
}

constexpr int hex_value(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  return -1;
}

constexpr char to_lower(char c) {
  return (c >= 'A' && c <= 'Z') ? static_cast<char>(c + 32) : c;
}

void append_escaped(std::string& out, unsigned char c) {
  const char escaped[3] = {'%', kHexUpper[c >> 4], kHexUpper[c & 0x0f]};
  out.append(escaped, 3);
}

// --- Canonical URI -----------------------------------------------------------------------------

// Percent-encodes one path segment (no '/' in it). `keep_escapes`: an existing %XX stays an
// escape (hex digits uppercased) instead of having its '%' encoded.
void append_encoded_segment(std::string& out, std::string_view segment, bool keep_escapes) {
  for (std::size_t i = 0; i < segment.size(); ++i) {
    const auto c = static_cast<unsigned char>(segment[i]);
    if (is_unreserved(c)) {
      out.push_back(static_cast<char>(c));
    } else if (keep_escapes && c == '%' && i + 2 < segment.size() &&
               hex_value(segment[i + 1]) >= 0 && hex_value(segment[i + 2]) >= 0) {
      out.push_back('%');
      out.push_back(kHexUpper[hex_value(segment[i + 1])]);
      out.push_back(kHexUpper[hex_value(segment[i + 2])]);
      i += 2;
    } else {
      append_escaped(out, c);
    }
  }
}

void append_canonical_uri(std::string& out, std::string_view path, bool normalize) {
  const std::size_t start = out.size();
  if (!normalize) {
    std::size_t pos = 0;
    while (pos <= path.size()) {
      const std::size_t slash = path.find('/', pos);
      const std::size_t end = slash == std::string_view::npos ? path.size() : slash;
      append_encoded_segment(out, path.substr(pos, end - pos), true);
      if (slash == std::string_view::npos) break;
      out.push_back('/');
      pos = slash + 1;
    }
    if (out.size() == start) out.push_back('/');
    return;
  }
  // Normalized: each kept segment is written as "/<encoded>"; ".." cuts the output back to the
  // previous '/'. Encoding never produces a '/', so the cut always lands on a segment boundary.
  std::size_t pos = 0;
  while (pos <= path.size()) {
    const std::size_t slash = path.find('/', pos);
    const std::size_t end = slash == std::string_view::npos ? path.size() : slash;
    const std::string_view segment = path.substr(pos, end - pos);
    if (segment == "..") {
      if (out.size() > start) out.resize(out.rfind('/'));
    } else if (!segment.empty() && segment != ".") {
      out.push_back('/');
      append_encoded_segment(out, segment, false);
    }
    if (slash == std::string_view::npos) break;
    pos = slash + 1;
  }
  if (out.size() == start) {
    out.push_back('/');
  } else if (!path.empty() && path.back() == '/') {
    out.push_back('/');
  }
}

// --- Canonical query ---------------------------------------------------------------------------

// Decodes %XX escapes (a '%' not followed by two hex digits is literal) and encodes the result
// again, leaving only unreserved bytes as they are.
void append_reencoded(std::string& out, std::string_view text) {
  for (std::size_t i = 0; i < text.size(); ++i) {
    auto c = static_cast<unsigned char>(text[i]);
    if (c == '%' && i + 2 < text.size() && hex_value(text[i + 1]) >= 0 &&
        hex_value(text[i + 2]) >= 0) {
      c = static_cast<unsigned char>(hex_value(text[i + 1]) * 16 + hex_value(text[i + 2]));
      i += 2;
    }
    if (is_unreserved(c)) {
      out.push_back(static_cast<char>(c));
    } else {
      append_escaped(out, c);
    }
  }
}

struct QueryParam {
  std::uint32_t name_at, name_size, value_at, value_size;
};

struct QueryScratch {
  std::string encoded;  // every encoded name and value, back to back
  std::vector<QueryParam> params;
};

void append_canonical_query(std::string& out, std::string_view query, QueryScratch& scratch) {
  if (query.empty()) return;
  scratch.encoded.clear();
  scratch.params.clear();
  std::size_t pos = 0;
  while (pos <= query.size()) {
    std::size_t amp = query.find('&', pos);
    if (amp == std::string_view::npos) amp = query.size();
    const std::string_view param = query.substr(pos, amp - pos);
    if (!param.empty()) {
      const std::size_t eq = param.find('=');
      const std::string_view name = param.substr(0, eq);
      const std::string_view value =
          eq == std::string_view::npos ? std::string_view{} : param.substr(eq + 1);
      QueryParam p{};
      p.name_at = static_cast<std::uint32_t>(scratch.encoded.size());
      append_reencoded(scratch.encoded, name);
      p.name_size = static_cast<std::uint32_t>(scratch.encoded.size() - p.name_at);
      p.value_at = static_cast<std::uint32_t>(scratch.encoded.size());
      append_reencoded(scratch.encoded, value);
      p.value_size = static_cast<std::uint32_t>(scratch.encoded.size() - p.value_at);
      scratch.params.push_back(p);
    }
    pos = amp + 1;
  }
  const std::string_view all = scratch.encoded;
  auto name_of = [all](const QueryParam& p) { return all.substr(p.name_at, p.name_size); };
  auto value_of = [all](const QueryParam& p) { return all.substr(p.value_at, p.value_size); };
  std::sort(scratch.params.begin(), scratch.params.end(),
            [&](const QueryParam& a, const QueryParam& b) {
              const int by_name = name_of(a).compare(name_of(b));
              return by_name != 0 ? by_name < 0 : value_of(a) < value_of(b);
            });
  bool first = true;
  for (const QueryParam& p : scratch.params) {
    if (!first) out.push_back('&');
    first = false;
    out.append(name_of(p)).push_back('=');
    out.append(value_of(p));
  }
}

// --- Canonical headers -------------------------------------------------------------------------

// A header to sign. `name` is lowercased; until the arena is complete it is only known by its
// offset there (name_at), since appending may move the arena.
struct HeaderRef {
  std::string_view name;
  std::string_view value;
  std::size_t order;
  std::size_t name_at;  // kLiteralName: `name` is a lowercase literal, not in the arena
};
constexpr std::size_t kLiteralName = static_cast<std::size_t>(-1);

// Headers never signed (`name` lowercased): the signature itself, hop-by-hop headers, and the
// ones proxies and tracing rewrite (every AWS SDK leaves User-Agent and X-Amzn-Trace-Id unsigned).
bool is_never_signed(std::string_view name) {
  switch (name.size()) {
    case 6:
      return name == "expect";
    case 7:
      return name == "upgrade";
    case 10:
      return name == "connection" || name == "user-agent";
    case 13:
      return name == "authorization";
    case 15:
      return name == "x-amzn-trace-id";
    default:
      return false;
  }
}

// The length of the prefix of data[0, size) in which no byte is below 0x21 (a space or a control
// character), rounded down to whole chunks; the caller finishes byte by byte.
std::size_t skip_visible_chunks(const char* data, std::size_t size) {
  std::size_t at = 0;
#if defined(__SSE2__)
  const __m128i spaces = _mm_set1_epi8(0x20);
  for (; at + 16 <= size; at += 16) {
    const __m128i chunk = _mm_loadu_si128(reinterpret_cast<const __m128i*>(data + at));
    // min(byte, 0x20) == byte exactly when byte <= 0x20 (unsigned).
    if (_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_min_epu8(chunk, spaces), chunk)) != 0) break;
  }
#else
  constexpr std::uint64_t kOnes = 0x0101010101010101ull;
  constexpr std::uint64_t kHighs = 0x8080808080808080ull;
  for (; at + 8 <= size; at += 8) {
    std::uint64_t word;
    std::memcpy(&word, data + at, 8);
    if (((word - kOnes * 0x21) & ~word & kHighs) != 0) break;  // some byte < 0x21
  }
#endif
  return at;
}

// Appends `value` trimmed, every inner run of whitespace made one space. Values are mostly long
// runs without whitespace (session tokens), so those are skipped a chunk at a time.
void append_canonical_value(std::string& out, std::string_view value) {
  std::size_t begin = 0;
  std::size_t end = value.size();
  while (begin < end && is_space(static_cast<unsigned char>(value[begin]))) ++begin;
  while (end > begin && is_space(static_cast<unsigned char>(value[end - 1]))) --end;
  std::size_t i = begin;
  while (i < end) {
    std::size_t run = i + skip_visible_chunks(value.data() + i, end - i);
    while (run < end && !is_space(static_cast<unsigned char>(value[run]))) ++run;
    out.append(value.data() + i, run - i);
    if (run == end) break;
    out.push_back(' ');
    while (run < end && is_space(static_cast<unsigned char>(value[run]))) ++run;
    i = run;
  }
}

void append_lowercase(std::string& out, std::string_view text) {
  const std::size_t at = out.size();
  out.append(text);
  for (auto it = out.begin() + static_cast<std::ptrdiff_t>(at); it != out.end(); ++it) {
    *it = to_lower(*it);
  }
}

// --- URL ---------------------------------------------------------------------------------------

struct UrlView {
  std::string_view scheme;
  std::string_view authority;
  std::string_view path;
  std::string_view query;
};

// The same split as split_url, without copies; a "#fragment" is dropped (it is never sent).
UrlView view_url(std::string_view url) {
  url = url.substr(0, url.find('#'));
  const std::size_t colon = url.find(':');
  const std::size_t scheme_end =
      url.substr(colon == std::string_view::npos ? url.size() : colon).starts_with("://")
          ? colon
          : std::string_view::npos;
  if (scheme_end == std::string_view::npos || scheme_end == 0) {
    throw Error(error_names::kInternalError, "not an absolute URL: " + std::string(url));
  }
  UrlView parts;
  parts.scheme = url.substr(0, scheme_end);
  const std::string_view rest = url.substr(scheme_end + 3);
  // The authority ends at the first '/' or '?' (two memchr; find_first_of would loop per byte).
  std::size_t path_start = rest.find('/');
  if (const std::size_t query = rest.substr(0, path_start).find('?');
      query != std::string_view::npos) {
    path_start = query;
  }
  parts.authority = rest.substr(0, path_start);
  if (parts.authority.empty()) {
    throw Error(error_names::kInternalError, "URL has no host: " + std::string(url));
  }
  const std::string_view tail =
      path_start == std::string_view::npos ? std::string_view{} : rest.substr(path_start);
  const std::size_t query_start = tail.find('?');
  parts.path = tail.substr(0, query_start);
  if (query_start != std::string_view::npos) parts.query = tail.substr(query_start + 1);
  return parts;
}

// The Host header libcurl sends for this authority: no user info, no default port.
std::string_view host_header_value(const UrlView& url) {
  std::string_view host = url.authority;
  if (host.find('@') != std::string_view::npos) host = host.substr(host.rfind('@') + 1);
  // A port is the digits after a final ':' (an IPv6 literal ends with ']', so it has none).
  std::size_t digits = host.size();
  while (digits > 0 && host[digits - 1] >= '0' && host[digits - 1] <= '9') --digits;
  if (digits > 0 && digits < host.size() && host[digits - 1] == ':') {
    const std::string_view port = host.substr(digits);
    if ((port == "443" && iequals(url.scheme, "https")) ||
        (port == "80" && iequals(url.scheme, "http"))) {
      host = host.substr(0, digits - 1);
    }
  }
  return host;
}

// --- Time --------------------------------------------------------------------------------------

void put_digits(char* at, unsigned value, int width) {
  for (int i = width - 1; i >= 0; --i) {
    at[i] = static_cast<char>('0' + value % 10);
    value /= 10;
  }
}

void format_amz_date(std::chrono::system_clock::time_point time, char* out) {
  using namespace std::chrono;
  const auto secs = floor<seconds>(time);
  const auto day = floor<days>(secs);
  const year_month_day ymd{day};
  const hh_mm_ss<seconds> hms{secs - day};
  const int year = static_cast<int>(ymd.year());
  if (year < 0 || year > 9999) {
    throw Error(error_names::kInternalError, "signing time out of range");
  }
  put_digits(out, static_cast<unsigned>(year), 4);
  put_digits(out + 4, static_cast<unsigned>(ymd.month()), 2);
  put_digits(out + 6, static_cast<unsigned>(ymd.day()), 2);
  out[8] = 'T';
  put_digits(out + 9, static_cast<unsigned>(hms.hours().count()), 2);
  put_digits(out + 11, static_cast<unsigned>(hms.minutes().count()), 2);
  put_digits(out + 13, static_cast<unsigned>(hms.seconds().count()), 2);
  out[15] = 'Z';
}

// --- The signing itself ------------------------------------------------------------------------

// Per-thread buffers of one signing; they keep their capacity from one request to the next.
struct Work {
  std::string canonical_request;
  std::size_t signed_headers_at = 0;
  std::size_t signed_headers_size = 0;
  std::string string_to_sign;
  std::string authorization;
  std::vector<HeaderRef> headers;
  std::string names;  // lowercased names of the request's headers
  QueryScratch query;
  char amz_date[kAmzDateSize] = {};
  std::string payload_hash;  // hex SHA-256 of the body, or SigningParams::signed_body_value
  char signature[2 * kDigestSize] = {};

  std::string_view date() const { return {amz_date, kAmzDateSize}; }
  std::string_view day() const { return {amz_date, 8}; }
  std::string_view payload() const { return payload_hash; }
  std::string_view signature_hex() const { return {signature, sizeof signature}; }
  std::string_view signed_headers() const {
    return std::string_view(canonical_request).substr(signed_headers_at, signed_headers_size);
  }
};

Work& thread_work() {
  thread_local Work work;
  return work;
}

struct Options {
  std::string_view region;
  std::string_view service;
  bool normalize_path;
  bool sign_body;
  bool omit_session_token;
  std::string_view signed_body_value;
};

bool signs_token(const Credentials& credentials, const Options& options) {
  return !credentials.session_token.empty() && !options.omit_session_token;
}

// Fills work.canonical_request (and the payload hash and signed header list) for `request`.
// work.amz_date must already be set.
void build_canonical_request(const HttpRequest& request, const Credentials& credentials,
                             const Options& options, Work& work) {
  const UrlView url = view_url(request.url);

  if (!options.signed_body_value.empty()) {
    work.payload_hash.assign(options.signed_body_value);
  } else {
    unsigned char digest[kDigestSize];
    sha256(request.body, digest);
    work.payload_hash.clear();
    append_hex(work.payload_hash, digest, kDigestSize);
  }

  // Signed headers: the request's, less the ones never signed and the ones signing sets itself.
  const bool has_token = !credentials.session_token.empty();
  std::vector<HeaderRef>& headers = work.headers;
  std::string& names = work.names;
  headers.clear();
  names.clear();
  bool has_host = false;
  std::size_t order = 0;
  for (const auto& [name, value] : request.headers) {
    ++order;
    const std::size_t at = names.size();
    append_lowercase(names, name);
    const std::string_view lower = std::string_view(names).substr(at);
    if (is_never_signed(lower) || lower == "x-amz-date" ||
        (has_token && lower == "x-amz-security-token") ||
        (options.sign_body && lower == "x-amz-content-sha256")) {
      names.resize(at);
      continue;
    }
    if (lower == "host") has_host = true;
    headers.push_back({lower, value, order, at});
  }
  // The arena may have moved while it grew: point the names at their final place.
  for (HeaderRef& h : headers) h.name = std::string_view(names).substr(h.name_at, h.name.size());
  if (!has_host) headers.push_back({"host", host_header_value(url), ++order, kLiteralName});
  headers.push_back({"x-amz-date", work.date(), ++order, kLiteralName});
  if (signs_token(credentials, options)) {
    headers.push_back({"x-amz-security-token", credentials.session_token, ++order, kLiteralName});
  }
  if (options.sign_body) {
    headers.push_back({"x-amz-content-sha256", work.payload(), ++order, kLiteralName});
  }

  // Stable order by name; insertion sort is the fastest for the handful of headers a request has.
  const auto before = [](const HeaderRef& a, const HeaderRef& b) {
    const int by_name = a.name.compare(b.name);
    return by_name != 0 ? by_name < 0 : a.order < b.order;
  };
  if (headers.size() <= 16) {
    for (std::size_t i = 1; i < headers.size(); ++i) {
      HeaderRef moving = headers[i];
      std::size_t j = i;
      for (; j > 0 && before(moving, headers[j - 1]); --j) headers[j] = headers[j - 1];
      headers[j] = moving;
    }
  } else {
    std::sort(headers.begin(), headers.end(), before);
  }

  std::string& out = work.canonical_request;
  out.clear();
  std::size_t estimate = request.method.size() + url.path.size() * 3 + url.query.size() * 3 + 160;
  for (const HeaderRef& h : headers) estimate += 2 * h.name.size() + h.value.size() + 3;
  out.reserve(estimate);

  out.append(request.method).push_back('\n');
  append_canonical_uri(out, url.path, options.normalize_path);
  out.push_back('\n');
  append_canonical_query(out, url.query, work.query);
  out.push_back('\n');
  for (std::size_t i = 0; i < headers.size(); ++i) {
    if (i > 0 && headers[i].name == headers[i - 1].name) {
      out.push_back(',');  // a repeated header: its values join the first one's line
    } else {
      if (i > 0) out.push_back('\n');
      out.append(headers[i].name).push_back(':');
    }
    append_canonical_value(out, headers[i].value);
  }
  out.append("\n\n");
  work.signed_headers_at = out.size();
  for (std::size_t i = 0; i < headers.size(); ++i) {
    if (i > 0 && headers[i].name == headers[i - 1].name) continue;
    if (i > 0) out.push_back(';');
    out.append(headers[i].name);
  }
  work.signed_headers_size = out.size() - work.signed_headers_at;
  out.push_back('\n');
  out.append(work.payload());
}

void append_scope(std::string& out, const Work& work, const Options& options) {
  out.append(work.day()).push_back('/');
  out.append(options.region).push_back('/');
  out.append(options.service).append("/aws4_request");
}

// From the canonical request to the string to sign, the signature and the Authorization value.
void finish_signature(const Credentials& credentials, const Options& options,
                      const unsigned char* key, std::size_t key_size, Work& work) {
  unsigned char digest[kDigestSize];
  sha256(work.canonical_request, digest);

  std::string& sts = work.string_to_sign;
  sts.clear();
  sts.reserve(kAlgorithm.size() + kAmzDateSize + options.region.size() + options.service.size() +
              100);
  sts.append(kAlgorithm).push_back('\n');
  sts.append(work.date()).push_back('\n');
  append_scope(sts, work, options);
  sts.push_back('\n');
  append_hex(sts, digest, kDigestSize);

  unsigned char mac[kDigestSize];
  hmac(as_chars(key, key_size), sts, mac);
  for (std::size_t i = 0; i < kDigestSize; ++i) {
    work.signature[2 * i] = kHexLower[mac[i] >> 4];
    work.signature[2 * i + 1] = kHexLower[mac[i] & 0x0f];
  }

  std::string& auth = work.authorization;
  auth.clear();
  auth.reserve(kAlgorithm.size() + credentials.access_key_id.size() + options.region.size() +
               options.service.size() + work.signed_headers_size + 160);
  auth.append(kAlgorithm).append(" Credential=").append(credentials.access_key_id).push_back('/');
  append_scope(auth, work, options);
  auth.append(", SignedHeaders=").append(work.signed_headers());
  auth.append(", Signature=").append(work.signature_hex());
}

// Sets `name` to `value`: the first header of that name is overwritten in place (its storage is
// reused when a request is signed again), any further one removed.
void put_header(Headers& headers, std::string_view name, std::string_view value) {
  bool done = false;
  for (auto it = headers.begin(); it != headers.end();) {
    if (!iequals(it->first, name)) {
      ++it;
    } else if (!done) {
      it->second.assign(value);
      done = true;
      ++it;
    } else {
      it = headers.erase(it);
    }
  }
  if (!done) headers.emplace_back(std::string(name), std::string(value));
}

}  // namespace

// --- Public interface --------------------------------------------------------------------------

std::string hex_encode(std::string_view bytes) {
  std::string out;
  append_hex(out, reinterpret_cast<const unsigned char*>(bytes.data()), bytes.size());
  return out;
}

std::string sha256_hex(std::string_view data) {
  unsigned char digest[kDigestSize];
  sha256(data, digest);
  std::string out;
  append_hex(out, digest, kDigestSize);
  return out;
}

std::string hmac_sha256(std::string_view key, std::string_view data) {
  unsigned char mac[kDigestSize];
  hmac(key, data, mac);
  return std::string(as_chars(mac, kDigestSize));
}

std::string derive_signing_key(std::string_view secret_access_key, std::string_view yyyymmdd,
                               std::string_view region, std::string_view service) {
  unsigned char key[kDigestSize];
  derive_key(secret_access_key, yyyymmdd, region, service, key);
  std::string out(as_chars(key, kDigestSize));
  OPENSSL_cleanse(key, sizeof key);
  return out;
}

SigningResult compute_signature(const HttpRequest& request, const Credentials& credentials,
                                const SigningParams& params, std::string_view signing_key) {
  const Options options{params.region,
                        params.service,
                        params.normalize_path,
                        params.sign_body,
                        params.omit_session_token,
                        params.signed_body_value};
  Work& work = thread_work();
  format_amz_date(params.time, work.amz_date);
  build_canonical_request(request, credentials, options, work);
  if (signing_key.empty()) {
    unsigned char key[kDigestSize];
    derive_key(credentials.secret_access_key, work.day(), params.region, params.service, key);
    finish_signature(credentials, options, key, kDigestSize, work);
    OPENSSL_cleanse(key, sizeof key);
  } else {
    finish_signature(credentials, options,
                     reinterpret_cast<const unsigned char*>(signing_key.data()), signing_key.size(),
                     work);
  }
  SigningResult result;
  result.canonical_request = work.canonical_request;
  result.string_to_sign = work.string_to_sign;
  result.signature = std::string(work.signature_hex());
  result.authorization = work.authorization;
  result.amz_date = std::string(work.date());
  return result;
}

Signer::Signer(std::string region, std::string service)
    : region_(std::move(region)), service_(std::move(service)), s3_(service_ == "s3") {}

void Signer::signing_key_for(const Credentials& credentials, std::string_view date,
                             unsigned char* key) const {
  {
    std::lock_guard lock(mutex_);
    if (cached_key_.size() == kDigestSize && cached_date_ == date &&
        cached_secret_ == credentials.secret_access_key) {
      std::memcpy(key, cached_key_.data(), kDigestSize);
      return;
    }
  }
  // Derived outside the lock: a miss (once a day, or when credentials rotate) must not stall the
  // threads that still hit.
  derive_key(credentials.secret_access_key, date, region_, service_, key);
  std::lock_guard lock(mutex_);
  cached_secret_ = credentials.secret_access_key;
  cached_date_ = date;
  cached_key_.assign(as_chars(key, kDigestSize));
}

void Signer::sign(HttpRequest& request, const Credentials& credentials,
                  std::chrono::system_clock::time_point now) const {
  const Options options{region_, service_, !s3_, s3_, false, {}};
  Work& work = thread_work();
  format_amz_date(now, work.amz_date);
  build_canonical_request(request, credentials, options, work);
  unsigned char key[kDigestSize];
  signing_key_for(credentials, work.day(), key);
  finish_signature(credentials, options, key, kDigestSize, work);
  OPENSSL_cleanse(key, sizeof key);

  // Only now may the request change: the work buffers point into its headers until here.
  request.headers.reserve(request.headers.size() + 4);
  put_header(request.headers, "X-Amz-Date", work.date());
  if (!credentials.session_token.empty()) {
    put_header(request.headers, "X-Amz-Security-Token", credentials.session_token);
  }
  if (s3_) put_header(request.headers, "x-amz-content-sha256", work.payload());
  put_header(request.headers, "Authorization", work.authorization);
}

}  // namespace rstasker::aws
