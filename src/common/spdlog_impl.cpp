// spdlog's implementation, compiled once for the whole project. Everywhere else spdlog's headers
// are used as for its compiled library (SPDLOG_COMPILED_LIB: declarations only), so no other file
// compiles the logger again, and the binary needs no libspdlog.so (src/common/CMakeLists.txt).
#include <spdlog/common-inl.h>
#include <spdlog/details/backtracer-inl.h>
#include <spdlog/details/log_msg-inl.h>
#include <spdlog/details/log_msg_buffer-inl.h>
#include <spdlog/details/os-inl.h>
#include <spdlog/details/periodic_worker-inl.h>
#include <spdlog/details/registry-inl.h>
#include <spdlog/logger-inl.h>
#include <spdlog/pattern_formatter-inl.h>
#include <spdlog/sinks/ansicolor_sink-inl.h>
#include <spdlog/sinks/base_sink-inl.h>
#include <spdlog/sinks/sink-inl.h>
#include <spdlog/sinks/stdout_sinks-inl.h>
#include <spdlog/spdlog-inl.h>

#include <mutex>

// The sink templates in use: log.cpp's stderr sink, the registry's default logger, and the base
// of sinks written elsewhere (the tests capture log lines with one).
template class spdlog::sinks::base_sink<std::mutex>;
template class spdlog::sinks::stderr_sink<spdlog::details::console_mutex>;
template class spdlog::sinks::ansicolor_stdout_sink<spdlog::details::console_mutex>;
