// The Redshift Data API on PostgreSQL. One registry of statements behind one mutex; a small pool of
// worker threads (at most max_active) that each run one statement at a time on its own connection;
// one publisher thread that delivers completion events in order.
#include "local/data_api.hpp"

#include <poll.h>
#include <re2/re2.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <cstdlib>
#include <deque>
#include <functional>
#include <map>
#include <mutex>
#include <optional>
#include <ranges>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "local/named_params.hpp"
#include "local/pg.hpp"
#include "local/sql_rewrite.hpp"
#include "rstasker/common/error.hpp"
#include "rstasker/common/text.hpp"

namespace rstasker::local {
namespace {

using Clock = std::chrono::system_clock;

constexpr std::size_t kMaxSqlChars = 100000;
constexpr std::size_t kMaxStatementNameChars = 500;
constexpr std::size_t kMaxBatchStatements = 40;
constexpr std::size_t kMaxClientTokenChars = 64;
constexpr int kMaxListResults = 100;
constexpr double kRetentionSeconds = 24 * 60 * 60;  // results and ids are kept 24 h
constexpr std::string_view kIdPattern = "^[a-z0-9]{8}(-[a-z0-9]{4}){3}-[a-z0-9]{12}(:\\d+)?$";
constexpr std::string_view kNoResult =
    "Query does not have result. Please check query status with DescribeStatement.";

// ---- errors, named and worded as the real API does ----------------------------------------------

Error validation_error(std::string message) {
  return Error("ValidationException", std::move(message), 400);
}
Error not_found(std::string message = "Query does not exist.") {
  return Error("ResourceNotFoundException", std::move(message), 400);
}

// The quoted value in a constraint message; long values are cut (AWS echoes them whole).
std::string describe_value(const Json& value) {
  if (value.is_null()) return "null";
  std::string text = value.is_string() ? value.get<std::string>() : dump_json(value);
  return "'" + truncate_utf8_chars(text, 200) + "'";
}

// AWS's validation message: "1 validation error detected: Value 'x' at 'member' failed to satisfy
// constraint: Member must ...".
Error constraint_error(std::string_view member, const Json& value, std::string_view constraint) {
  return validation_error("1 validation error detected: Value " + describe_value(value) + " at '" +
                          std::string(member) + "' failed to satisfy constraint: Member " +
                          std::string(constraint));
}

std::string member_name(std::string_view field) {
  std::string member(field);
  if (!member.empty()) {
    member[0] = static_cast<char>(std::tolower(static_cast<unsigned char>(member[0])));
  }
  return member;
}

void check_length(std::string_view member, const std::string& value, std::size_t min,
                  std::size_t max) {
  const std::size_t length = utf8_length(value);
  if (length < min) {
    throw constraint_error(member, value,
                           "must have length greater than or equal to " + std::to_string(min));
  }
  if (length > max) {
    throw constraint_error(member, value,
                           "must have length less than or equal to " + std::to_string(max));
  }
}

void check_pattern(std::string_view member, const std::string& value, const RE2& pattern,
                   std::string_view pattern_text) {
  if (!RE2::FullMatch(value, pattern)) {
    throw constraint_error(member, value,
                           "must satisfy regular expression pattern: " + std::string(pattern_text));
  }
}

// ---- typed access to the request ----------------------------------------------------------------

const Json* field(const Json& request, std::string_view name) {
  const auto it = request.find(name);
  return it == request.end() || it->is_null() ? nullptr : &*it;
}

Error type_error(std::string_view name, std::string_view expected, const Json& value) {
  return validation_error("Expected " + std::string(name) + " to be " + std::string(expected) +
                          ", got " + std::string(json_type_name(value)) + ".");
}

std::optional<std::string> optional_string(const Json& request, std::string_view name) {
  const Json* value = field(request, name);
  if (value == nullptr) return std::nullopt;
  if (!value->is_string()) throw type_error(name, "a string", *value);
  return value->get<std::string>();
}

std::string required_string(const Json& request, std::string_view name) {
  auto value = optional_string(request, name);
  if (!value) throw constraint_error(member_name(name), nullptr, "must not be null");
  return std::move(*value);
}

std::optional<bool> optional_bool(const Json& request, std::string_view name) {
  const Json* value = field(request, name);
  if (value == nullptr) return std::nullopt;
  if (!value->is_boolean()) throw type_error(name, "a boolean", *value);
  return value->get<bool>();
}

std::optional<std::int64_t> optional_integer(const Json& request, std::string_view name) {
  const Json* value = field(request, name);
  if (value == nullptr) return std::nullopt;
  if (!value->is_number_integer()) throw type_error(name, "an integer", *value);
  return value->get<std::int64_t>();
}

// ---- small encodings ----------------------------------------------------------------------------

// bytea's text output ("\x0a1b...") as raw bytes.
std::string decode_bytea_hex(std::string_view text) {
  if (text.size() < 2 || text[0] != '\\' || text[1] != 'x') return std::string(text);
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return 0;
  };
  std::string bytes;
  bytes.reserve((text.size() - 2) / 2);
  for (std::size_t i = 2; i + 1 < text.size(); i += 2) {
    bytes.push_back(static_cast<char>((nibble(text[i]) << 4) | nibble(text[i + 1])));
  }
  return bytes;
}

double now_seconds() {
  const auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(Clock::now().time_since_epoch());
  return static_cast<double>(ms.count()) / 1000.0;
}

// A stable UUID-shaped id derived from a name (FNV-1a, two seeds): the local stand-in for a
// serverless workgroup's id in its ARN.
std::string name_uuid(std::string_view name) {
  auto fnv = [&](std::uint64_t hash) {
    for (const char c : name) {
      hash ^= static_cast<unsigned char>(c);
      hash *= 1099511628211ULL;
    }
    return hash;
  };
  const std::array<std::uint64_t, 2> halves{fnv(14695981039346656037ULL),
                                            fnv(0x9e3779b97f4a7c15ULL)};
  constexpr std::string_view kHex = "0123456789abcdef";
  std::string out;
  for (int i = 0; i < 16; ++i) {
    if (i == 4 || i == 6 || i == 8 || i == 10) out.push_back('-');
    const auto byte = static_cast<unsigned>((halves[i / 8] >> (8 * (i % 8))) & 0xFF);
    out.push_back(kHex[byte >> 4]);
    out.push_back(kHex[byte & 0x0F]);
  }
  return out;
}

// ---- result sets --------------------------------------------------------------------------------

enum class FieldKind { kBool, kLong, kDouble, kBlob, kString };

struct PgType {
  std::string_view name;
  FieldKind kind;
};

std::optional<PgType> builtin_type(Oid oid) {
  switch (oid) {
    case 16:
      return PgType{"bool", FieldKind::kBool};
    case 17:
      return PgType{"bytea", FieldKind::kBlob};
    case 18:
      return PgType{"char", FieldKind::kString};
    case 19:
      return PgType{"name", FieldKind::kString};
    case 20:
      return PgType{"int8", FieldKind::kLong};
    case 21:
      return PgType{"int2", FieldKind::kLong};
    case 23:
      return PgType{"int4", FieldKind::kLong};
    case 25:
      return PgType{"text", FieldKind::kString};
    case 26:
      return PgType{"oid", FieldKind::kLong};
    case 114:
      return PgType{"json", FieldKind::kString};
    case 700:
      return PgType{"float4", FieldKind::kDouble};
    case 701:
      return PgType{"float8", FieldKind::kDouble};
    case 790:
      return PgType{"money", FieldKind::kString};
    case 1042:
      return PgType{"bpchar", FieldKind::kString};
    case 1043:
      return PgType{"varchar", FieldKind::kString};
    case 1082:
      return PgType{"date", FieldKind::kString};
    case 1083:
      return PgType{"time", FieldKind::kString};
    case 1114:
      return PgType{"timestamp", FieldKind::kString};
    case 1184:
      return PgType{"timestamptz", FieldKind::kString};
    case 1186:
      return PgType{"interval", FieldKind::kString};
    case 1266:
      return PgType{"timetz", FieldKind::kString};
    case 1700:
      return PgType{"numeric", FieldKind::kString};
    case 2950:
      return PgType{"uuid", FieldKind::kString};
    case 3802:
      return PgType{"jsonb", FieldKind::kString};
    default:
      return std::nullopt;
  }
}

// JDBC-style column metadata, as the Data API reports it, from a PostgreSQL type and typmod.
Json column_metadata(const std::string& column, std::string_view type_name, int typmod) {
  int precision = 0;
  int scale = 0;
  bool is_signed = false;
  bool case_sensitive = false;
  if (type_name == "int2") {
    precision = 5, is_signed = true;
  } else if (type_name == "int4") {
    precision = 10, is_signed = true;
  } else if (type_name == "int8") {
    precision = 19, is_signed = true;
  } else if (type_name == "float4") {
    precision = 8, scale = 8, is_signed = true;
  } else if (type_name == "float8") {
    precision = 17, scale = 17, is_signed = true;
  } else if (type_name == "numeric") {
    is_signed = true;
    if (typmod >= 4) {
      precision = ((typmod - 4) >> 16) & 0xFFFF;
      scale = (typmod - 4) & 0xFFFF;
    }
  } else if (type_name == "money") {
    precision = 19, scale = 2, is_signed = true;
  } else if (type_name == "bool") {
    precision = 1;
  } else if (type_name == "varchar" || type_name == "bpchar") {
    precision = typmod >= 4 ? typmod - 4 : 0;
    case_sensitive = true;
  } else if (type_name == "text" || type_name == "name" || type_name == "char") {
    case_sensitive = true;
  } else if (type_name == "date") {
    precision = 13;
  } else if (type_name == "time" || type_name == "timetz") {
    precision = 15, scale = 6;
  } else if (type_name == "timestamp") {
    precision = 29, scale = 6;
  } else if (type_name == "timestamptz") {
    precision = 35, scale = 6;
  }
  return Json{{"isCaseSensitive", case_sensitive},
              {"isCurrency", type_name == "money"},
              {"isSigned", is_signed},
              {"label", column},
              {"length", 0},
              {"name", column},
              {"nullable", 1},
              {"precision", precision},
              {"scale", scale},
              {"schemaName", ""},
              {"tableName", ""},
              {"typeName", std::string(type_name)}};
}

Json field_value(const PGresult* result, int row, int column, FieldKind kind) {
  if (PQgetisnull(result, row, column) != 0) return Json{{"isNull", true}};
  const std::string_view text(PQgetvalue(result, row, column),
                              static_cast<std::size_t>(PQgetlength(result, row, column)));
  switch (kind) {
    case FieldKind::kBool:
      return Json{{"booleanValue", text == "t"}};
    case FieldKind::kLong:
      return Json{{"longValue", std::strtoll(std::string(text).c_str(), nullptr, 10)}};
    case FieldKind::kDouble: {
      const double value = std::strtod(std::string(text).c_str(), nullptr);
      if (std::isfinite(value)) return Json{{"doubleValue", value}};
      return Json{{"stringValue", std::string(text)}};  // NaN and ±Infinity have no JSON number
    }
    case FieldKind::kBlob:
      return Json{{"blobValue", base64_encode(decode_bytea_hex(text))}};
    case FieldKind::kString:
      break;
  }
  return Json{{"stringValue", std::string(text)}};
}

struct ResultSet {
  Json column_metadata = Json::array();
  std::vector<Json> records;  // each an array of fields
  std::int64_t size_bytes = 0;
};

// Runs a catalog query with one array parameter; nullptr when it fails (metadata is best effort).
// Inside a batch's transaction it runs under a savepoint, so that its failure (a cancel arriving
// just then) cannot abort the user's transaction.
pg::Result catalog_query(PGconn* connection, const char* sql, const std::string& array) {
  const bool in_transaction = PQtransactionStatus(connection) == PQTRANS_INTRANS;
  if (in_transaction) pg::Result(PQexec(connection, "SAVEPOINT rstasker_metadata"));
  const std::array<const char*, 1> values{array.c_str()};
  pg::Result result(PQexecParams(connection, sql, 1, nullptr, values.data(), nullptr, nullptr, 0));
  const bool ok = result && PQresultStatus(result.get()) == PGRES_TUPLES_OK;
  if (in_transaction) {
    pg::Result(PQexec(connection, ok ? "RELEASE SAVEPOINT rstasker_metadata"
                                     : "ROLLBACK TO SAVEPOINT rstasker_metadata"));
  }
  return ok ? std::move(result) : nullptr;
}

std::shared_ptr<ResultSet> build_result_set(PGconn* connection, const PGresult* result) {
  auto set = std::make_shared<ResultSet>();
  const int columns = PQnfields(result);
  const int rows = PQntuples(result);

  // Type names: built-in ones known, others (arrays, enums, domains...) from pg_type.
  std::vector<std::string> type_names(static_cast<std::size_t>(columns));
  std::vector<FieldKind> kinds(static_cast<std::size_t>(columns), FieldKind::kString);
  std::string unknown_oids;
  for (int c = 0; c < columns; ++c) {
    if (const auto type = builtin_type(PQftype(result, c))) {
      type_names[c] = type->name;
      kinds[c] = type->kind;
    } else {
      unknown_oids += (unknown_oids.empty() ? "" : ",") + std::to_string(PQftype(result, c));
    }
  }
  if (!unknown_oids.empty()) {
    if (auto types = catalog_query(
            connection, "select oid::text, typname::text from pg_type where oid = any($1::oid[])",
            "{" + unknown_oids + "}")) {
      for (int r = 0; r < PQntuples(types.get()); ++r) {
        const std::string oid = PQgetvalue(types.get(), r, 0);
        for (int c = 0; c < columns; ++c) {
          if (std::to_string(PQftype(result, c)) == oid)
            type_names[c] = PQgetvalue(types.get(), r, 1);
        }
      }
    }
  }

  for (int c = 0; c < columns; ++c) {
    set->column_metadata.push_back(column_metadata(
        PQfname(result, c), type_names[c].empty() ? "unknown" : type_names[c], PQfmod(result, c)));
  }

  // Columns that come straight from a table: schema, table, nullability and default.
  std::string relids;
  std::string attnums;
  for (int c = 0; c < columns; ++c) {
    if (PQftable(result, c) != InvalidOid && PQftablecol(result, c) > 0) {
      relids += (relids.empty() ? "" : ",") + std::to_string(PQftable(result, c));
      attnums += (attnums.empty() ? "" : ",") + std::to_string(PQftablecol(result, c));
    }
  }
  if (!relids.empty()) {
    const std::string pairs = "{{" + relids + "},{" + attnums + "}}";
    if (auto info = catalog_query(
            connection,
            "select a.attrelid::text, a.attnum::text, n.nspname::text, c.relname::text, "
            "a.attnotnull, pg_get_expr(d.adbin, d.adrelid) "
            "from pg_attribute a join pg_class c on c.oid = a.attrelid "
            "join pg_namespace n on n.oid = c.relnamespace "
            "left join pg_attrdef d on d.adrelid = a.attrelid and d.adnum = a.attnum "
            "where (a.attrelid, a.attnum) in "
            "(select ($1::text[])[1][i]::oid, ($1::text[])[2][i]::int2 "
            "from generate_subscripts($1::text[], 2) i)",
            pairs)) {
      for (int r = 0; r < PQntuples(info.get()); ++r) {
        const std::string relid = PQgetvalue(info.get(), r, 0);
        const std::string attnum = PQgetvalue(info.get(), r, 1);
        for (int c = 0; c < columns; ++c) {
          if (std::to_string(PQftable(result, c)) != relid ||
              std::to_string(PQftablecol(result, c)) != attnum) {
            continue;
          }
          Json& meta = set->column_metadata[static_cast<std::size_t>(c)];
          meta["schemaName"] = PQgetvalue(info.get(), r, 2);
          meta["tableName"] = PQgetvalue(info.get(), r, 3);
          meta["nullable"] = std::string_view(PQgetvalue(info.get(), r, 4)) == "t" ? 0 : 1;
          if (PQgetisnull(info.get(), r, 5) == 0)
            meta["columnDefault"] = PQgetvalue(info.get(), r, 5);
        }
      }
    }
  }

  set->records.reserve(static_cast<std::size_t>(rows));
  for (int r = 0; r < rows; ++r) {
    Json record = Json::array();
    for (int c = 0; c < columns; ++c) {
      record.push_back(field_value(result, r, c, kinds[c]));
      set->size_bytes += PQgetlength(result, r, c);
    }
    set->records.push_back(std::move(record));
  }
  return set;
}

// ---- statements ---------------------------------------------------------------------------------

enum class Status { kSubmitted, kPicked, kStarted, kFinished, kFailed, kAborted };

std::string_view to_string(Status status) {
  switch (status) {
    case Status::kSubmitted:
      return "SUBMITTED";
    case Status::kPicked:
      return "PICKED";
    case Status::kStarted:
      return "STARTED";
    case Status::kFinished:
      return "FINISHED";
    case Status::kFailed:
      return "FAILED";
    case Status::kAborted:
      return "ABORTED";
  }
  return "SUBMITTED";
}

bool is_terminal(Status status) {
  return status == Status::kFinished || status == Status::kFailed || status == Status::kAborted;
}

std::optional<Status> parse_status(std::string_view text) {
  for (const Status status : {Status::kSubmitted, Status::kPicked, Status::kStarted,
                              Status::kFinished, Status::kFailed, Status::kAborted}) {
    if (text == to_string(status)) return status;
  }
  return std::nullopt;
}

struct Target {
  std::string cluster_identifier;
  std::string workgroup_name;
  std::string database;
  std::string db_user;
  std::string secret_arn;
};

// One SQL text: the whole of an ExecuteStatement, or one sub-statement of a batch.
struct Part {
  std::string query_string;               // as submitted (DescribeStatement shows this)
  std::string sql;                        // as sent to PostgreSQL (rewritten, $n parameters)
  std::vector<std::string> param_values;  // for $1..$n
  Status status = Status::kSubmitted;
  double created_at = 0;
  double updated_at = 0;
  std::int64_t duration_ns = -1;
  std::string error;
  std::int64_t query_id = 0;
  bool has_result_set = false;
  std::int64_t result_rows = -1;
  std::int64_t result_size = -1;
  std::shared_ptr<const ResultSet> result;
};

struct Statement {
  std::string id;
  std::uint64_t sequence = 0;  // creation order, for ListStatements
  std::string caller;
  std::string name;
  std::string client_token;
  Target target;
  bool is_batch = false;
  bool with_event = false;
  Json parameters;  // as submitted, or null
  std::vector<Part> parts;
  Status status = Status::kSubmitted;
  double created_at = 0;
  double updated_at = 0;
  std::int64_t duration_ns = -1;
  std::string error;
  std::int64_t pid = 0;
  std::int64_t query_id = 0;
  std::atomic<bool> cancel_requested{false};  // read by the worker without the lock
  std::shared_ptr<pg::Canceller> canceller;   // while a query may be running
  Json execute_response;                      // replayed for a repeated ClientToken
};

void put_target(Json& out, const Target& target) {
  if (!target.cluster_identifier.empty()) out["ClusterIdentifier"] = target.cluster_identifier;
  if (!target.workgroup_name.empty()) out["WorkgroupName"] = target.workgroup_name;
  out["Database"] = target.database;
  if (!target.db_user.empty()) out["DbUser"] = target.db_user;
  if (!target.secret_arn.empty()) out["SecretArn"] = target.secret_arn;
}

// ListStatements' RoleLevel: an assumed-role session ARN belongs to its role.
std::string role_of(const std::string& caller) {
  constexpr std::string_view kAssumed = ":assumed-role/";
  const auto at = caller.find(kAssumed);
  if (at == std::string::npos) return caller;
  const auto slash = caller.find('/', at + kAssumed.size());
  return slash == std::string::npos ? caller : caller.substr(0, slash);
}

// A parsed statement id: the UUID and, for a batch sub-statement, its 1-based index.
struct StatementRef {
  std::string id;
  std::size_t sub = 0;
};

StatementRef parse_id(const Json& request) {
  const std::string id = required_string(request, "Id");
  static const RE2 pattern{std::string(kIdPattern)};
  if (!RE2::FullMatch(id, pattern)) {
    throw validation_error("id must satisfy regex pattern: " + std::string(kIdPattern));
  }
  StatementRef ref;
  const auto colon = id.find(':');
  ref.id = id.substr(0, colon);
  if (colon != std::string::npos) {
    const std::string index = id.substr(colon + 1);
    ref.sub = index.size() > 6 ? 0 : static_cast<std::size_t>(std::stoul(index));
    if (ref.sub == 0) throw not_found();
  }
  return ref;
}

// What running one part produced.
struct PartOutcome {
  bool ok = false;
  bool canceled = false;
  std::string error;
  std::int64_t duration_ns = 0;
  std::int64_t rows = 0;
  std::shared_ptr<const ResultSet> result;
};

// Sends one SQL text and collects every result; the last successful one is the statement's.
// While waiting it polls `cancel_wanted` and, once it says yes, asks the server to cancel (again
// every 200 ms): a cancel request that reaches the backend before the query does is ignored by
// PostgreSQL, so one request is not enough.
PartOutcome run_sql(PGconn* connection, const Part& part, const pg::Canceller& canceller,
                    const std::function<bool()>& cancel_wanted) {
  PartOutcome outcome;
  const auto start = std::chrono::steady_clock::now();
  int sent = 0;
  if (part.param_values.empty()) {
    sent = PQsendQuery(connection, part.sql.c_str());
  } else {
    std::vector<const char*> values;
    values.reserve(part.param_values.size());
    for (const std::string& value : part.param_values) values.push_back(value.c_str());
    sent = PQsendQueryParams(connection, part.sql.c_str(), static_cast<int>(values.size()), nullptr,
                             values.data(), nullptr, nullptr, 0);
  }
  if (sent == 0) {
    outcome.error = pg::connection_error(connection);
    return outcome;
  }
  pg::Result last;
  bool failed = false;
  auto last_cancel = std::chrono::steady_clock::time_point{};
  while (true) {
    if (PQconsumeInput(connection) == 0) {
      if (!failed) outcome.error = pg::connection_error(connection);
      failed = true;
      break;
    }
    if (PQisBusy(connection) != 0) {
      pollfd descriptor{PQsocket(connection), POLLIN, 0};
      poll(&descriptor, 1, 100);
      const auto now = std::chrono::steady_clock::now();
      if (now - last_cancel >= std::chrono::milliseconds(200) && cancel_wanted()) {
        last_cancel = now;
        std::string error;
        if (!canceller.cancel(error)) spdlog::warn("Data API: cancel request failed: {}", error);
      }
      continue;
    }
    pg::Result result(PQgetResult(connection));
    if (!result) break;
    switch (PQresultStatus(result.get())) {
      case PGRES_TUPLES_OK:
      case PGRES_COMMAND_OK:
      case PGRES_EMPTY_QUERY:
        if (!failed) last = std::move(result);
        break;
      case PGRES_COPY_IN:
        PQputCopyEnd(connection, "COPY FROM STDIN is not supported by the Data API");
        break;
      case PGRES_COPY_OUT: {
        char* buffer = nullptr;
        while (PQgetCopyData(connection, &buffer, 0) > 0) PQfreemem(buffer);
        break;
      }
      default:
        if (!failed) {
          failed = true;
          outcome.error = pg::result_error(result.get());
          outcome.canceled = pg::sqlstate(result.get()) == "57014";
        }
        break;
    }
  }
  outcome.duration_ns =
      std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now() - start)
          .count();
  if (failed) return outcome;
  outcome.ok = true;
  if (last && PQresultStatus(last.get()) == PGRES_TUPLES_OK) {
    outcome.result = build_result_set(connection, last.get());
    outcome.rows = PQntuples(last.get());
  } else if (last) {
    outcome.rows = std::strtoll(PQcmdTuples(last.get()), nullptr, 10);
  }
  return outcome;
}

