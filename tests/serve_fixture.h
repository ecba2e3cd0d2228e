// A tiny model served in-process on a free loopback port, and a raw HTTP client for the tests
// that need to see (or cut) a response byte by byte.
#pragma once

#include "serve/server.h"
#include "tiny_model.h"

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <thread>

namespace distill::test {

class RunningServer {
public:
  RunningServer(const TinyModel& m, ServeOptions o) {
    o.host = "127.0.0.1", o.port = 0;
    if (o.model_name.empty()) o.model_name = "tiny";
    server_ = std::make_unique<OpenAIServer>(m.model, m.tok, o);
    port_ = server_->bind();
    thread_ = std::thread([this] { server_->listen(); });
  }
  ~RunningServer() {
    server_->stop();
    thread_.join();
  }
  int port() const { return port_; }

private:
  std::unique_ptr<OpenAIServer> server_;
  int port_;
  std::thread thread_;
};

// A greedy one-message chat request for the model "tiny".
inline nlohmann::json chat_body(const std::string& text, int max_tokens, bool stream = false) {
  return {{"model", "tiny"}, {"messages", {{{"role", "user"}, {"content", text}}}}, {"max_tokens", max_tokens},
          {"temperature", 0}, {"stream", stream}};
}

// POST with the key (if any) as a bearer token.
inline httplib::Result post(httplib::Client& c, const std::string& path, const std::string& body, const std::string& key = "") {
  httplib::Headers h;
  if (!key.empty()) h.emplace("Authorization", "Bearer " + key);
  return c.Post(path.c_str(), h, body, "application/json");
}

// A TCP connection to the loopback port, or -1.
inline int connect_loopback(int port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(uint16_t(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Sends `request` (a whole HTTP/1.1 request) and reads the answer until the server closes or
// `max_bytes` arrived (then closes: a client that leaves early; 0: leaves right after sending).
inline std::string raw_http(int port, const std::string& request, size_t max_bytes = SIZE_MAX) {
  const int fd = connect_loopback(port);
  if (fd < 0) return "";
  timeval tv{60, 0};
  ::setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  ::send(fd, request.data(), request.size(), MSG_NOSIGNAL);
  std::string out;
  char buf[4096];
  ssize_t n;
  while (out.size() < max_bytes && (n = ::recv(fd, buf, sizeof buf, 0)) > 0) out.append(buf, size_t(n));
  ::close(fd);
  return out;
}

inline std::string post_request(const std::string& path, const std::string& body, const std::string& extra_headers = "") {
  return "POST " + path + " HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nConnection: close\r\n" +
         extra_headers + "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
}

struct RawResponse {
  int status = 0;
  std::string headers, body;  // body de-chunked
};

inline RawResponse parse_response(const std::string& raw) {
  RawResponse r;
  const size_t head_end = raw.find("\r\n\r\n");
  if (raw.size() < 12 || head_end == std::string::npos) return r;
  r.status = std::atoi(raw.c_str() + 9);
  r.headers = raw.substr(0, head_end);
  std::string body = raw.substr(head_end + 4);
  if (r.headers.find("Transfer-Encoding: chunked") == std::string::npos) {
    r.body = body;
    return r;
  }
  size_t i = 0;
  while (i < body.size()) {
    const size_t eol = body.find("\r\n", i);
    if (eol == std::string::npos) break;
    const size_t len = std::stoul(body.substr(i, eol - i), nullptr, 16);
    if (len == 0) break;
    r.body += body.substr(eol + 2, len);
    i = eol + 2 + len + 2;
  }
  return r;
}

}  // namespace distill::test
