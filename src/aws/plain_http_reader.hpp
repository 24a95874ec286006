// The HTTP/1.1 response reader of the plain transport (the Lambda Runtime API's client), private
// to the aws module and its fuzz target: it parses bytes a server sent, so it must refuse anything
// malformed or oversized with an Error, never crash or read past its limits.
#pragma once

#include <cstddef>
#include <string>

#include "rstasker/aws/http.hpp"
#include "rstasker/common/deadline.hpp"

namespace rstasker::aws::detail {

// Reads one response from the socket `fd`; `received_any` tells the caller whether a failure
// happened before a single byte came back (a kept-alive connection the server had closed: safe
// to retry once). Throws Error (NetworkError, DeadlineExceeded) for a malformed, truncated or
// oversized answer (more than `max_bytes` of body).
class ResponseReader {
 public:
  ResponseReader(int fd, const Deadline& deadline, std::string origin, std::size_t max_bytes)
      : fd_(fd), deadline_(deadline), origin_(std::move(origin)), max_bytes_(max_bytes) {}

  // `head`: the request was HEAD, so the answer has no body whatever its headers say.
  // `keep_alive` receives whether the connection may carry another request.
  HttpResponse read(bool head, bool* keep_alive);

  bool received_any() const { return received_any_; }

 private:
  bool fill();
  std::string read_line();
  void read_exact(std::size_t size, std::string& out);
  void take(std::size_t size, std::string& out);

  int fd_;
  const Deadline& deadline_;
  std::string origin_;
  std::size_t max_bytes_;
  std::string buffer_;
  std::size_t offset_ = 0;
  bool received_any_ = false;
};

}  // namespace rstasker::aws::detail
