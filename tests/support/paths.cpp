// Test paths, fixed at build time from CMake's source and binary directories.
#include "support/paths.hpp"

#include <gtest/gtest.h>

#include <cstdlib>
#include <fstream>
#include <sstream>

namespace rstasker::testing {

std::filesystem::path source_dir() {
  return RSTASKER_SOURCE_DIR;
}
std::filesystem::path binary_dir() {
  return RSTASKER_BINARY_DIR;
}

std::optional<std::filesystem::path> shared_dir() {
  // RSTASKER_SHARED_DIR stands in for ../shared (the tests of the skip rules point it nowhere).
  const char* given = std::getenv("RSTASKER_SHARED_DIR");
  auto dir = given != nullptr && *given != '\0' ? std::filesystem::path(given)
                                                : source_dir().parent_path() / "shared";
  if (std::filesystem::is_directory(dir)) return dir;
  return std::nullopt;
}

std::string read_file(const std::filesystem::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    ADD_FAILURE() << "cannot read " << path;
    return {};
  }
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

}  // namespace rstasker::testing
