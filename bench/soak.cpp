// Soak: many concurrent clients against a real `distill serve` process on loopback for minutes,
// mixing what a public endpoint sees — streamed chats, echo + logprobs scoring, streams the client
// abandons, malformed bodies, a key over its quota — and reporting requests and failures by kind,
// p50/p99 latency and time to first token, and the server's RSS over time. Bounded: every client
// stops at the deadline; only 127.0.0.1 is contacted.
//
//   soak [--minutes 10] [--clients 64] [--distill build/distill] [--model DIR]
// Without --model, a random 15M-shape model with the byte-level tokenizer is made in a temp dir.
// Exit status 1 if any valid request failed or an invalid one got something other than its 4xx
// (the over-quota key may pass once per minute, as its rpm of 1 allows).
#include <httplib.h>
#include <nlohmann/json.hpp>

#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace {

using json = nlohmann::json;
namespace fs = std::filesystem;

double now() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

struct Kind {
  const char* name;
  int expect;  // HTTP status a correct server answers
};
// What each request is; clients cycle through these (several valid kinds per invalid one).
const Kind kKinds[] = {{"chat-stream", 200}, {"completion-echo", 200}, {"chat-stream", 200}, {"abandoned-stream", 200},
                       {"chat", 200},        {"malformed-body", 400},  {"over-quota", 429}, {"chat-stream", 200}};

struct Stats {
  int64_t requests = 0, ok = 0, failed = 0;
  std::vector<double> latency, ttft;
  std::map<std::string, int64_t> failures;  // what went wrong, counted
};

double pct(std::vector<double> v, double p) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  return v[std::min(v.size() - 1, size_t(p * double(v.size())))];
}

long rss_kb(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(in, line);)
    if (line.rfind("VmRSS:", 0) == 0) return std::atol(line.c_str() + 6);
  return -1;
}

int run(const std::string& cmd) { return std::system(cmd.c_str()); }

}  // namespace

