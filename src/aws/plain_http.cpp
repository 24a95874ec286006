// A small HTTP/1.1 client over a socket, for the Lambda Runtime API: loopback, plain HTTP, one
// request at a time. It keeps the process from loading libcurl before the first event arrives.
#include <netdb.h>
#include <poll.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstring>
#include <map>
#include <mutex>

#include "aws/plain_http_reader.hpp"
#include "rstasker/aws/http.hpp"
#include "rstasker/common/error.hpp"

namespace rstasker::aws {

namespace {

class Socket {
 public:
  Socket() = default;
  explicit Socket(int fd) : fd_(fd) {}
  Socket(Socket&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Socket& operator=(Socket&& other) noexcept {
    if (this != &other) {
      reset();
      fd_ = std::exchange(other.fd_, -1);
    }
    return *this;
  }
  ~Socket() { reset(); }
  int fd() const { return fd_; }
  bool open() const { return fd_ >= 0; }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

 private:
  int fd_ = -1;
};

Error network_error(const std::string& origin, const std::string& what) {
  return Error(error_names::kNetworkError, "request to " + origin + " failed: " + what, 0, true);
}

// Waits for `events` on the socket until the deadline; throws DeadlineExceeded when it passes.
void wait_for(int fd, short events, const Deadline& deadline, const std::string& origin) {
  while (true) {
    pollfd p{fd, events, 0};
    int timeout = -1;
    if (!deadline.unbounded()) {
      auto left = deadline.remaining().count();
      if (left <= 0) {
        throw Error(error_names::kDeadlineExceeded,
                    "the invocation's deadline passed while calling " + origin);
      }
      timeout = static_cast<int>(std::min<std::int64_t>(left, 1 << 30));
    }
    int ready = ::poll(&p, 1, timeout);
    if (ready > 0) return;
    if (ready < 0 && errno != EINTR) throw network_error(origin, std::strerror(errno));
  }
}

Socket connect_to(const UrlParts& url, const Deadline& deadline, const std::string& origin) {
  std::string host = url.authority;
  std::string port = "80";
  if (auto colon = host.rfind(':'); colon != std::string::npos) {
    port = host.substr(colon + 1);
    host = host.substr(0, colon);
  }
  addrinfo hints{};
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* found = nullptr;
  if (int rc = ::getaddrinfo(host.c_str(), port.c_str(), &hints, &found); rc != 0) {
    throw network_error(origin, gai_strerror(rc));
  }
  std::unique_ptr<addrinfo, decltype(&::freeaddrinfo)> guard(found, &::freeaddrinfo);
  std::string last_error = "no address";
  for (addrinfo* a = found; a != nullptr; a = a->ai_next) {
    Socket s(::socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC | SOCK_NONBLOCK, a->ai_protocol));
    if (!s.open()) continue;
    if (::connect(s.fd(), a->ai_addr, a->ai_addrlen) == 0) return s;
    if (errno != EINPROGRESS) {
      last_error = std::strerror(errno);
      continue;
    }
    wait_for(s.fd(), POLLOUT, deadline, origin);
    int error = 0;
    socklen_t length = sizeof error;
    ::getsockopt(s.fd(), SOL_SOCKET, SO_ERROR, &error, &length);
    if (error == 0) return s;
    last_error = std::strerror(error);
  }
  throw network_error(origin, "cannot connect: " + last_error);
}

void send_all(int fd, std::string_view data, const Deadline& deadline, const std::string& origin) {
  while (!data.empty()) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n > 0) {
      data.remove_prefix(static_cast<std::size_t>(n));
    } else if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
      wait_for(fd, POLLOUT, deadline, origin);
    } else {
      throw network_error(origin, std::string("send: ") + std::strerror(errno));
    }
  }
}

}  // namespace