// Runs a transaction-control command; returns the error text ("" on success).
std::string run_command(PGconn* connection, const char* sql) {
  pg::Result result(PQexec(connection, sql));
  if (result && PQresultStatus(result.get()) == PGRES_COMMAND_OK) return "";
  return result ? pg::result_error(result.get()) : pg::connection_error(connection);
}

}  // namespace

// ---- the implementation -------------------------------------------------------------------------

class DataApi::Impl {
 public:
  explicit Impl(DataApiOptions options) : options_(std::move(options)) {
    if (options_.max_active == 0) options_.max_active = 1;
    if (options_.page_rows == 0) options_.page_rows = 1;
    publisher_ = std::thread([this] { publisher_loop(); });
  }

  ~Impl() {
    std::vector<std::shared_ptr<pg::Canceller>> cancellers;
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
      while (!queue_.empty()) {
        auto statement = queue_.front();
        queue_.pop_front();
        statement->cancel_requested = true;
        abort_unstarted_locked(*statement);
      }
      for (auto& [id, statement] : statements_) {
        if (is_terminal(statement->status)) continue;
        statement->cancel_requested = true;
        if (statement->canceller) cancellers.push_back(statement->canceller);
      }
    }
    cancel_all(cancellers);
    work_cv_.notify_all();
    for (std::thread& worker : workers_) worker.join();
    {
      std::lock_guard lock(mutex_);
      publisher_stop_ = true;
    }
    publish_cv_.notify_all();
    publisher_.join();
  }

  Json handle(std::string_view operation, const Json& request, const std::string& caller) {
    if (operation.starts_with("RedshiftData."))
      operation.remove_prefix(13);  // a whole X-Amz-Target
    if (!request.is_object()) {
      throw validation_error("The request body must be a JSON object.");
    }
    if (operation == "ExecuteStatement") return execute(request, caller, false);
    if (operation == "BatchExecuteStatement") return execute(request, caller, true);
    if (operation == "DescribeStatement") return describe(request);
    if (operation == "CancelStatement") return cancel(request);
    if (operation == "GetStatementResult") return get_result(request);
    if (operation == "ListStatements") return list(request, caller);
    throw Error("UnknownOperationException",
                "Operation " + std::string(operation) +
                    " is not supported by tasker-local's Redshift Data API (supported: "
                    "ExecuteStatement, BatchExecuteStatement, DescribeStatement, CancelStatement, "
                    "GetStatementResult, ListStatements).",
                400);
  }

  void wait_idle() {
    std::unique_lock lock(mutex_);
    idle_cv_.wait(lock, [this] { return active_ == 0 && events_.empty() && !publishing_; });
  }

 private:
  // ---- ExecuteStatement / BatchExecuteStatement ----

  Json execute(const Json& request, const std::string& caller, bool batch) {
    auto statement = std::make_shared<Statement>();
    statement->caller = caller;
    statement->is_batch = batch;
    Target& target = statement->target;
    target.cluster_identifier = optional_string(request, "ClusterIdentifier").value_or("");
    target.workgroup_name = optional_string(request, "WorkgroupName").value_or("");
    target.database = optional_string(request, "Database").value_or("");
    target.db_user = optional_string(request, "DbUser").value_or("");
    target.secret_arn = optional_string(request, "SecretArn").value_or("");
    statement->name = optional_string(request, "StatementName").value_or("");
    statement->with_event = optional_bool(request, "WithEvent").value_or(false);
    const auto client_token = optional_string(request, "ClientToken");
    const auto session_id = optional_string(request, "SessionId");
    const auto keep_alive = optional_integer(request, "SessionKeepAliveSeconds");
    const auto result_format = optional_string(request, "ResultFormat");

    std::vector<std::string> sqls;
    if (batch) {
      const Json* list = field(request, "Sqls");
      if (list == nullptr) throw constraint_error("sqls", nullptr, "must not be null");
      if (!list->is_array()) throw type_error("Sqls", "a list of strings", *list);
      for (const Json& sql : *list) {
        if (!sql.is_string()) throw type_error("Sqls", "a list of strings", *list);
        sqls.push_back(sql.get<std::string>());
      }
      if (sqls.empty())
        throw constraint_error("sqls", *list, "must have length greater than or equal to 1");
      if (sqls.size() > kMaxBatchStatements) {
        throw constraint_error("sqls", *list, "must have length less than or equal to 40");
      }
      for (std::size_t i = 0; i < sqls.size(); ++i) {
        check_length("sqls." + std::to_string(i + 1) + ".member", sqls[i], 1, kMaxSqlChars);
      }
    } else {
      sqls.push_back(required_string(request, "Sql"));
      check_length("sql", sqls.front(), 1, kMaxSqlChars);
    }

    std::vector<std::string> names;
    std::vector<std::string> values;
    if (const Json* parameters = field(request, "Parameters")) {
      if (batch) throw validation_error("BatchExecuteStatement does not accept Parameters.");
      if (!parameters->is_array()) throw type_error("Parameters", "a list", *parameters);
      if (parameters->empty()) {
        throw constraint_error("parameters", *parameters,
                               "must have length greater than or equal to 1");
      }
      static const RE2 name_pattern{"^[0-9a-zA-Z_]+$"};
      for (std::size_t i = 0; i < parameters->size(); ++i) {
        const Json& parameter = (*parameters)[i];
        if (!parameter.is_object())
          throw type_error("Parameters", "a list of {name, value}", parameter);
        const std::string member = "parameters." + std::to_string(i + 1) + ".member";
        std::string name = required_string(parameter, "name");
        std::string value = required_string(parameter, "value");
        check_pattern(member + ".name", name, name_pattern, "^[0-9a-zA-Z_]+$");
        check_length(member + ".value", value, 1, std::string::npos);
        if (std::find(names.begin(), names.end(), name) != names.end()) {
          throw validation_error("Parameter " + name + " is specified more than once.");
        }
        names.push_back(std::move(name));
        values.push_back(std::move(value));
      }
      statement->parameters = *parameters;
    }

    if (session_id || keep_alive) {
      throw validation_error(
          "Sessions (SessionId, SessionKeepAliveSeconds) are not supported by tasker-local.");
    }
    if (result_format && *result_format != "JSON") {
      throw validation_error("ResultFormat " + *result_format +
                             " is not supported by tasker-local; use JSON.");
    }
    if (target.cluster_identifier.empty() == target.workgroup_name.empty()) {
      throw validation_error(target.cluster_identifier.empty()
                                 ? "Either ClusterIdentifier or WorkgroupName must be specified."
                                 : "ClusterIdentifier and WorkgroupName cannot both be specified.");
    }
    if (!target.cluster_identifier.empty()) {
      static const RE2 cluster_pattern{"^[a-z]([a-z0-9]|-[a-z0-9])*$"};
      check_length("clusterIdentifier", target.cluster_identifier, 1, 63);
      check_pattern("clusterIdentifier", target.cluster_identifier, cluster_pattern,
                    "^[a-z]([a-z0-9]|-[a-z0-9])*$");
    } else {
      static constexpr std::string_view kWorkgroupPattern =
          "^(([a-z0-9-]+)|(arn:(aws(-[a-z]+)*):redshift-serverless:[a-z]{2}(-gov)?-[a-z]+-\\d{1}:"
          "\\d{12}:workgroup/[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}))$";
      static const RE2 workgroup_pattern{std::string(kWorkgroupPattern)};
      check_length("workgroupName", target.workgroup_name, 3, 128);
      check_pattern("workgroupName", target.workgroup_name, workgroup_pattern, kWorkgroupPattern);
    }
    if (target.database.empty()) throw constraint_error("database", nullptr, "must not be null");
    if (!target.db_user.empty() && !target.secret_arn.empty()) {
      throw validation_error("DbUser and SecretArn cannot both be specified.");
    }
    check_length("statementName", statement->name, 0, kMaxStatementNameChars);
    if (client_token) check_length("clientToken", *client_token, 1, kMaxClientTokenChars);

    // Translate every SQL text now: a parameter the SQL uses but the request lacks is the caller's
    // error, reported before anything runs.
    for (const std::string& sql : sqls) {
      Part part;
      part.query_string = sql;
      const RewriteResult rewritten = rewrite_redshift_sql(sql);
      if (names.empty()) {
        part.sql = rewritten.sql;
      } else {
        BoundSql bound = bind_named_parameters(rewritten.sql, names);
        if (!bound.missing.empty()) {
          throw validation_error("The SQL uses parameter :" + bound.missing.front() +
                                 ", which is not in Parameters.");
        }
        part.sql = std::move(bound.sql);
        for (const std::string& name : bound.order) {
          const auto at = std::find(names.begin(), names.end(), name) - names.begin();
          part.param_values.push_back(values[static_cast<std::size_t>(at)]);
        }
      }
      for (const std::string& rule : rewritten.applied) {
        spdlog::debug("Data API: rewrote Redshift syntax '{}' for PostgreSQL", rule);
      }
      statement->parts.push_back(std::move(part));
    }

    std::lock_guard lock(mutex_);
    const double now = now_seconds();
    evict_expired_locked(now);
    if (client_token) {
      const auto it = client_tokens_.find({caller, *client_token});
      if (it != client_tokens_.end()) {
        if (const auto existing = statements_.find(it->second); existing != statements_.end()) {
          return existing->second->execute_response;
        }
      }
    }
    if (stopping_)
      throw Error("InternalServerException", "The Data API is shutting down.", 500, true);
    if (active_ >= options_.max_active) {
      throw Error("ActiveStatementsExceededException",
                  "The number of active statements exceeds the limit of " +
                      std::to_string(options_.max_active) + ".",
                  400);
    }
    statement->id = random_uuid();
    statement->sequence = ++next_sequence_;
    statement->created_at = statement->updated_at = now;
    for (Part& part : statement->parts) part.created_at = part.updated_at = now;
    Json response = Json::object();
    put_target(response, target);
    response["CreatedAt"] = now;
    response["Id"] = statement->id;
    statement->execute_response = response;
    if (client_token) {
      statement->client_token = *client_token;
      client_tokens_[{caller, *client_token}] = statement->id;
    }
    statements_[statement->id] = statement;
    by_age_.push_back(statement);
    ++active_;
    queue_.push_back(statement);
    if (idle_workers_ == 0 && workers_.size() < options_.max_active) {
      workers_.emplace_back([this] { worker_loop(); });
    }
    work_cv_.notify_one();
    spdlog::debug("Data API: {} {} submitted ({} SQL text(s))", batch ? "batch" : "statement",
                  statement->id, statement->parts.size());
    return response;
  }

  // ---- DescribeStatement ----

  Json describe(const Json& request) {
    const StatementRef ref = parse_id(request);
    std::lock_guard lock(mutex_);
    const Statement& statement = find_locked(ref.id);
    Json out = Json::object();
    put_target(out, statement.target);
    if (ref.sub > 0) {
      if (!statement.is_batch || ref.sub > statement.parts.size()) throw not_found();
      const Part& part = statement.parts[ref.sub - 1];
      put_part(out, part, statement.id + ":" + std::to_string(ref.sub));
      out["RedshiftPid"] = statement.pid;
      return out;
    }
    out["Id"] = statement.id;
    out["Status"] = to_string(statement.status);
    out["CreatedAt"] = statement.created_at;
    out["UpdatedAt"] = statement.updated_at;
    out["Duration"] = statement.duration_ns;
    if (!statement.error.empty()) out["Error"] = statement.error;
    if (!statement.parameters.is_null()) out["QueryParameters"] = statement.parameters;
    out["RedshiftPid"] = statement.pid;
    out["RedshiftQueryId"] = statement.query_id;
    bool has_result_set = false;
    std::int64_t rows = 0;
    std::int64_t size = 0;
    for (const Part& part : statement.parts) {
      has_result_set = has_result_set || part.has_result_set;
      rows += std::max<std::int64_t>(part.result_rows, 0);
      size += std::max<std::int64_t>(part.result_size, 0);
    }
    out["HasResultSet"] = has_result_set;
    const bool finished = statement.status == Status::kFinished;
    out["ResultRows"] = finished ? rows : -1;
    out["ResultSize"] = finished ? size : -1;
    if (statement.is_batch) {
      Json subs = Json::array();
      for (std::size_t i = 0; i < statement.parts.size(); ++i) {
        Json sub = Json::object();
        put_part(sub, statement.parts[i], statement.id + ":" + std::to_string(i + 1));
        subs.push_back(std::move(sub));
      }
      out["SubStatements"] = std::move(subs);
    } else {
      out["QueryString"] = statement.parts.front().query_string;
    }
    return out;
  }

  static void put_part(Json& out, const Part& part, const std::string& id) {
    out["Id"] = id;
    out["Status"] = to_string(part.status);
    out["QueryString"] = part.query_string;
    out["CreatedAt"] = part.created_at;
    out["UpdatedAt"] = part.updated_at;
    out["Duration"] = part.duration_ns;
    if (!part.error.empty()) out["Error"] = part.error;
    out["HasResultSet"] = part.has_result_set;
    out["RedshiftQueryId"] = part.query_id;
    out["ResultRows"] = part.result_rows;
    out["ResultSize"] = part.result_size;
  }

  // ---- CancelStatement ----

  Json cancel(const Json& request) {
    const StatementRef ref = parse_id(request);
    std::shared_ptr<pg::Canceller> canceller;
    {
      std::lock_guard lock(mutex_);
      Statement& statement = find_locked(ref.id);
      if (ref.sub > 0 && (!statement.is_batch || ref.sub > statement.parts.size()))
        throw not_found();
      if (is_terminal(statement.status)) {
        throw validation_error("Could not cancel a query that is already in " +
                               std::string(to_string(statement.status)) +
                               " state with ID: " + request.at("Id").get<std::string>());
      }
      statement.cancel_requested = true;
      if (statement.status == Status::kSubmitted) {
        const auto it = std::find_if(queue_.begin(), queue_.end(), [&](const auto& queued) {
          return queued->id == statement.id;
        });
        if (it != queue_.end()) {
          queue_.erase(it);
          abort_unstarted_locked(statement);
        }
      }
      canceller = statement.canceller;
    }
    if (canceller) {
      std::string error;
      if (!canceller->cancel(error)) {
        throw Error("InternalServerException", "Could not cancel the query: " + error, 500, true);
      }
    }
    return Json{{"Status", true}};
  }

  // ---- GetStatementResult ----

  Json get_result(const Json& request) {
    const StatementRef ref = parse_id(request);
    const auto next_token = optional_string(request, "NextToken");
    std::shared_ptr<const ResultSet> result;
    std::string part_id;
    {
      std::lock_guard lock(mutex_);
      const Statement& statement = find_locked(ref.id);
      if (statement.is_batch && ref.sub == 0) {
        throw validation_error(
            "BatchExecuteStatement result can only be retrieved with sub-statement id.");
      }
      if (ref.sub > 0 && (!statement.is_batch || ref.sub > statement.parts.size()))
        throw not_found();
      const Part& part = statement.parts[ref.sub > 0 ? ref.sub - 1 : 0];
      if (part.status != Status::kFinished || !part.result) throw not_found(std::string(kNoResult));
      result = part.result;
      part_id = ref.sub > 0 ? statement.id + ":" + std::to_string(ref.sub) : statement.id;
    }
    std::size_t offset = 0;
    if (next_token && !next_token->empty()) {
      offset = decode_page_token(*next_token, part_id, result->records.size());
    }
    const std::size_t end = std::min(result->records.size(), offset + options_.page_rows);
    Json records = Json::array();
    for (std::size_t i = offset; i < end; ++i) records.push_back(result->records[i]);
    Json out{{"ColumnMetadata", result->column_metadata},
             {"Records", std::move(records)},
             {"TotalNumRows", result->records.size()}};
    if (end < result->records.size())
      out["NextToken"] = base64_encode("r1|" + part_id + "|" + std::to_string(end));
    return out;
  }

  static std::size_t decode_page_token(const std::string& token, const std::string& part_id,
                                       std::size_t total) {
    const auto invalid = [] { return validation_error("The NextToken is not valid."); };
    const auto decoded = base64_decode(token);
    const std::string prefix = "r1|" + part_id + "|";
    if (!decoded || decoded->rfind(prefix, 0) != 0) throw invalid();
    const std::string digits = decoded->substr(prefix.size());
    if (digits.empty() || digits.size() > 12 ||
        !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; })) {
      throw invalid();
    }
    const auto offset = static_cast<std::size_t>(std::stoull(digits));
    if (offset >= total) throw invalid();
    return offset;
  }

  // ---- ListStatements ----

  Json list(const Json& request, const std::string& caller) {
    const std::string prefix = optional_string(request, "StatementName").value_or("");
    const std::string status_text = optional_string(request, "Status").value_or("FINISHED");
    const auto max_results = optional_integer(request, "MaxResults");
    const auto next_token = optional_string(request, "NextToken");
    const bool role_level = optional_bool(request, "RoleLevel").value_or(true);
    const auto cluster = optional_string(request, "ClusterIdentifier");
    const auto workgroup = optional_string(request, "WorkgroupName");
    const auto database = optional_string(request, "Database");
    check_length("statementName", prefix, 0, kMaxStatementNameChars);
    std::optional<Status> status;
    if (status_text != "ALL") {
      status = parse_status(status_text);
      if (!status) {
        throw constraint_error("status", status_text,
                               "must satisfy enum value set: [SUBMITTED, PICKED, STARTED, "
                               "FINISHED, ABORTED, FAILED, ALL]");
      }
    }
    if (max_results && (*max_results < 0 || *max_results > kMaxListResults)) {
      throw constraint_error("maxResults", *max_results,
                             *max_results < 0 ? "must have value greater than or equal to 0"
                                              : "must have value less than or equal to 100");
    }
    const std::size_t limit =
        max_results && *max_results > 0 ? static_cast<std::size_t>(*max_results) : kMaxListResults;
    std::uint64_t before = UINT64_MAX;
    if (next_token && !next_token->empty()) {
      const auto decoded = base64_decode(*next_token);
      if (!decoded || decoded->rfind("l1|", 0) != 0 || decoded->size() > 24 ||
          decoded->size() == 3 || !std::all_of(decoded->begin() + 3, decoded->end(), [](char c) {
            return c >= '0' && c <= '9';
          })) {
        throw validation_error("The NextToken is not valid.");
      }
      before = std::stoull(decoded->substr(3));
    }

    const std::string caller_key = role_level ? role_of(caller) : caller;
    std::lock_guard lock(mutex_);
    evict_expired_locked(now_seconds());
    Json statements = Json::array();
    std::optional<std::uint64_t> last_sequence;
    bool more = false;
    for (const auto& entry : std::views::reverse(by_age_)) {  // newest first
      const Statement& statement = *entry;
      if (statement.sequence >= before) continue;
      if ((role_level ? role_of(statement.caller) : statement.caller) != caller_key) continue;
      if (statement.name.rfind(prefix, 0) != 0) continue;
      if (status && statement.status != *status) continue;
      if (cluster && statement.target.cluster_identifier != *cluster) continue;
      if (workgroup && statement.target.workgroup_name != *workgroup) continue;
      if (database && statement.target.database != *database) continue;
      if (statements.size() == limit) {
        more = true;
        break;
      }
      statements.push_back(list_entry(statement));
      last_sequence = statement.sequence;
    }
    Json out{{"Statements", std::move(statements)}};
    if (more && last_sequence)
      out["NextToken"] = base64_encode("l1|" + std::to_string(*last_sequence));
    return out;
  }

  static Json list_entry(const Statement& statement) {
    Json entry{{"Id", statement.id},
               {"Status", to_string(statement.status)},
               {"CreatedAt", statement.created_at},
               {"UpdatedAt", statement.updated_at},
               {"IsBatchStatement", statement.is_batch}};
    if (!statement.name.empty()) entry["StatementName"] = statement.name;
    if (statement.is_batch) {
      Json strings = Json::array();
      for (const Part& part : statement.parts) strings.push_back(part.query_string);
      entry["QueryStrings"] = std::move(strings);
    } else {
      entry["QueryString"] = statement.parts.front().query_string;
    }
    if (!statement.parameters.is_null()) entry["QueryParameters"] = statement.parameters;
    if (!statement.target.secret_arn.empty()) entry["SecretArn"] = statement.target.secret_arn;
    return entry;
  }

  // ---- the registry ----

  Statement& find_locked(const std::string& id) {
    const auto it = statements_.find(id);
    if (it == statements_.end()) throw not_found();
    return *it->second;
  }

  void evict_expired_locked(double now) {
    while (!by_age_.empty() && is_terminal(by_age_.front()->status) &&
           by_age_.front()->created_at < now - kRetentionSeconds) {
      const auto& statement = by_age_.front();
      if (!statement->client_token.empty())
        client_tokens_.erase({statement->caller, statement->client_token});
      statements_.erase(statement->id);
      by_age_.pop_front();
    }
  }

  // ---- execution (worker threads) ----

  void worker_loop() {
    std::unique_lock lock(mutex_);
    while (true) {
      ++idle_workers_;
      work_cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      --idle_workers_;
      if (queue_.empty()) return;  // stopping
      auto statement = queue_.front();
      queue_.pop_front();
      lock.unlock();
      run(statement);
      lock.lock();
    }
  }

  void run(const std::shared_ptr<Statement>& statement) {
    {
      std::lock_guard lock(mutex_);
      if (statement->cancel_requested) return abort_unstarted_locked(*statement);
      set_status_locked(*statement, Status::kPicked);
    }
    std::string error;
    pg::Connection connection = pg::connect(options_.pg_conninfo, statement->target.database,
                                            options_.connect_timeout_seconds, error);
    {
      std::lock_guard lock(mutex_);
      if (!connection) {
        statement->parts.front().error = error;
        return finish_locked(*statement, Status::kFailed, error, 0);
      }
      if (statement->cancel_requested) return abort_unstarted_locked(*statement);
      statement->pid = PQbackendPID(connection.get());
      statement->canceller = std::make_shared<pg::Canceller>(connection.get());
      set_status_locked(*statement, Status::kStarted);
    }

    std::int64_t total_ns = 0;
    Status final_status = Status::kFinished;
    std::string final_error;
    if (statement->is_batch) {
      if (std::string begin_error = run_command(connection.get(), "BEGIN"); !begin_error.empty()) {
        std::lock_guard lock(mutex_);
        statement->parts.front().error = begin_error;
        return finish_locked(*statement, Status::kFailed, begin_error, 0);
      }
    }
    for (std::size_t i = 0; i < statement->parts.size(); ++i) {
      Part& part = statement->parts[i];  // sql and param_values never change after submission
      {
        std::lock_guard lock(mutex_);
        if (statement->cancel_requested) {
          final_status = Status::kAborted;
          break;
        }
        part.query_id = statement->query_id = ++next_query_id_;
        part.status = Status::kStarted;
        part.updated_at = statement->updated_at = now_seconds();
      }
      PartOutcome outcome = run_sql(connection.get(), part, *statement->canceller,
                                    [&statement] { return statement->cancel_requested.load(); });
      total_ns += outcome.duration_ns;
      std::lock_guard lock(mutex_);
      part.updated_at = now_seconds();
      part.duration_ns = outcome.duration_ns;
      if (outcome.ok) {
        part.status = Status::kFinished;
        part.has_result_set = outcome.result != nullptr;
        part.result_rows = outcome.rows;
        part.result_size = outcome.result ? outcome.result->size_bytes : 0;
        part.result = std::move(outcome.result);
        continue;
      }
      if (outcome.canceled && statement->cancel_requested) {
        part.status = Status::kAborted;
        final_status = Status::kAborted;
      } else {
        part.status = Status::kFailed;
        part.error = outcome.error;
        final_status = Status::kFailed;
        final_error = outcome.error;
      }
      break;
    }
    if (statement->is_batch) {
      const char* end = final_status == Status::kFinished ? "COMMIT" : "ROLLBACK";
      if (std::string end_error = run_command(connection.get(), end);
          !end_error.empty() && final_status == Status::kFinished) {
        final_status = Status::kFailed;
        final_error = end_error;
        std::lock_guard lock(mutex_);
        statement->parts.back().status = Status::kFailed;
        statement->parts.back().error = end_error;
      }
    }
    std::lock_guard lock(mutex_);
    finish_locked(*statement, final_status, final_error, total_ns);
    // The connection closes when this function returns, after finish_locked dropped the canceller.
  }

  void set_status_locked(Statement& statement, Status status) {
    statement.status = status;
    statement.updated_at = now_seconds();
    for (Part& part : statement.parts) {
      if (part.status == Status::kSubmitted || part.status == Status::kPicked) {
        part.status = status == Status::kStarted ? Status::kPicked : status;
        part.updated_at = statement.updated_at;
      }
    }
  }

  void abort_unstarted_locked(Statement& statement) {
    finish_locked(statement, Status::kAborted, "", 0);
  }

  // Moves the statement to a terminal status: parts that did not finish become ABORTED, or FAILED
  // when they carry the error; the event is queued and waiters are woken.
  void finish_locked(Statement& statement, Status status, const std::string& error,
                     std::int64_t duration_ns) {
    const double now = now_seconds();
    for (Part& part : statement.parts) {
      if (is_terminal(part.status)) continue;
      part.status = part.error.empty() ? Status::kAborted : Status::kFailed;
      part.updated_at = now;
    }
    if (!statement.is_batch) {
      Part& only = statement.parts.front();
      only.status = status;
      only.error = error;
    }
    statement.status = status;
    statement.error = error;
    statement.duration_ns = duration_ns;
    statement.canceller.reset();
    statement.updated_at = now;
    --active_;
    spdlog::debug("Data API: {} {}", statement.id, to_string(status));
    if (statement.with_event) events_.push_back(completion_event(statement));
    publish_cv_.notify_one();
    idle_cv_.notify_all();
  }

  services::EventEntry completion_event(const Statement& statement) const {
    std::int64_t rows = -1;
    if (statement.status == Status::kFinished) {
      rows = 0;
      for (const Part& part : statement.parts) rows += std::max<std::int64_t>(part.result_rows, 0);
    }
    const auto expire_at = static_cast<std::int64_t>(now_seconds() + kRetentionSeconds);
    const Json detail{{"principal", statement.caller},
                      {"statementName", statement.name},
                      {"statementId", statement.id},
                      {"redshiftQueryId", statement.query_id != 0 ? statement.query_id : -1},
                      {"state", to_string(statement.status)},
                      {"rows", rows},
                      {"expireAt", expire_at}};
    services::EventEntry entry;
    entry.source = "aws.redshift-data";
    entry.detail_type = "Redshift Data Statement Status Change";
    entry.detail = dump_json(detail);
    entry.resources.push_back(resource_arn(statement.target));
    return entry;
  }

  std::string resource_arn(const Target& target) const {
    if (!target.cluster_identifier.empty()) {
      return "arn:aws:redshift:" + options_.region + ":" + options_.account_id +
             ":cluster:" + target.cluster_identifier;
    }
    if (target.workgroup_name.rfind("arn:", 0) == 0) return target.workgroup_name;
    return "arn:aws:redshift-serverless:" + options_.region + ":" + options_.account_id +
           ":workgroup/" + name_uuid(target.workgroup_name);
  }

  static void cancel_all(const std::vector<std::shared_ptr<pg::Canceller>>& cancellers) {
    for (const auto& canceller : cancellers) {
      std::string error;
      if (!canceller->cancel(error)) spdlog::warn("Data API: cancel at shutdown failed: {}", error);
    }
  }

  // ---- events (publisher thread) ----

  void publisher_loop() {
    std::unique_lock lock(mutex_);
    while (true) {
      publish_cv_.wait(lock, [this] { return publisher_stop_ || !events_.empty(); });
      if (events_.empty()) return;  // stopping, and everything is delivered
      services::EventEntry event = std::move(events_.front());
      events_.pop_front();
      publishing_ = true;
      lock.unlock();
      if (options_.publish) {
        try {
          options_.publish(event);
        } catch (const std::exception& e) {
          spdlog::warn("Data API: publishing the completion event failed: {}", e.what());
        }
      }
      lock.lock();
      publishing_ = false;
      idle_cv_.notify_all();
    }
  }

  DataApiOptions options_;
  std::mutex mutex_;
  std::condition_variable work_cv_;
  std::condition_variable idle_cv_;
  std::condition_variable publish_cv_;
  std::unordered_map<std::string, std::shared_ptr<Statement>> statements_;
  std::deque<std::shared_ptr<Statement>> by_age_;  // creation order
  std::map<std::pair<std::string, std::string>, std::string>
      client_tokens_;  // (caller, token) → id
  std::deque<std::shared_ptr<Statement>> queue_;
  std::size_t active_ = 0;  // statements not yet terminal
  std::vector<std::thread> workers_;
  std::size_t idle_workers_ = 0;
  std::deque<services::EventEntry> events_;
  bool publishing_ = false;
  bool stopping_ = false;
  bool publisher_stop_ = false;
  std::uint64_t next_sequence_ = 0;
  std::int64_t next_query_id_ = 100000;
  std::thread publisher_;
};

DataApi::DataApi(DataApiOptions options) : impl_(std::make_unique<Impl>(std::move(options))) {}

DataApi::~DataApi() = default;

Json DataApi::handle(std::string_view operation, const Json& request,
                     const std::string& caller_arn) {
  try {
    return impl_->handle(operation, request, caller_arn);
  } catch (const Error&) {
    throw;
  } catch (const std::exception& e) {
    throw Error("InternalServerException", e.what(), 500, true);
  }
}

void DataApi::wait_idle() {
  impl_->wait_idle();
}

}  // namespace rstasker::local
