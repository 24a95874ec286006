// Fuzz target: an SQS completion batch whose record bodies are the input (split at NUL bytes),
// and the input itself as a whole batch.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "fuzz/tasker_world.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view input(reinterpret_cast<const char*>(data), size);
  rstasker::Json records = rstasker::Json::array();
  std::size_t start = 0;
  for (int i = 0; start <= input.size() && i < 10; ++i) {
    std::size_t end = input.find('\0', start);
    if (end == std::string_view::npos) end = input.size();
    records.push_back({{"messageId", "m" + std::to_string(i)},
                       {"eventSource", "aws:sqs"},
                       {"body", std::string(input.substr(start, end - start))}});
    start = end + 1;
  }
  rstasker::fuzz::handle(rstasker::dump_json({{"Records", records}}));
  rstasker::fuzz::handle(input);
  return 0;
}
