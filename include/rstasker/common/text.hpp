// Small text utilities that several layers need: UTF-8-safe truncation, identifiers.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

namespace rstasker {

// At most `max_chars` code points of `text`, never splitting a multi-byte sequence; when text is
// cut, the result ends with `marker` (counted within the limit).
std::string truncate_utf8_chars(std::string_view text, std::size_t max_chars,
                                std::string_view marker = "...");
// The same, limited in bytes.
std::string truncate_utf8_bytes(std::string_view text, std::size_t max_bytes,
                                std::string_view marker = "...");

// Whether `text` is well-formed UTF-8.
bool is_valid_utf8(std::string_view text);

// A random version-4 UUID in canonical form.
std::string random_uuid();

}  // namespace rstasker
