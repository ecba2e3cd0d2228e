#include "serve/http_transport.h"

#include "core/error.h"

#include <httplib.h>

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <condition_variable>
#include <cstring>
#include <deque>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace distill {

namespace {

using Clock = std::chrono::steady_clock;

Clock::time_point after(double seconds) {
  return Clock::now() + std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(seconds));
}

// One accepted connection: its socket (and TLS session), the time its current phase must end by,
// and how many more bytes the current part of the request (header, then body) may have.
struct Connection {
  int fd = -1;
  SSL* ssl = nullptr;
  Clock::time_point deadline;
  size_t read_budget = 0;
  std::string failure;  // "timeout" | "header_too_large" once reading the request failed
  char buf[4096];
  size_t buf_pos = 0, buf_len = 0;
};

// The connection the current worker thread serves (route handlers reach it through
// enter_request_handler), and whether this thread must refuse the connection it is about to run.
thread_local Connection* t_connection = nullptr;
thread_local bool t_refuse = false;

// Request bytes already read from the socket (our buffer, or TLS records OpenSSL decrypted).
bool has_buffered(const Connection& c) { return c.buf_pos < c.buf_len || (c.ssl && SSL_pending(c.ssl) > 0); }

// Waits until fd is ready for `events`, no later than `until`. False on timeout or error.
bool wait_ready(int fd, short events, Clock::time_point until) {
  for (;;) {
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(until - Clock::now()).count();
    if (left <= 0) return false;
    pollfd p{fd, events, 0};
    const int r = ::poll(&p, 1, int(std::min<int64_t>(left, 1000)));
    if (r > 0) return (p.revents & (events | POLLHUP | POLLERR)) != 0;
    if (r < 0 && errno != EINTR) return false;
  }
}

// httplib::Stream over a non-blocking socket (optionally TLS) whose every wait ends at the
// connection's deadline.
class LimitedStream final : public httplib::Stream {
public:
  LimitedStream(Connection& c, const HttpLimits& lim, HttpTransportStats& stats) : c_(c), lim_(lim), stats_(stats) {}

  bool is_readable() const override {
    if (has_buffered(c_)) return true;
    return wait_ready(c_.fd, POLLIN, read_until());
  }
  bool is_writable() const override { return wait_ready(c_.fd, POLLOUT, write_until()); }

  ssize_t read(char* ptr, size_t size) override {
    if (c_.read_budget == 0) {  // the header (or body) is larger than allowed
      if (c_.failure.empty()) {
        c_.failure = "header_too_large";
        stats_.headers_too_large++;
        c_.deadline = after(2.0);  // time to send the 431
      }
      return -1;
    }
    if (c_.buf_pos == c_.buf_len && !fill()) return -1;
    const size_t n = std::min({size, c_.buf_len - c_.buf_pos, c_.read_budget});
    std::memcpy(ptr, c_.buf + c_.buf_pos, n);
    c_.buf_pos += n;
    c_.read_budget -= n;
    return ssize_t(n);
  }

