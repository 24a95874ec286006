// The EMF checker of the metric tests (see emf.hpp).
#include "support/emf.hpp"

#include <set>

namespace rstasker::testing {

namespace {

const std::set<std::string>& units() {
  static const std::set<std::string> kUnits = {"Seconds",
                                               "Microseconds",
                                               "Milliseconds",
                                               "Bytes",
                                               "Kilobytes",
                                               "Megabytes",
                                               "Gigabytes",
                                               "Terabytes",
                                               "Bits",
                                               "Kilobits",
                                               "Megabits",
                                               "Gigabits",
                                               "Terabits",
                                               "Percent",
                                               "Count",
                                               "Bytes/Second",
                                               "Kilobytes/Second",
                                               "Megabytes/Second",
                                               "Gigabytes/Second",
                                               "Terabytes/Second",
                                               "Bits/Second",
                                               "Kilobits/Second",
                                               "Megabits/Second",
                                               "Gigabits/Second",
                                               "Terabits/Second",
                                               "Count/Second",
                                               "None"};
  return kUnits;
}

bool only_members(const Json& object, const std::set<std::string>& allowed) {
  for (const auto& [key, value] : object.items()) {
    if (!allowed.contains(key)) return false;
  }
  return true;
}

// Key of a document's metric: the name plus its first dimension set's values beyond FunctionName.
std::string key_of(const Json& doc, const std::string& name) {
  std::string key = name;
  const Json& directive = doc["_aws"]["CloudWatchMetrics"][0];
  for (const auto& dim : directive["Dimensions"][0]) {
    const std::string d = dim.get<std::string>();
    if (d != "FunctionName") key += "|" + d + "=" + doc[d].get<std::string>();
  }
  return key;
}

}  // namespace

std::string emf_problem(const Json& doc) {
  if (!doc.is_object()) return "the document is not a JSON object";
  auto aws = doc.find("_aws");
  if (aws == doc.end() || !aws->is_object()) return "no _aws object";
  auto ts = aws->find("Timestamp");
  if (ts == aws->end() || !ts->is_number_integer() || ts->get<std::int64_t>() < 0) {
    return "_aws.Timestamp is not a non-negative integer";
  }
  auto directives = aws->find("CloudWatchMetrics");
  if (directives == aws->end() || !directives->is_array() || directives->empty()) {
    return "_aws.CloudWatchMetrics is not a non-empty array";
  }
  for (const Json& directive : *directives) {
    if (!directive.is_object() ||
        !only_members(directive, {"Namespace", "Dimensions", "Metrics"})) {
      return "a directive is not an object of Namespace, Dimensions, Metrics";
    }
    auto ns = directive.find("Namespace");
    if (ns == directive.end() || !ns->is_string() || ns->get<std::string>().empty() ||
        ns->get<std::string>().size() > 1024) {
      return "a directive's Namespace is not a string of 1 to 1024 characters";
    }
    auto dims = directive.find("Dimensions");
    if (dims == directive.end() || !dims->is_array()) return "Dimensions is not an array";
    for (const Json& set : *dims) {
      if (!set.is_array() || set.size() > 30) return "a dimension set is not an array of <= 30";
      for (const Json& key : set) {
        if (!key.is_string()) return "a dimension key is not a string";
        auto member = doc.find(key.get<std::string>());
        if (member == doc.end() || !member->is_string() || member->get<std::string>().empty()) {
          return "dimension " + key.get<std::string>() + " has no top-level string value";
        }
      }
    }
    auto metrics = directive.find("Metrics");
    if (metrics == directive.end() || !metrics->is_array() || metrics->empty() ||
        metrics->size() > 100) {
      return "Metrics is not an array of 1 to 100 definitions";
    }
    for (const Json& def : *metrics) {
      if (!def.is_object() || !only_members(def, {"Name", "Unit", "StorageResolution"})) {
        return "a metric definition has members the specification does not define";
      }
      auto name = def.find("Name");
      if (name == def.end() || !name->is_string() || name->get<std::string>().empty() ||
          name->get<std::string>().size() > 1024) {
        return "a metric definition has no Name of 1 to 1024 characters";
      }
      if (auto unit = def.find("Unit");
          unit != def.end() &&
          (!unit->is_string() || !units().contains(unit->get<std::string>()))) {
        return "metric " + name->get<std::string>() + " has an invalid Unit";
      }
      auto value = doc.find(name->get<std::string>());
      if (value == doc.end()) return "metric " + name->get<std::string>() + " has no value member";
      if (value->is_array()) {
        if (value->empty() || value->size() > 100) {
          return "metric " + name->get<std::string>() + " has an array of 0 or over 100 values";
        }
        for (const Json& v : *value) {
          if (!v.is_number()) return "metric " + name->get<std::string>() + " has a non-number";
        }
      } else if (!value->is_number()) {
        return "metric " + name->get<std::string>() + " is not a number";
      }
    }
  }
  return "";
}

std::map<std::string, double> emf_totals(const std::vector<Json>& docs) {
  std::map<std::string, double> totals;
  for (const Json& doc : docs) {
    for (const Json& def : doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]) {
      const std::string name = def["Name"];
      const Json& value = doc[name];
      double sum = 0;
      if (value.is_array()) {
        for (const Json& v : value) sum += v.get<double>();
      } else {
        sum = value.get<double>();
      }
      totals[key_of(doc, name)] += sum;
    }
  }
  return totals;
}

std::vector<double> emf_values(const std::vector<Json>& docs, const std::string& key) {
  std::vector<double> out;
  for (const Json& doc : docs) {
    for (const Json& def : doc["_aws"]["CloudWatchMetrics"][0]["Metrics"]) {
      const std::string name = def["Name"];
      if (key_of(doc, name) != key) continue;
      const Json& value = doc[name];
      if (value.is_array()) {
        for (const Json& v : value) out.push_back(v.get<double>());
      } else {
        out.push_back(value.get<double>());
      }
    }
  }
  return out;
}

}  // namespace rstasker::testing