namespace detail {

HttpResponse ResponseReader::read(bool head, bool* keep_alive) {
  HttpResponse response;
  std::string line = read_line();
  // "HTTP/1.1 200 OK"
  auto space = line.find(' ');
  if (!line.starts_with("HTTP/1.") || space == std::string::npos) {
    throw network_error(origin_, "malformed status line");
  }
  std::string_view code = std::string_view(line).substr(space + 1, 3);
  std::from_chars(code.data(), code.data() + code.size(), response.status);
  *keep_alive = !line.starts_with("HTTP/1.0");
  std::size_t content_length = 0;
  bool has_length = false;
  bool chunked = false;
  for (line = read_line(); !line.empty(); line = read_line()) {
    auto colon = line.find(':');
    if (colon == std::string::npos) continue;
    std::string name = line.substr(0, colon);
    std::string value = line.substr(colon + 1);
    value.erase(0, value.find_first_not_of(" \t"));
    if (strcasecmp(name.c_str(), "content-length") == 0) {
      has_length = std::from_chars(value.data(), value.data() + value.size(), content_length).ec ==
                   std::errc();
    } else if (strcasecmp(name.c_str(), "transfer-encoding") == 0) {
      chunked = strcasecmp(value.c_str(), "chunked") == 0;
    } else if (strcasecmp(name.c_str(), "connection") == 0) {
      *keep_alive = strcasecmp(value.c_str(), "close") != 0;
    }
    response.headers.emplace_back(std::move(name), std::move(value));
  }
  if (head || response.status == 204 || response.status == 304) {
    return response;
  }
  if (chunked) {
    while (true) {
      std::string size_line = read_line();
      std::size_t size = 0;
      std::from_chars(size_line.data(), size_line.data() + size_line.size(), size, 16);
      if (size == 0) {
        while (!read_line().empty()) {
        }
        break;
      }
      read_exact(size, response.body);
      read_line();
    }
  } else if (has_length) {
    read_exact(content_length, response.body);
  } else {
    while (fill()) {  // until the server closes
    }
    take(buffer_.size(), response.body);
    *keep_alive = false;
  }
  return response;
}

bool ResponseReader::fill() {
  char chunk[16384];
  while (true) {
    ssize_t n = ::recv(fd_, chunk, sizeof chunk, 0);
    if (n > 0) {
      received_any_ = true;
      if (buffer_.size() + static_cast<std::size_t>(n) > max_bytes_ + 65536) {
        throw Error(error_names::kNetworkError, "response from " + origin_ + " exceeds " +
                                                    std::to_string(max_bytes_) + " bytes");
      }
      buffer_.append(chunk, static_cast<std::size_t>(n));
      return true;
    }
    if (n == 0) return false;
    if (errno == EAGAIN || errno == EINTR) {
      wait_for(fd_, POLLIN, deadline_, origin_);
      continue;
    }
    throw network_error(origin_, std::string("recv: ") + std::strerror(errno));
  }
}

std::string ResponseReader::read_line() {
  std::size_t end;
  while ((end = buffer_.find("\r\n", offset_)) == std::string::npos) {
    if (!fill()) throw network_error(origin_, "connection closed mid-response");
  }
  std::string line = buffer_.substr(offset_, end - offset_);
  offset_ = end + 2;
  return line;
}

void ResponseReader::read_exact(std::size_t size, std::string& out) {
  if (out.size() + size > max_bytes_) {
    throw Error(error_names::kNetworkError,
                "response from " + origin_ + " exceeds " + std::to_string(max_bytes_) + " bytes");
  }
  while (buffer_.size() - offset_ < size) {
    if (!fill()) throw network_error(origin_, "connection closed mid-body");
  }
  take(size, out);
}

void ResponseReader::take(std::size_t size, std::string& out) {
  size = std::min(size, buffer_.size() - offset_);
  out.append(buffer_, offset_, size);
  offset_ += size;
}

}  // namespace detail

namespace {

using detail::ResponseReader;

class PlainHttpTransport final : public HttpTransport {
 public:
  explicit PlainHttpTransport(std::size_t max_response_bytes) : max_bytes_(max_response_bytes) {}

  HttpResponse send(const HttpRequest& request, const Deadline& deadline) override {
    UrlParts url = split_url(request.url);
    const std::string origin = url.scheme + "://" + url.authority;
    if (url.scheme != "http") {
      throw Error(error_names::kInternalError, "the plain HTTP transport cannot reach " + origin);
    }
    if (deadline.expired()) {
      throw Error(error_names::kDeadlineExceeded,
                  "no time left in the invocation to call " + origin);
    }
    check_header_fields(request);
    std::string wire = serialise(request, url);
    std::lock_guard lock(mutex_);
    Socket& connection = connections_[origin];
    // A kept-alive connection may have been closed by the server since its last use: when it
    // fails before any byte of the answer arrived, the request is sent again on a new one.
    for (int attempt = 0;; ++attempt) {
      bool reused = connection.open();
      if (!reused) connection = connect_to(url, deadline, origin);
      ResponseReader reader(connection.fd(), deadline, origin, max_bytes_);
      try {
        send_all(connection.fd(), wire, deadline, origin);
        bool keep_alive = true;
        HttpResponse response = reader.read(request.method == "HEAD", &keep_alive);
        if (!keep_alive) connection.reset();
        return response;
      } catch (const Error& e) {
        connection.reset();
        bool stale = reused && !reader.received_any() && e.name() == error_names::kNetworkError;
        if (!stale || attempt > 0) throw;
      }
    }
  }

 private:
  static std::string serialise(const HttpRequest& request, const UrlParts& url) {
    std::string wire = request.method + " " + url.path;
    if (!url.query.empty()) wire += "?" + url.query;
    wire += " HTTP/1.1\r\nHost: " + url.authority + "\r\n";
    for (const auto& [name, value] : request.headers) wire += name + ": " + value + "\r\n";
    if (request.method != "GET" || !request.body.empty()) {
      wire += "Content-Length: " + std::to_string(request.body.size()) + "\r\n";
    }
    wire += "\r\n";
    wire += request.body;
    return wire;
  }

  std::size_t max_bytes_;
  std::mutex mutex_;
  std::map<std::string, Socket> connections_;
};

}  // namespace

std::unique_ptr<HttpTransport> make_plain_http_transport(std::size_t max_response_bytes) {
  return std::make_unique<PlainHttpTransport>(max_response_bytes);
}

}  // namespace rstasker::aws
