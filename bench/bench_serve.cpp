// Server benchmark: aggregate generated tokens/s of `distill serve` (in-process, loopback HTTP,
// streamed chat completions) at 1, 4 and 16 concurrent clients, for a random-weight model of the
// stories15m shape (288 wide, 6 layers, vocab 32000). Each client sends requests back to back;
// every request asks for --tokens tokens (temperature 0.8, seeded). Also prints the mean request
// latency. --parallel sets the server's slots (default 16).
//
//   bench_serve [--threads 2] [--tokens 128] [--requests 4] [--parallel 16] [--guard off|on|both] [--clients 1,4,16]
// --guard both: tables with the extraction guard off and on, alternating, and their ratio.
// Then the same model's bare decode (the engine's Decoder, one sequence, greedy tokens fed back:
// what `distill bench` tg measures) beside one client's streamed throughput, alternating, and
// their ratio: what serving one stream costs over decoding it; and the engine alone (the Scheduler,
// no HTTP) in the caller's thread and on its own thread, to tell the engine's cost from HTTP's.
#include "core/threads.h"
#include "model/decoder.h"
#include "model/kv_cache.h"
#include "generate/scheduler.h"
#include "serve/server.h"
#include "tokenizer/byte_vocab.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <nlohmann/json.hpp>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>
#include <thread>

using namespace distill;
using json = nlohmann::json;

namespace {

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

struct StreamResult {
  int64_t tokens = 0;
  double latency = 0;
  bool ok = false;
};

// One streamed request over a plain socket; counts completion tokens from the usage chunk.
StreamResult stream_request(int port, const std::string& body) {
  StreamResult r;
  const int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET, a.sin_port = htons(uint16_t(port)), a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) return ::close(fd), r;
  const std::string req = "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nConnection: close\r\n"
                          "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  const double t0 = now();
  ::send(fd, req.data(), req.size(), MSG_NOSIGNAL);
  std::string all;
  char buf[8192];
  ssize_t n;
  while ((n = ::recv(fd, buf, sizeof buf, 0)) > 0) {
    all.append(buf, size_t(n));
  }
  ::close(fd);
  const size_t u = all.rfind("\"completion_tokens\":");
  if (u != std::string::npos) r.tokens = std::atoll(all.c_str() + u + 20), r.ok = true;
  r.latency = now() - t0;
  return r;
}

// One table: aggregate tokens/s at 1, 4 and 16 clients against a server with the guard on or off.
std::vector<double> run_table(const Model& model, std::shared_ptr<const Tokenizer> tok, int parallel, int tokens, int requests,
                              bool guard, const std::vector<int>& client_counts) {
  ServeOptions o;
  o.host = "127.0.0.1", o.port = 0, o.model_name = "m", o.n_parallel = parallel, o.n_ctx = 512, o.max_queue = 256;
  // The guard scores every request (callers by address) but its actions are off: the cost
  // measured is the watching, not a benchmark client being throttled.
  o.guard = guard ? "on" : "off";
  o.guard_options.thresholds.alert = o.guard_options.thresholds.strip_logprobs = 0;
  o.guard_options.thresholds.throttle = o.guard_options.thresholds.block = 0;
  OpenAIServer server(model, tok, o);
  const int port = server.bind();
  std::thread listener([&] { server.listen(); });
  std::printf("guard %s\n%8s %10s %12s %12s %10s\n", guard ? "on" : "off", "clients", "requests", "tokens", "tokens/s", "latency ms");
  std::vector<double> out;
  for (int clients : client_counts) {
    std::atomic<int64_t> total{0}, failed{0};
    std::atomic<int64_t> latency_us{0};
    const double t0 = now();
    std::vector<std::thread> ts;
    for (int k = 0; k < clients; ++k)
      ts.emplace_back([&, k] {
        for (int r = 0; r < requests; ++r) {
          json body = {{"model", "m"}, {"messages", {{{"role", "user"}, {"content", "Tell me a story, number " + std::to_string(k * 100 + r)}}}},
                       {"max_tokens", tokens}, {"temperature", 0.8}, {"seed", k * 100 + r}, {"stream", true},
                       {"stream_options", {{"include_usage", true}}}};
          const StreamResult s = stream_request(port, body.dump());
          if (!s.ok) ++failed;
          total += s.tokens;
          latency_us += int64_t(s.latency * 1e6);
        }
      });
    for (auto& t : ts) t.join();
    const double secs = now() - t0;
    const double tps = double(total) / secs;
    out.push_back(tps);
    std::printf("%8d %10d %12lld %12.0f %10.1f%s   (%.2fx one client)\n", clients, clients * requests, (long long)total.load(), tps,
                double(latency_us) / 1e3 / double(clients * requests), failed ? "  FAILED REQUESTS" : "", tps / out[0]);
  }
  server.stop();
  listener.join();
  return out;
}

