// Small text utilities that several layers need: ASCII case folding, UTF-8 length and
// truncation, base64, identifiers.
#pragma once

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>

namespace rstasker {

// ASCII case-insensitive equality (HTTP header names, SQL keywords, AWS names).
bool iequals(std::string_view a, std::string_view b);

// `text` with its ASCII letters lowered; other bytes unchanged.
std::string ascii_lower(std::string_view text);

// Whether `text` is empty or holds only whitespace.
bool is_blank(std::string_view text);

// The number of code points in UTF-8 `text` (continuation bytes are not counted).
std::size_t utf8_length(std::string_view text);

// At most `max_chars` code points of `text`, never splitting a multi-byte sequence; when text is
// cut, the result ends with `marker` (counted within the limit).
std::string truncate_utf8_chars(std::string_view text, std::size_t max_chars,
                                std::string_view marker = "...");
// The same, limited in bytes.
std::string truncate_utf8_bytes(std::string_view text, std::size_t max_bytes,
                                std::string_view marker = "...");

// The most of any input value (a field name, an action, a statement) that an error or a log line
// quotes: a user recognises their value by its start, and a 300,000-character name must not come
// back whole in the error, the log and the Runtime API's answer.
inline constexpr std::size_t kMaxExcerptChars = 200;

// `value` as errors and logs quote it: whole when at most kMaxExcerptChars code points, else its
// first code points followed by " ... [cut, N characters in all]", never longer than
// kMaxExcerptChars plus that marker.
std::string excerpt(std::string_view value);

// Whether `text` is well-formed UTF-8.
bool is_valid_utf8(std::string_view text);

// Standard base64 (RFC 4648 alphabet, with padding).
std::string base64_encode(std::string_view bytes);
// The bytes `text` encodes, or nullopt when it is not padded standard base64.
std::optional<std::string> base64_decode(std::string_view text);

// A random version-4 UUID in canonical form.
std::string random_uuid();

}  // namespace rstasker
