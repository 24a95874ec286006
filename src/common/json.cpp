// Bounded JSON parsing for untrusted input.
#include "rstasker/common/json.hpp"

#include "rstasker/common/error.hpp"

namespace rstasker {

namespace {

struct TooDeep {};

// What nlohmann says it expected ("; expected <token>"), by the names its lexer uses.
constexpr std::string_view kExpectedTokens[] = {"true literal",
                                                "false literal",
                                                "null literal",
                                                "string literal",
                                                "number literal",
                                                "'['",
                                                "'{'",
                                                "']'",
                                                "'}'",
                                                "':'",
                                                "','",
                                                "end of input",
                                                "'[', '{', or a literal"};

// Says where and what is wrong without a byte of the input. nlohmann's message reads
// "[json.exception.parse_error.101] parse error at line 1, column 5: syntax error while parsing
// value - invalid literal; last read: '<input>'; expected <token>", and the quoted input may hold
// a task token or a password: only the fixed parts are kept.
std::string describe_parse_error(const Json::parse_error& e) {
  constexpr auto npos = std::string_view::npos;
  const std::string_view text = e.what();
  const auto colon = text.find(": ");  // ends the position, which is made of numbers only
  std::string where = "at byte " + std::to_string(e.byte);
  constexpr std::string_view kAtLine = "parse error at line ";
  if (auto at = text.find(kAtLine); at != npos && colon != npos && colon > at) {
    const auto start = at + kAtLine.size();
    where += " (line " + std::string(text.substr(start, colon - start)) + ")";
  }
  std::string_view reason = colon == npos ? std::string_view() : text.substr(colon + 2);
  constexpr std::string_view kLastRead = "; last read: '";
  const auto quote = reason.find(kLastRead);
  if (quote == npos) return where + ": " + std::string(reason);

  const std::string_view after = reason.substr(quote);
  std::string kind(reason.substr(0, quote));
  // The token nlohmann expected follows the quoted input; keep it only as one of its own names.
  for (std::string_view token : kExpectedTokens) {
    if (after.ends_with("; expected " + std::string(token))) {
      kind += "; expected " + std::string(token);
      break;
    }
  }
  return where + ": " + kind;
}

}  // namespace

Json parse_json(std::string_view text, std::string_view what, std::string_view error_name) {
  // The parser itself is iterative; the callback stops documents that are absurdly deep before
  // anything recursive (dump, comparison, our own walkers) ever sees them.
  auto limit_depth = [](int depth, Json::parse_event_t event, Json& /*parsed*/) {
    if ((event == Json::parse_event_t::object_start || event == Json::parse_event_t::array_start) &&
        depth >= kMaxJsonDepth) {
      throw TooDeep{};
    }
    return true;
  };
  try {
    return Json::parse(text.begin(), text.end(), limit_depth);
  } catch (const TooDeep&) {
    throw Error(error_name, std::string(what) + " is nested deeper than " +
                                std::to_string(kMaxJsonDepth) + " levels");
  } catch (const Json::parse_error& e) {
    throw Error(error_name, std::string(what) + " is not valid JSON " + describe_parse_error(e));
  }
}

std::string dump_json(const Json& value) {
  return value.dump(-1, ' ', false, Json::error_handler_t::replace);
}

std::string string_member(const Json& object, std::string_view name) {
  if (!object.is_object()) return {};
  auto it = object.find(name);
  return it != object.end() && it->is_string() ? it->get<std::string>() : std::string();
}

std::string_view json_type_name(const Json& value) {
  switch (value.type()) {
    case Json::value_t::null:
      return "null";
    case Json::value_t::object:
      return "object";
    case Json::value_t::array:
      return "array";
    case Json::value_t::string:
      return "string";
    case Json::value_t::boolean:
      return "boolean";
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned:
    case Json::value_t::number_float:
      return "number";
    default:
      return "binary";
  }
}

}  // namespace rstasker