int main(int argc, char** argv) {
  double minutes = 10;
  int clients = 64;
  std::string distill = "build/distill", model;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    if (a == "--minutes") minutes = std::atof(argv[i + 1]);
    else if (a == "--clients") clients = std::atoi(argv[i + 1]);
    else if (a == "--distill") distill = argv[i + 1];
    else if (a == "--model") model = argv[i + 1];
    else return std::fprintf(stderr, "soak: unknown option %s\n", argv[i]), 2;
  }
  const fs::path tmp = fs::temp_directory_path() / ("distill-soak-" + std::to_string(getpid()));
  fs::create_directories(tmp);
  if (model.empty()) {
    model = (tmp / "model").string();
    if (run(distill + " init --preset 15m --tokenizer bytes -o " + model + " > /dev/null") != 0) return 2;
  }
  // Keys: one for normal traffic, one whose quota (1 request a minute) the over-quota kind exceeds.
  const std::string keys = (tmp / "keys.json").string();
  std::string key_ok, key_quota;
  {
    FILE* p = popen((distill + " keys add " + keys + " --name soak").c_str(), "r");
    char buf[256] = {};
    if (!p || !fgets(buf, sizeof buf, p)) return 2;
    pclose(p);
    key_ok = std::string(buf, strcspn(buf, "\n"));
    p = popen((distill + " keys add " + keys + " --name quota --rpm 1").c_str(), "r");
    if (!p || !fgets(buf, sizeof buf, p)) return 2;
    pclose(p);
    key_quota = std::string(buf, strcspn(buf, "\n"));
  }
  const int port = 18000 + int(getpid() % 2000);
  const pid_t server = fork();
  if (server == 0) {
    const std::string p = std::to_string(port);
    execl(distill.c_str(), distill.c_str(), "serve", model.c_str(), "--port", p.c_str(), "--parallel", "8", "--queue", "256",
          "--keys", keys.c_str(), "--name", "soak", (char*)nullptr);
    _exit(127);
  }
  httplib::Client probe("127.0.0.1", port);
  for (int i = 0; i < 300 && !probe.Get("/health"); ++i) usleep(100000);
  if (!probe.Get("/health")) return std::fprintf(stderr, "soak: the server did not come up\n"), kill(server, SIGTERM), 2;

  const double t0 = now(), deadline = t0 + minutes * 60;
  std::mutex mu;
  std::map<std::string, Stats> stats;
  std::atomic<int64_t> quota_passes{0};
  std::vector<std::pair<double, long>> rss;
  std::thread sampler([&] {
    while (now() < deadline) {
      rss.push_back({now() - t0, rss_kb(server)});
      for (int i = 0; i < 100 && now() < deadline; ++i) usleep(100000);
    }
  });
  std::vector<std::thread> threads;
  for (int c = 0; c < clients; ++c)
    threads.emplace_back([&, c] {
      httplib::Client cli("127.0.0.1", port);
      cli.set_read_timeout(120, 0);
      for (int64_t i = c; now() < deadline; ++i) {
        const Kind& k = kKinds[size_t(i) % (sizeof kKinds / sizeof kKinds[0])];
        const std::string kind = k.name;
        const bool stream = kind.find("stream") != std::string::npos;
        json body = {{"model", "soak"}, {"max_tokens", 24 + int(i % 17)}, {"temperature", 0.8}, {"seed", i}};
        std::string path = "/v1/chat/completions";
        if (kind == "completion-echo") {
          path = "/v1/completions";
          body = {{"model", "soak"}, {"prompt", "The soak test scores this prompt " + std::to_string(i)}, {"max_tokens", 0},
                  {"echo", true}, {"logprobs", 3}};
        } else {
          body["messages"] = {{{"role", "user"}, {"content", "Tell me about request " + std::to_string(i)}}};
          if (stream) body["stream"] = true;
        }
        std::string text = kind == "malformed-body" ? "{\"model\": \"soak\", \"messages\": [" : body.dump();
        const httplib::Headers h = {{"Authorization", "Bearer " + (kind == "over-quota" ? key_quota : key_ok)}};
        const double start = now();
        double first = 0;
        int status = 0;
        bool ok = false;
        std::string what;
        if (stream) {
          const bool abandon = kind == "abandoned-stream";
          // Streams through the receiver callback, to time the first chunk and to leave early.
          httplib::Request req;
          req.method = "POST", req.path = path, req.headers = h, req.body = text;
          req.set_header("Content-Type", "application/json");
          std::string got;
          req.content_receiver = [&](const char* d, size_t n, uint64_t, uint64_t) {
            got.append(d, n);
            // time to first token: the first event after the role chunk the stream opens with
            if (first == 0 && got.find("data: ", got.find("data: ") + 1) != std::string::npos) first = now();
            return !(abandon && got.size() > 600);  // false: the client hangs up mid-stream
          };
          httplib::Response resp;
          httplib::Error err;
          const bool sent = cli.send(req, resp, err);
          status = resp.status;
          ok = abandon ? (status == 200 || status == 0) : (sent && status == 200 && got.find("data: [DONE]") != std::string::npos);
          if (!ok) what = sent ? "status " + std::to_string(status) : httplib::to_string(err);
        } else {
          auto res = cli.Post(path, h, text, "application/json");
          status = res ? res->status : 0;
          ok = res && status == k.expect;
          // The quota key's one request a minute may pass: the first time it does, that is right.
          if (res && kind == "over-quota" && status == 200) ok = quota_passes.fetch_add(1) < int64_t(minutes) + 1;
          if (ok && status == 200) ok = json::parse(res->body, nullptr, false).contains("choices");
          if (!ok) what = res ? "status " + std::to_string(status) + " (expected " + std::to_string(k.expect) + ")" : httplib::to_string(res.error());
        }
        const double end = now();
        std::lock_guard<std::mutex> lock(mu);
        Stats& s = stats[kind];
        ++s.requests;
        if (ok) {
          ++s.ok;
          s.latency.push_back(end - start);
          if (first > 0) s.ttft.push_back(first - start);
        } else {
          ++s.failed;
          ++s.failures[what];
        }
      }
    });
  for (auto& t : threads) t.join();
  sampler.join();
  const long final_rss = rss_kb(server);
  kill(server, SIGTERM);
  waitpid(server, nullptr, 0);
  fs::remove_all(tmp);

  std::printf("soak: %d clients, %.1f minutes, `distill serve` --parallel 8 on 127.0.0.1\n\n", clients, minutes);
  std::printf("| %-17s | %8s | %8s | %6s | %9s | %9s | %9s | %9s |\n", "kind", "requests", "as meant", "failed", "p50 s",
              "p99 s", "TTFT p50", "TTFT p99");
  std::printf("| ----------------- | -------- | -------- | ------ | --------- | --------- | --------- | --------- |\n");
  int64_t bad = 0;
  for (const auto& [kind, s] : stats) {
    std::printf("| %-17s | %8lld | %8lld | %6lld | %9.3f | %9.3f | %9.3f | %9.3f |\n", kind.c_str(), (long long)s.requests,
                (long long)s.ok, (long long)s.failed, pct(s.latency, 0.5), pct(s.latency, 0.99), pct(s.ttft, 0.5),
                pct(s.ttft, 0.99));
    for (const auto& [w, n] : s.failures) std::printf("|   failure: %s × %lld\n", w.c_str(), (long long)n);
    bad += s.failed;
  }
  std::printf("\nserver RSS (MB) every ~10 s:");
  for (const auto& [t, kb] : rss) std::printf(" %.0f", double(kb) / 1024);
  std::printf(" | end %.0f\n", double(final_rss) / 1024);
  // Growth over the second half of the run, against its start (warm-up excluded).
  if (rss.size() >= 4) {
    const double mid = double(rss[rss.size() / 2].second), last = double(rss.back().second);
    std::printf("RSS growth over the second half: %+.1f %%\n", 100.0 * (last - mid) / mid);
  }
  std::printf("soak: %lld requests not answered as they should have been\n", (long long)bad);
  return bad == 0 ? 0 : 1;
}
