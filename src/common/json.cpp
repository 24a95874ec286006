// Bounded JSON parsing for untrusted input.
#include "rstasker/common/json.hpp"

#include "rstasker/common/error.hpp"

namespace rstasker {

namespace {

struct TooDeep {};

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
    // e.what() reads "[json.exception.parse_error.101] parse error at line 1, column 5: ...".
    std::string reason = e.what();
    if (auto pos = reason.find("] "); pos != std::string::npos) reason.erase(0, pos + 2);
    throw Error(error_name, std::string(what) + " is not valid JSON: " + reason);
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
