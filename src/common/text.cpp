// UTF-8 truncation and validation, UUIDs.
#include "rstasker/common/text.hpp"

#include <array>
#include <random>

namespace rstasker {

namespace {

bool is_continuation(unsigned char c) {
  return (c & 0xC0) == 0x80;
}

// Largest prefix of `text` no longer than `limit` (in units of `count`) that ends on a code
// point boundary; `count` is 1 per byte or 1 per code point.
template <bool kCountChars>
std::size_t prefix_bytes(std::string_view text, std::size_t limit) {
  std::size_t units = 0;
  std::size_t i = 0;
  while (i < text.size()) {
    std::size_t next = i + 1;
    while (next < text.size() && is_continuation(static_cast<unsigned char>(text[next]))) ++next;
    std::size_t cost = kCountChars ? 1 : next - i;
    if (units + cost > limit) break;
    units += cost;
    i = next;
  }
  return i;
}

std::size_t count_chars(std::string_view text) {
  std::size_t n = 0;
  for (char c : text) n += is_continuation(static_cast<unsigned char>(c)) ? 0 : 1;
  return n;
}

template <bool kCountChars>
std::string truncate(std::string_view text, std::size_t limit, std::string_view marker) {
  if (prefix_bytes<kCountChars>(text, limit) == text.size()) return std::string(text);
  std::size_t marker_units = kCountChars ? count_chars(marker) : marker.size();
  if (marker_units >= limit) {
    return std::string(text.substr(0, prefix_bytes<kCountChars>(text, limit)));
  }
  std::string out(text.substr(0, prefix_bytes<kCountChars>(text, limit - marker_units)));
  out += marker;
  return out;
}

}  // namespace

std::string truncate_utf8_chars(std::string_view text, std::size_t max_chars,
                                std::string_view marker) {
  return truncate<true>(text, max_chars, marker);
}

std::string truncate_utf8_bytes(std::string_view text, std::size_t max_bytes,
                                std::string_view marker) {
  return truncate<false>(text, max_bytes, marker);
}

bool is_valid_utf8(std::string_view text) {
  std::size_t i = 0;
  while (i < text.size()) {
    auto c = static_cast<unsigned char>(text[i]);
    std::size_t length = 0;
    std::uint32_t code = 0;
    if (c < 0x80) {
      ++i;
      continue;
    }
    if ((c & 0xE0) == 0xC0) {
      length = 2;
      code = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      length = 3;
      code = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      length = 4;
      code = c & 0x07;
    } else {
      return false;
    }
    if (i + length > text.size()) return false;
    for (std::size_t k = 1; k < length; ++k) {
      auto cc = static_cast<unsigned char>(text[i + k]);
      if (!is_continuation(cc)) return false;
      code = (code << 6) | (cc & 0x3F);
    }
    static constexpr std::array<std::uint32_t, 5> kMinimum = {0, 0, 0x80, 0x800, 0x10000};
    if (code < kMinimum[length] || code > 0x10FFFF || (code >= 0xD800 && code <= 0xDFFF)) {
      return false;  // overlong, out of range, or a surrogate
    }
    i += length;
  }
  return true;
}

std::string random_uuid() {
  thread_local std::mt19937_64 rng{std::random_device{}()};
  std::array<unsigned char, 16> bytes{};
  for (std::size_t i = 0; i < bytes.size(); i += 8) {
    std::uint64_t r = rng();
    for (std::size_t k = 0; k < 8; ++k) bytes[i + k] = static_cast<unsigned char>(r >> (8 * k));
  }
  bytes[6] = static_cast<unsigned char>((bytes[6] & 0x0F) | 0x40);
  bytes[8] = static_cast<unsigned char>((bytes[8] & 0x3F) | 0x80);
  static constexpr char kHex[] = "0123456789abcdef";
  std::string out;
  out.reserve(36);
  for (std::size_t i = 0; i < bytes.size(); ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out.push_back('-');
    out.push_back(kHex[bytes[i] >> 4]);
    out.push_back(kHex[bytes[i] & 0x0F]);
  }
  return out;
}

}  // namespace rstasker
