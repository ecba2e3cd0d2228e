// The server's connection limits (serve/http_transport): a slow client (slowloris) is cut off
// after --request-read-timeout while others are served, connections over --max-connections get a
// 503 at once, a header over --max-header gets a 431, and --request-timeout ends a completion
// with what it has (finish_reason "length").
#include "serve_fixture.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <thread>

namespace distill {

namespace {

// A client that sends its request a few bytes at a time; `closed` once the server has ended the
// connection, with whatever it answered in `answer`.
struct SlowClient {
  int fd = -1;
  bool closed = false;
  std::string answer;

  void trickle(const std::string& bytes) {
    if (closed) return;
    if (::send(fd, bytes.data(), bytes.size(), MSG_NOSIGNAL) < 0) closed = true;
    char buf[4096];
    for (;;) {
      const ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
      if (n > 0) answer.append(buf, size_t(n));
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) closed = true;
      if (n <= 0) break;
    }
  }
};

const std::string kCompletion = R"({"model":"tiny","prompt":"hi","max_tokens":2})";

}  // namespace

TEST(ServerLimits, SlowClientsAreCutOffWhileOthersAreServed) {
  test::TinyModel m;
  ServeOptions o;
  o.http.request_read_s = 1.5;
  test::RunningServer srv(m, o);
  // Two trickle their header, two a body they promised to be 200 bytes long.
  std::vector<SlowClient> slow(4);
  for (size_t i = 0; i < slow.size(); ++i) {
    slow[i].fd = test::connect_loopback(srv.port());
    ASSERT_GE(slow[i].fd, 0);
    slow[i].trickle(i < 2 ? "POST /v1/completions HTTP/1.1\r\nHost: x\r\n"
                          : "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 200\r\n\r\n{");
  }
  bool served = false;
  int rounds = 0;
  // Each sends a little every 200 ms, for at most 30 s: far past the 1.5 s the server allows.
  for (; rounds < 150; ++rounds) {
    bool all_closed = true;
    for (size_t i = 0; i < slow.size(); ++i) {
      slow[i].trickle(i < 2 ? "X-Slow: 1\r\n" : " ");
      all_closed = all_closed && slow[i].closed;
    }
    if (rounds == 2) {  // while they hold their connections, a normal request is answered
      const auto r = test::parse_response(test::raw_http(srv.port(), test::post_request("/v1/completions", kCompletion)));
      served = r.status == 200;
    }
    if (all_closed) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  EXPECT_TRUE(served);
  for (auto& c : slow) {
    EXPECT_TRUE(c.closed) << "a client trickling its request for " << rounds * 0.2 << " s still holds its connection";
    if (!c.answer.empty()) {
      EXPECT_EQ(test::parse_response(c.answer).status, 408) << c.answer;
      EXPECT_NE(c.answer.find("not received in time"), std::string::npos) << c.answer;
    }
    ::close(c.fd);
  }
  EXPECT_LT(rounds, 150);
}

TEST(ServerLimits, ConnectionsOverTheLimitAreAnswered503) {
  test::TinyModel m;
  ServeOptions o;
  o.http.max_connections = 3;
  o.http.request_read_s = 20;
  test::RunningServer srv(m, o);
  std::vector<int> idle;
  for (int i = 0; i < 3; ++i) idle.push_back(test::connect_loopback(srv.port()));
  std::this_thread::sleep_for(std::chrono::milliseconds(300));  // accepted and handed to workers
  const auto refused = test::parse_response(test::raw_http(srv.port(), test::post_request("/v1/completions", kCompletion)));
  EXPECT_EQ(refused.status, 503);
  EXPECT_NE(refused.headers.find("Retry-After"), std::string::npos);
  EXPECT_EQ(nlohmann::json::parse(refused.body)["error"]["code"], "too_many_connections") << refused.body;
  for (int fd : idle) ::close(fd);
  // Once they leave, new connections are served again.
  int status = 0;
  for (int i = 0; i < 100 && status != 200; ++i) {
    status = test::parse_response(test::raw_http(srv.port(), test::post_request("/v1/completions", kCompletion))).status;
    if (status != 200) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(status, 200);
}

TEST(ServerLimits, AHeaderOverTheLimitIsAnswered431) {
  test::TinyModel m;
  ServeOptions o;
  o.http.max_header_bytes = 4096;
  test::RunningServer srv(m, o);
  std::string pad;
  for (int i = 0; i < 100; ++i) pad += "X-Pad-" + std::to_string(i) + ": " + std::string(60, 'a') + "\r\n";
  const auto r = test::parse_response(test::raw_http(srv.port(), test::post_request("/v1/completions", kCompletion, pad)));
  EXPECT_EQ(r.status, 431);
  EXPECT_NE(r.body.find("header is too large"), std::string::npos) << r.body;
  // A header just under the limit is fine, and the server goes on.
  const auto ok = test::parse_response(
      test::raw_http(srv.port(), test::post_request("/v1/completions", kCompletion, "X-Pad: " + std::string(3000, 'a') + "\r\n")));
  EXPECT_EQ(ok.status, 200);
}

TEST(ServerLimits, RequestTimeoutEndsTheCompletionWithWhatItHas) {
  test::TinyModel m(32, 2, 11, 4096);
  ServeOptions o;
  o.n_ctx = 4096;
  o.request_timeout_s = 0.3;
  test::RunningServer srv(m, o);
  // The end-of-turn tokens are banned, so only the time limit (or the context) ends it.
  nlohmann::json bias = nlohmann::json::object();
  for (int32_t id : m.tok->stop_ids()) bias[std::to_string(id)] = -100;
  nlohmann::json body = {{"model", "tiny"}, {"prompt", "go"}, {"max_tokens", 4000}, {"temperature", 1.0}, {"logit_bias", bias}};
  const auto r = test::parse_response(test::raw_http(srv.port(), test::post_request("/v1/completions", body.dump())));
  ASSERT_EQ(r.status, 200) << r.body;
  const auto j = nlohmann::json::parse(r.body);
  EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
  EXPECT_GT(j["usage"]["completion_tokens"].get<int64_t>(), 0);
  EXPECT_LT(j["usage"]["completion_tokens"].get<int64_t>(), 4000);
}

TEST(ServerLimits, MetricsCountRefusalsAndTimeouts) {
  test::TinyModel m;
  ServeOptions o;
  o.http.max_header_bytes = 2048;
  test::RunningServer srv(m, o);
  test::raw_http(srv.port(), test::post_request("/v1/completions", kCompletion, "X-Pad: " + std::string(3000, 'a') + "\r\n"));
  const std::string metrics =
      test::raw_http(srv.port(), "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
  EXPECT_NE(metrics.find("distill_request_read_failures_total{reason=\"header_too_large\"} 1"), std::string::npos) << metrics;
  // this connection at least (the refused one may still be closing on a loaded machine)
  const size_t at = metrics.find("\ndistill_connections_open ");
  ASSERT_NE(at, std::string::npos) << metrics;
  EXPECT_GE(std::atoi(metrics.c_str() + at + 26), 1) << metrics;
}

}  // namespace distill
