// Signed calls from tasker-local to moto.
#include "local/moto_client.hpp"

#include <chrono>
#include <utility>

#include "rstasker/aws/sigv4.hpp"
#include "rstasker/common/error.hpp"

namespace rstasker::local {

MotoClient::MotoClient(std::string url, std::string region, aws::Credentials credentials,
                       std::shared_ptr<aws::HttpTransport> transport)
    : url_(std::move(url)),
      region_(std::move(region)),
      credentials_(std::move(credentials)),
      transport_(std::move(transport)) {
  while (!url_.empty() && url_.back() == '/') url_.pop_back();
}

aws::HttpResponse MotoClient::send(std::string_view method, std::string_view signing_name,
                                   std::string_view path_and_query, std::string body,
                                   const Deadline& deadline) const {
  aws::HttpRequest request;
  request.method = std::string(method);
  request.url = url_ + std::string(path_and_query);
  request.body = std::move(body);
  if (!request.body.empty()) request.set_header("Content-Type", "application/json");
  aws::Signer(region_, std::string(signing_name))
      .sign(request, credentials_, std::chrono::system_clock::now());
  return transport_->send(request, deadline);
}

Json MotoClient::rest_json(std::string_view method, std::string_view path_and_query,
                           const Json* body, const Deadline& deadline) const {
  aws::HttpResponse response = send(method, "lambda", path_and_query,
                                    body != nullptr ? dump_json(*body) : std::string(), deadline);
  if (response.status < 200 || response.status >= 300) throw aws::error_from_response(response);
  if (response.body.empty()) return Json::object();
  return parse_json(response.body, "moto's answer", error_names::kInternalError);
}

std::shared_ptr<aws::JsonClient> MotoClient::json_client(aws::JsonProtocol protocol,
                                                         const aws::ServiceSpec& service) const {
  aws::Endpoint endpoint{url_, region_, std::string(service.signing_name)};
  return std::make_shared<aws::JsonClient>(protocol, std::move(endpoint), credentials_, transport_);
}

std::string encode_path_segment(std::string_view text) {
  static constexpr char kHex[] = "0123456789ABCDEF";
  std::string out;
  for (char c : text) {
    auto byte = static_cast<unsigned char>(c);
    if ((byte >= 'A' && byte <= 'Z') || (byte >= 'a' && byte <= 'z') ||
        (byte >= '0' && byte <= '9') || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(c);
    } else {
      out.push_back('%');
      out.push_back(kHex[byte >> 4]);
      out.push_back(kHex[byte & 15]);
    }
  }
  return out;
}

std::string decode_percent(std::string_view text) {
  auto hex = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::string out;
  for (std::size_t i = 0; i < text.size(); ++i) {
    if (text[i] == '%' && i + 2 < text.size() && hex(text[i + 1]) >= 0 && hex(text[i + 2]) >= 0) {
      out.push_back(static_cast<char>(hex(text[i + 1]) * 16 + hex(text[i + 2])));
      i += 2;
    } else {
      out.push_back(text[i]);
    }
  }
  return out;
}

}  // namespace rstasker::local