  ssize_t write(const char* ptr, size_t size) override {
    size_t done = 0;
    while (done < size) {
      ssize_t n;
      short want = POLLOUT;
      if (c_.ssl) {
        n = SSL_write(c_.ssl, ptr + done, int(std::min<size_t>(size - done, 1 << 30)));
        if (n <= 0) {
          const int e = SSL_get_error(c_.ssl, int(n));
          if (e == SSL_ERROR_WANT_READ) want = POLLIN;
          else if (e != SSL_ERROR_WANT_WRITE) return -1;
        }
      } else {
        n = ::send(c_.fd, ptr + done, size - done, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return -1;
      }
      if (n > 0) {
        done += size_t(n);
        continue;
      }
      if (!wait_ready(c_.fd, want, write_until())) return -1;
    }
    return ssize_t(size);
  }

  void get_remote_ip_and_port(std::string& ip, int& port) const override { address(true, ip, port); }
  void get_local_ip_and_port(std::string& ip, int& port) const override { address(false, ip, port); }
  socket_t socket() const override { return c_.fd; }

private:
  Clock::time_point read_until() const { return std::min(c_.deadline, after(lim_.read_stall_s)); }
  Clock::time_point write_until() const { return std::min(c_.deadline, after(lim_.write_stall_s)); }

  // Reads what the socket has into the buffer, waiting (within the deadline) when it has nothing.
  bool fill() {
    c_.buf_pos = c_.buf_len = 0;
    for (;;) {
      ssize_t n;
      short want = POLLIN;
      if (c_.ssl) {
        n = SSL_read(c_.ssl, c_.buf, int(sizeof c_.buf));
        if (n <= 0) {
          const int e = SSL_get_error(c_.ssl, int(n));
          if (e == SSL_ERROR_WANT_WRITE) want = POLLOUT;
          else if (e != SSL_ERROR_WANT_READ) return false;
        }
      } else {
        n = ::recv(c_.fd, c_.buf, sizeof c_.buf, MSG_DONTWAIT);
        if (n == 0) return false;  // the peer closed
        if (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return false;
      }
      if (n > 0) {
        c_.buf_len = size_t(n);
        return true;
      }
      if (!wait_ready(c_.fd, want, read_until())) {
        if (c_.failure.empty()) {  // the request's time is up, or the client stalled: either ends it
          c_.failure = "timeout";
          stats_.requests_timed_out++;
          c_.deadline = after(2.0);  // time to send the 408
          c_.read_budget = 0;
        }
        return false;
      }
    }
  }

  void address(bool remote, std::string& ip, int& port) const {
    sockaddr_storage a{};
    socklen_t len = sizeof a;
    const int r = remote ? getpeername(c_.fd, reinterpret_cast<sockaddr*>(&a), &len)
                         : getsockname(c_.fd, reinterpret_cast<sockaddr*>(&a), &len);
    ip.clear(), port = 0;
    if (r != 0) return;
    char text[INET6_ADDRSTRLEN] = {};
    if (a.ss_family == AF_INET) {
      const auto* v4 = reinterpret_cast<const sockaddr_in*>(&a);
      inet_ntop(AF_INET, &v4->sin_addr, text, sizeof text), port = ntohs(v4->sin_port);
    } else if (a.ss_family == AF_INET6) {
      const auto* v6 = reinterpret_cast<const sockaddr_in6*>(&a);
      inet_ntop(AF_INET6, &v6->sin6_addr, text, sizeof text), port = ntohs(v6->sin6_port);
    }
    ip = text;
  }

  Connection& c_;
  const HttpLimits& lim_;
  HttpTransportStats& stats_;
};

// Finishes the TLS handshake of a non-blocking socket by the deadline.
bool tls_handshake(Connection& c) {
  for (;;) {
    const int r = SSL_accept(c.ssl);
    if (r == 1) return true;
    const int e = SSL_get_error(c.ssl, r);
    if (e != SSL_ERROR_WANT_READ && e != SSL_ERROR_WANT_WRITE) return false;
    if (!wait_ready(c.fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, c.deadline)) return false;
  }
}

// The 503 for a connection over the limit, written without waiting (a full socket buffer drops it).
void refuse_plain(int fd) {
  static const std::string body =
      R"({"error":{"message":"The server has too many open connections; retry shortly","type":"server_error","param":null,"code":"too_many_connections"}})";
  const std::string msg = "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
                          "Connection: close\r\nContent-Length: " +
                          std::to_string(body.size()) + "\r\n\r\n" + body;
  (void)!::send(fd, msg.data(), msg.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
}

// Connections run on a pool that grows to max_connections threads; one more is refused on the
// accepting thread at once, so no connection ever waits in a queue.
class ConnectionPool final : public httplib::TaskQueue {
public:
  ConnectionPool(int64_t max_connections, HttpTransportStats& stats) : max_(max_connections), stats_(stats) {}
  ~ConnectionPool() override { shutdown(); }

  void enqueue(std::function<void()> fn) override {
    {
      std::unique_lock<std::mutex> lock(mu_);
      if (running_ + int64_t(queue_.size()) < max_) {
        queue_.push_back(std::move(fn));
        // An idle thread takes one task when it wakes (it stays counted idle until then): more
        // tasks waiting than idle threads means a new thread, or the surplus would wait for a
        // running connection to end.
        if (queue_.size() > size_t(idle_)) threads_.emplace_back([this] { work(); });
        else cv_.notify_one();
        return;
      }
    }
    stats_.connections_refused++;
    t_refuse = true;  // the connection's own function sees this and answers 503
    fn();
    t_refuse = false;
  }

  void shutdown() override {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (stopping_) return;
      stopping_ = true;
    }
    cv_.notify_all();
    for (std::thread& t : threads_) t.join();
  }

private:
  void work() {
    std::unique_lock<std::mutex> lock(mu_);
    for (;;) {
      ++idle_;
      cv_.wait(lock, [this] { return stopping_ || !queue_.empty(); });
      --idle_;
      if (queue_.empty()) return;  // stopping, and nothing left
      std::function<void()> fn = std::move(queue_.front());
      queue_.pop_front();
      ++running_;
      lock.unlock();
      fn();
      lock.lock();
      --running_;
    }
  }

  const int64_t max_;
  HttpTransportStats& stats_;
  std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::function<void()>> queue_;
  std::vector<std::thread> threads_;
  int64_t running_ = 0, idle_ = 0;
  bool stopping_ = false;
};

// httplib::Server or SSLServer with its connections served by LimitedStream (process_and_close_socket
// is httplib's hook for a server's own transport; SSLServer overrides it the same way).
template <class Base>
class LimitedServer final : public Base {
public:
  template <class... Args>
  LimitedServer(const HttpLimits& lim, HttpTransportStats& stats, Args&&... args)
      : Base(std::forward<Args>(args)...), lim_(lim), stats_(stats) {
    this->new_task_queue = [this] { return new ConnectionPool(lim_.max_connections, stats_); };
  }

private:
  static constexpr bool kTls = std::is_same_v<Base, httplib::SSLServer>;

  bool process_and_close_socket(socket_t sock) override {
    if (t_refuse) {
      if (!kTls) refuse_plain(sock);
      ::shutdown(sock, SHUT_RDWR), ::close(sock);
      return false;
    }
    stats_.connections_open++;
    Connection c;
    c.fd = sock;
    ::fcntl(sock, F_SETFL, ::fcntl(sock, F_GETFL) | O_NONBLOCK);
    // httplib writes a response's header and body separately: without TCP_NODELAY, Nagle's
    // algorithm holds the body until the client's delayed ACK (~40 ms per response on Linux).
    const int one = 1;
    ::setsockopt(sock, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c.deadline = after(lim_.request_read_s);
    bool ok = true;
    if constexpr (kTls) {
      c.ssl = SSL_new(this->ssl_context());
      ok = c.ssl && SSL_set_fd(c.ssl, sock) == 1 && tls_handshake(c);
    }
    if (ok) ok = serve_requests(c);
    if (c.ssl) {
      if (c.failure.empty()) SSL_shutdown(c.ssl);  // one non-blocking close_notify; no waiting for the peer's
      SSL_free(c.ssl);
    }
    ::shutdown(sock, SHUT_RDWR), ::close(sock);
    stats_.connections_open--;
    return ok;
  }

  // Requests on one connection until it closes, fails, idles past keep-alive or reaches the count.
  bool serve_requests(Connection& c) {
    LimitedStream strm(c, lim_, stats_);
    t_connection = &c;
    bool ok = false;
    for (int64_t n = 0; n < lim_.keep_alive_requests; ++n) {
      if (n > 0) {
        if (!has_buffered(c) && !wait_ready(c.fd, POLLIN, after(lim_.keep_alive_s))) break;
        c.deadline = after(lim_.request_read_s);  // the next request starts now
      }
      c.read_budget = lim_.max_header_bytes;
      c.failure.clear();
      bool closed = false;
      // httplib calls setup_request once the header is read: from there the budget is the body's
      // (chunked framing adds a little per chunk).
      const size_t body_budget = lim_.max_body_bytes + (64 << 10);
      ok = this->process_request(strm, n + 1 == lim_.keep_alive_requests, closed,
                                 [&c, body_budget](httplib::Request&) { c.read_budget = body_budget; });
      if (!ok || closed || !c.failure.empty()) break;
    }
    t_connection = nullptr;
    return ok;
  }

  const HttpLimits lim_;
  HttpTransportStats& stats_;
};

}  // namespace

std::unique_ptr<httplib::Server> make_http_server(const HttpLimits& limits, HttpTransportStats& stats,
                                                  const std::string& tls_cert, const std::string& tls_key) {
  if (limits.max_connections < 1) fail("the connection limit must be at least 1 (got {})", limits.max_connections);
  if (tls_cert.empty()) return std::make_unique<LimitedServer<httplib::Server>>(limits, stats);
  auto s = std::make_unique<LimitedServer<httplib::SSLServer>>(limits, stats, tls_cert.c_str(), tls_key.c_str());
  if (!s->is_valid()) fail("--tls-cert {} / --tls-key {}: not a PEM certificate and its private key", tls_cert, tls_key);
  return s;
}

void enter_request_handler(std::chrono::steady_clock::time_point deadline) {
  if (t_connection) t_connection->deadline = deadline;
}

std::string request_read_failure() { return t_connection ? t_connection->failure : ""; }

}  // namespace distill