// Decode tokens/s of one sequence through the Decoder (no HTTP, no sampler): `tokens` steps
// after a 24-token prompt, as `distill bench` tg does after its context.
double bare_decode(const Model& model, int tokens) {
  Decoder dec(model);
  KVCache cache(model.config, 1, tokens + 32);
  Batch b;
  for (int i = 0; i < 24; ++i) b.add(int32_t(100 + i), i, 0, i == 23);
  dec.forward(b, cache);
  const double t0 = now();
  int32_t next = 7;
  for (int i = 0; i < tokens; ++i) {
    b.clear();
    b.add(next, 24 + i, 0, true);
    const float* logits = dec.forward(b, cache);
    next = int32_t(std::max_element(logits, logits + model.config.n_vocab) - logits);
  }
  return double(tokens) / (now() - t0);
}

// Decode tokens/s of one job through the Scheduler (the served engine without HTTP): the same
// 24-token prompt, `tokens` sampled tokens at T 0.8 as the served requests; `threaded` runs the
// engine's loop on its own worker thread as `serve` does, the caller waiting on the job's signal.
double scheduler_decode(const Model& model, const Tokenizer& tok, int tokens, bool threaded) {
  SchedulerOptions o;
  o.n_slots = 1, o.n_ctx = tokens + 64, o.threaded = threaded;
  Scheduler engine(model, tok, o);
  auto job = std::make_shared<GenerationJob>();
  for (int i = 0; i < 24; ++i) job->prompt.push_back(int32_t(100 + i));
  job->max_new_tokens = tokens;
  job->stop_at_eos = false;
  const double t0 = now();
  engine.submit({job});
  if (threaded) {
    uint64_t seen = 0;
    for (;;) {
      seen = job->signal->wait(seen, 1.0);
      std::lock_guard<std::mutex> lk(job->signal->mu);
      if (job->done) break;
    }
  } else {
    engine.run_until_done();
  }
  return double(job->n_generated) / (now() - t0);
}

}  // namespace

int main(int argc, char** argv) {
  int threads = 2, tokens = 128, requests = 4, parallel = 16;
  std::string guard = "off";
  std::vector<int> client_counts{1, 4, 16};
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!std::strcmp(argv[i], "--threads")) threads = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--tokens")) tokens = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--requests")) requests = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--parallel")) parallel = std::atoi(argv[i + 1]);
    else if (!std::strcmp(argv[i], "--guard")) guard = argv[i + 1];
    else if (!std::strcmp(argv[i], "--clients")) {
      client_counts.clear();
      for (const char* p = argv[i + 1]; *p;) {
        client_counts.push_back(std::max(1, std::atoi(p)));
        while (*p && *p != ',') ++p;
        if (*p == ',') ++p;
      }
    }
  }
  if (guard != "on" && guard != "off" && guard != "both") {
    std::fprintf(stderr, "--guard on|off|both\n");
    return 2;
  }
  set_num_threads(threads);
  const TokenizerFiles f = make_byte_level_tokenizer();
  auto tok = Tokenizer::from_json(f.tokenizer_json, f.tokenizer_config_json, "bytes");
  ModelConfig c;
  c.model_type = "llama";
  c.n_vocab = 32000, c.n_embd = 288, c.n_ff = 768, c.n_layer = 6, c.n_head = 6, c.n_kv_head = 6, c.head_dim = 48;
  c.tie_word_embeddings = true, c.max_position_embeddings = 1024;
  const Model model = Model::random(c, DType::F32, 1);
  std::printf("bench_serve: stories15m shape (%.1fM params, f32), %d threads, %d slots, %d tokens per request, %d requests per client\n",
              double(c.n_params()) / 1e6, num_threads(), parallel, tokens, requests);
  if (guard != "both") {
    run_table(model, tok, parallel, tokens, requests, guard == "on", client_counts);
    // one stream served against the bare decode, alternating three times; best of each
    double served = 0, bare = 0, sched = 0, sched_thread = 0;
    for (int round = 0; round < 3; ++round) {
      bare = std::max(bare, bare_decode(model, tokens));
      sched = std::max(sched, scheduler_decode(model, *tok, tokens, false));
      sched_thread = std::max(sched_thread, scheduler_decode(model, *tok, tokens, true));
      served = std::max(served, run_table(model, tok, parallel, tokens, requests, guard == "on", {1})[0]);
    }
    std::printf("\none stream, best of 3 alternating: served %.0f tokens/s, bare decode %.0f tokens/s, served/bare %.3f\n", served,
                bare, served / bare);
    std::printf("the engine without HTTP: in the caller's thread %.0f tokens/s (%.3f of bare), on its own thread %.0f (%.3f)\n", sched,
                sched / bare, sched_thread, sched_thread / bare);
    return 0;
  }
  // Off and on alternate twice; each keeps its better run (the machine's noise is the spread).
  std::vector<double> best[2] = {{0, 0, 0}, {0, 0, 0}};
  for (int round = 0; round < 4; ++round) {
    const std::vector<double> t = run_table(model, tok, parallel, tokens, requests, round % 2 == 1, {1, 4, 16});
    for (size_t i = 0; i < t.size(); ++i) best[round % 2][i] = std::max(best[round % 2][i], t[i]);
  }
  std::printf("\nbest of two, tokens/s:\n%8s %12s %12s %8s\n", "clients", "guard off", "guard on", "on/off");
  const int clients[] = {1, 4, 16};
  for (size_t i = 0; i < 3; ++i)
    std::printf("%8d %12.0f %12.0f %8.3f\n", clients[i], best[0][i], best[1][i], best[1][i] / best[0][i]);
  return 0;
}
