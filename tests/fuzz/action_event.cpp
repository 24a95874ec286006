// Fuzz target: any bytes as an invocation's event (action events mostly, by the corpus).
#include <cstddef>
#include <cstdint>

#include "fuzz/tasker_world.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  rstasker::fuzz::handle({reinterpret_cast<const char*>(data), size});
  return 0;
}
