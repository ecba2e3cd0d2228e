// The connection layer under OpenAIServer: cpp-httplib parses and routes, this file owns the
// sockets so that a stranger cannot hold the server with slow or endless requests.
//
// httplib 0.11 bounds each read by a timeout but not a request as a whole: a client that sends one
// header byte every few seconds (slowloris) keeps a worker thread forever, endless header lines
// grow memory, and every accepted connection waits in an unbounded queue. Here:
//   - connections beyond `max_connections` are answered 503 at once and closed (HTTP) or closed
//     (HTTPS, which cannot answer before a handshake);
//   - the TLS handshake, request line, headers and body must all arrive within `request_read_s`
//     of the connection (or, on a kept-alive connection, of the request's first byte);
//   - the header is at most `max_header_bytes`, the body at most `max_body_bytes` (+ chunk framing);
//   - a response write that makes no progress for `write_stall_s` ends the connection;
//   - once a route handler starts, the connection's deadline becomes the request's own
//     (`enter_request_handler`), which the handler bounds by --request-timeout.
// A request that timed out or overflowed while being read is answered 408 / 431 (see
// request_read_failure) when the socket still takes the answer.
#pragma once

#include <atomic>
#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

namespace httplib {
class Server;
}

namespace distill {

struct HttpLimits {
  int64_t max_connections = 256;
  double request_read_s = 30;      // handshake + request line + headers + body
  double keep_alive_s = 5;         // idle wait for the next request on a connection
  int64_t keep_alive_requests = 100;
  double write_stall_s = 30;       // a write that makes no progress this long ends the connection
  double read_stall_s = 10;        // ...and so does a read
  size_t max_header_bytes = 64 << 10;
  size_t max_body_bytes = 8 << 20;
};

// Counters for /metrics.
struct HttpTransportStats {
  std::atomic<int64_t> connections_open{0}, connections_refused{0}, requests_timed_out{0}, headers_too_large{0};
};

// An httplib server (HTTPS when cert and key are given; both must name readable PEM files, checked
// by the caller) whose connections run under `limits`.
std::unique_ptr<httplib::Server> make_http_server(const HttpLimits& limits, HttpTransportStats& stats,
                                                  const std::string& tls_cert = "", const std::string& tls_key = "");

// Called by a route handler on its worker thread: the request has been read; from now on the
// connection's reads and writes end at `deadline` (the handler's own time limit plus a grace).
void enter_request_handler(std::chrono::steady_clock::time_point deadline);

// Why reading the current request failed ("" when it did not): "timeout" or "header_too_large".
// For the server's error handler, on the worker thread of that request.
std::string request_read_failure();

}  // namespace distill
