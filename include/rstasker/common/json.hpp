// JSON at the edges: bounded parsing of untrusted text and serialisation that never throws on
// bad UTF-8. The project uses nlohmann::json directly everywhere else.
#pragma once

#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <string_view>

namespace rstasker {

using Json = nlohmann::json;

// Deepest nesting accepted from untrusted input; deeper documents are refused, not recursed into.
inline constexpr int kMaxJsonDepth = 64;

// Parses `text` as one JSON document. Rejects syntax errors, invalid UTF-8 and nesting deeper than
// kMaxJsonDepth by throwing Error(`error_name`, ...): "<what> is not valid JSON at byte N (line L,
// column C): <what is wrong>" or "<what> is nested deeper than ... levels". The message never
// quotes the input, which may hold secrets (task tokens) that are not yet known as such.
// Time and memory are linear in the size of `text`: every JSON the binary reads goes through here
// (or try_parse_json), so nothing recursive (dump, comparison, destruction) sees a deeper document.
Json parse_json(std::string_view text, std::string_view what, std::string_view error_name);

// The same check without an error: the document, or nullopt when `text` is not valid JSON or is
// nested deeper than kMaxJsonDepth. For answers whose shape is only a hint (error bodies).
std::optional<Json> try_parse_json(std::string_view text);

// Compact serialisation; invalid UTF-8 in strings is replaced by U+FFFD rather than throwing.
std::string dump_json(const Json& value);

// The string member `name` of `object`, or "" when `object` is not an object or the member is
// absent or not a string. For documents whose shape was not checked (events of other services).
std::string string_member(const Json& object, std::string_view name);

// The JSON type name of `value` as a user would say it ("string", "number", "object", ...).
std::string_view json_type_name(const Json& value);

}  // namespace rstasker
