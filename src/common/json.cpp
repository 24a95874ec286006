// Bounded JSON parsing for untrusted input.
#include "rstasker/common/json.hpp"

#include "rstasker/common/error.hpp"

namespace rstasker {

namespace {

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

namespace {

// Checks syntax and depth in one pass without building anything. nlohmann's callback parser is
// not used for the depth: it rescans each parent container at every closing bracket, which makes
// a wide document (many small containers) quadratic. The SAX events here cost O(1) each.
class Prescan {
 public:
  bool null() { return true; }
  bool boolean(bool /*value*/) { return true; }
  bool number_integer(Json::number_integer_t /*value*/) { return true; }
  bool number_unsigned(Json::number_unsigned_t /*value*/) { return true; }
  bool number_float(Json::number_float_t /*value*/, const Json::string_t& /*text*/) { return true; }
  bool string(Json::string_t& /*value*/) { return true; }
  bool binary(Json::binary_t& /*value*/) { return true; }
  bool start_object(std::size_t /*elements*/) { return enter(); }
  bool key(Json::string_t& /*value*/) { return true; }
  bool end_object() { return leave(); }
  bool start_array(std::size_t /*elements*/) { return enter(); }
  bool end_array() { return leave(); }
  bool parse_error(std::size_t /*position*/, const std::string& /*last_token*/,
                   const nlohmann::detail::exception& e) {
    if (const auto* parse = dynamic_cast<const Json::parse_error*>(&e)) {
      syntax_error_ = describe_parse_error(*parse);
    } else {
      syntax_error_ = "malformed";
    }
    return false;
  }

  bool too_deep() const { return too_deep_; }
  // Empty when the text parsed.
  const std::string& syntax_error() const { return syntax_error_; }

 private:
  bool enter() {
    if (++depth_ > kMaxJsonDepth) too_deep_ = true;
    return !too_deep_;
  }
  bool leave() {
    --depth_;
    return true;
  }

  int depth_ = 0;
  bool too_deep_ = false;
  std::string syntax_error_;
};

}  // namespace

std::optional<Json> try_parse_json(std::string_view text) {
  Prescan prescan;
  if (!Json::sax_parse(text.begin(), text.end(), &prescan)) return std::nullopt;
  // Known to be valid and shallow: the ordinary (linear, iterative) parse cannot fail.
  return Json::parse(text.begin(), text.end());
}

Json parse_json(std::string_view text, std::string_view what, std::string_view error_name) {
  Prescan prescan;
  if (!Json::sax_parse(text.begin(), text.end(), &prescan)) {
    if (prescan.too_deep()) {
      throw Error(error_name, std::string(what) + " is nested deeper than " +
                                  std::to_string(kMaxJsonDepth) + " levels");
    }
    throw Error(error_name, std::string(what) + " is not valid JSON " + prescan.syntax_error());
  }
  return Json::parse(text.begin(), text.end());
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
