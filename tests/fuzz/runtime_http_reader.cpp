// Fuzz target: the plain HTTP reader of the Lambda Runtime API client, fed the input as the
// server's answer through a socket pair. It must answer with a response or a named Error, never
// read past its limit (64 KiB of body here) or crash.
#include <sys/socket.h>
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>

#include "aws/plain_http_reader.hpp"
#include "rstasker/common/error.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  // Larger inputs would not fit the socket buffer before the reader starts.
  if (size > 100000) return 0;
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, fds) != 0) std::abort();
  int buffer = 1 << 20;
  setsockopt(fds[0], SOL_SOCKET, SO_SNDBUF, &buffer, sizeof buffer);
  setsockopt(fds[1], SOL_SOCKET, SO_RCVBUF, &buffer, sizeof buffer);
  std::size_t sent = 0;
  while (sent < size) {
    const ssize_t n = ::send(fds[0], data + sent, size - sent, MSG_NOSIGNAL);
    if (n <= 0) std::abort();
    sent += static_cast<std::size_t>(n);
  }
  ::shutdown(fds[0], SHUT_WR);
  constexpr std::size_t kMaxBody = 64 * 1024;
  const rstasker::Deadline deadline = rstasker::Deadline::after(std::chrono::seconds(10));
  for (bool head : {false}) {
    rstasker::aws::detail::ResponseReader reader(fds[1], deadline, "http://fuzz", kMaxBody);
    try {
      bool keep_alive = true;
      rstasker::aws::HttpResponse response = reader.read(head, &keep_alive);
      if (response.body.size() > kMaxBody) {
        std::fprintf(stderr, "a body of %zu bytes passed the limit\n", response.body.size());
        std::abort();
      }
    } catch (const rstasker::Error&) {
    }
  }
  ::close(fds[0]);
  ::close(fds[1]);
  return 0;
}
