// Where things are, for tests: the checkout, the build directory, and ../shared beside it.
#pragma once

#include <filesystem>
#include <optional>

namespace rstasker::testing {

std::filesystem::path source_dir();
std::filesystem::path binary_dir();
// ../shared beside the checkout (or $RSTASKER_SHARED_DIR), or nullopt when it is absent (a user's
// clone has none).
std::optional<std::filesystem::path> shared_dir();
// Reads a whole file; fails the current test when it cannot.
std::string read_file(const std::filesystem::path& path);

}  // namespace rstasker::testing
