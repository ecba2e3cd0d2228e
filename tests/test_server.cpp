// distill serve over real HTTP on loopback: responses in the OpenAI shapes, hostile input answered
// with the right 4xx while the server keeps serving, keys and quotas, the bounded queue (503),
// clients that leave (cancelled, slot freed), 8 concurrent greedy requests equal to 8 single
// ones and to `distill run`, and a load test of 32 streaming clients.
#include "serve/usage_log.h"
#include "serve_fixture.h"

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <fstream>
#include <future>
#include <regex>

namespace distill {

using json = nlohmann::json;
using namespace distill::test;

namespace {

// The `data:` events of an SSE body; fails the test on anything malformed.
std::vector<std::string> sse_events(const std::string& body) {
  std::vector<std::string> events;
  size_t i = 0;
  while (i < body.size()) {
    const size_t end = body.find("\n\n", i);
    if (end == std::string::npos) {
      ADD_FAILURE() << "unterminated event: " << body.substr(i);
      break;
    }
    const std::string ev = body.substr(i, end - i);
    i = end + 2;
    if (ev.rfind(": ", 0) == 0) continue;  // keep-alive comment
    if (ev.rfind("data: ", 0) != 0) {
      ADD_FAILURE() << "not a data event: " << ev;
      continue;
    }
    events.push_back(ev.substr(6));
  }
  return events;
}

// Checks a streamed chat completion and returns its text.
std::string check_chat_stream(const std::string& body, std::string* finish = nullptr) {
  const auto events = sse_events(body);
  EXPECT_GE(events.size(), 3u);
  if (events.empty()) return "";
  EXPECT_EQ(events.back(), "[DONE]");
  std::string text, id, fr;
  for (size_t e = 0; e + 1 < events.size(); ++e) {
    const json c = json::parse(events[e]);
    EXPECT_EQ(c["object"], "chat.completion.chunk");
    if (id.empty()) id = c["id"];
    EXPECT_EQ(c["id"], id) << "one id per stream";
    EXPECT_TRUE(c["created"].is_number_integer());
    if (c["choices"].empty()) continue;  // the usage chunk
    const json& ch = c["choices"][0];
    if (e == 0) {
      EXPECT_EQ(ch["delta"]["role"], "assistant");
    }
    if (ch["delta"].contains("content")) text += ch["delta"]["content"].get<std::string>();
    if (!ch["finish_reason"].is_null()) fr = ch["finish_reason"];
  }
  EXPECT_TRUE(fr == "stop" || fr == "length") << fr;
  if (finish) *finish = fr;
  return text;
}

int64_t metric(const std::string& text, const std::string& name) {
  std::smatch m;
  if (std::regex_search(text, m, std::regex("\n" + name + " ([0-9.e+]+)"))) return int64_t(std::stod(m[1]));
  return -1;
}

}  // namespace

TEST(Server, ShapesOfModelsChatAndCompletions) {
  TinyModel m;
  RunningServer s(m, ServeOptions{});
  httplib::Client c("127.0.0.1", s.port());
  auto models = c.Get("/v1/models");
  ASSERT_TRUE(models);
  EXPECT_EQ(json::parse(models->body)["data"][0]["id"], "tiny");
  auto r = post(c, "/v1/chat/completions", chat_body("hello", 6).dump());
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const json j = json::parse(r->body);
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(j["usage"]["completion_tokens"], 6);
  EXPECT_EQ(j["usage"]["total_tokens"], j["usage"]["prompt_tokens"].get<int>() + 6);
  // legacy completions, n = 3 with a seed: three choices, reproducible
  json body = {{"model", "tiny"}, {"prompt", "abc"}, {"max_tokens", 5}, {"n", 3}, {"seed", 9}, {"logprobs", 2}};
  auto a = post(c, "/v1/completions", body.dump()), b = post(c, "/v1/completions", body.dump());
  ASSERT_EQ(a->status, 200) << a->body;
  const json ja = json::parse(a->body), jb = json::parse(b->body);
  ASSERT_EQ(ja["choices"].size(), 3u);
  for (int i = 0; i < 3; ++i) {
    EXPECT_EQ(ja["choices"][i]["index"], i);
    EXPECT_EQ(ja["choices"][i]["text"], jb["choices"][i]["text"]);
    // five tokens, or fewer where the choice ended at the end-of-text token
    const bool stopped = ja["choices"][i]["finish_reason"] == "stop";
    EXPECT_EQ(ja["choices"][i]["finish_reason"], stopped ? "stop" : "length");
    if (stopped) EXPECT_LT(ja["choices"][i]["logprobs"]["tokens"].size(), 5u);
    else EXPECT_EQ(ja["choices"][i]["logprobs"]["tokens"].size(), 5u);
    // two alternatives, unless they decode to the same text (one key then, as OpenAI's shape has)
    EXPECT_GE(ja["choices"][i]["logprobs"]["top_logprobs"][0].size(), 1u);
    EXPECT_LE(ja["choices"][i]["logprobs"]["top_logprobs"][0].size(), 2u);
  }
  EXPECT_EQ(ja["usage"]["prompt_tokens"], 3) << "the prompt is counted once for n choices";
  // echo + logprobs + max_tokens 0: the prompt scored, nothing generated
  auto sc = post(c, "/v1/completions", json{{"model", "tiny"}, {"prompt", "score me"}, {"max_tokens", 0}, {"echo", true}, {"logprobs", 1}}.dump());
  ASSERT_EQ(sc->status, 200) << sc->body;
  const json js = json::parse(sc->body);
  EXPECT_EQ(js["choices"][0]["text"], "score me");
  const json& lp = js["choices"][0]["logprobs"];
  ASSERT_EQ(lp["tokens"].size(), 8u);
  EXPECT_TRUE(lp["token_logprobs"][0].is_null());
  for (int i = 1; i < 8; ++i) EXPECT_LT(lp["token_logprobs"][i].get<double>(), 0.0);
  EXPECT_EQ(lp["text_offset"][7], 7);
  EXPECT_EQ(js["usage"]["completion_tokens"], 0);
  auto health = c.Get("/health");
  EXPECT_EQ(json::parse(health->body)["status"], "ok");
}

// A harmony model (GPT-OSS's chat format) states the request's reasoning_effort in its system
// message: "high" is one token longer than "low" with a byte-level vocabulary; "minimal" reads as
// low; the reply (this vocabulary has no channel tokens) is all content, with no reasoning.
TEST(Server, HarmonyChatTakesTheReasoningEffort) {
  TinyModel m;
  ServeOptions o;
  o.chat_template = "harmony";
  RunningServer s(m, o);
  httplib::Client c("127.0.0.1", s.port());
  auto prompt_tokens = [&](const std::string& effort, json* reply) {
    const json body = {{"model", "tiny"}, {"messages", {{{"role", "user"}, {"content", "hi"}}}}, {"max_tokens", 3},
                       {"temperature", 0}, {"reasoning_effort", effort}};
    auto r = c.Post("/v1/chat/completions", body.dump(), "application/json");
    EXPECT_TRUE(r && r->status == 200) << (r ? r->body : "no response");
    *reply = json::parse(r->body);
    return (*reply)["usage"]["prompt_tokens"].get<int>();
  };
  json low, high, minimal;
  const int n_low = prompt_tokens("low", &low), n_high = prompt_tokens("high", &high);
  EXPECT_EQ(n_high, n_low + 1);
  EXPECT_EQ(prompt_tokens("minimal", &minimal), n_low);
  const json& msg = high["choices"][0]["message"];
  EXPECT_EQ(msg["reasoning_content"], "");
  EXPECT_TRUE(msg["content"].is_string());
}

TEST(Server, HostileRequestsGetTheRight4xxAndServingGoesOn) {
  TinyModel m;
  ServeOptions o;
  o.max_body_bytes = 64 * 1024;
  o.n_ctx = 256;
  RunningServer s(m, o);
  httplib::Client c("127.0.0.1", s.port());
  struct Case {
    std::string path, body;
    int status;
    std::string param;
  };
  const std::vector<Case> cases = {
      {"/v1/chat/completions", "{not json", 400, ""},
      {"/v1/chat/completions", "[1,2]", 400, ""},
      {"/v1/chat/completions", R"({"messages":[{"role":"user","content":"x"}]})", 400, "model"},
      {"/v1/chat/completions", R"({"model":"tiny"})", 400, "messages"},
      {"/v1/chat/completions", R"({"model":"tiny","messages":[]})", 400, "messages"},
      {"/v1/chat/completions", R"({"model":"tiny","messages":"hi"})", 400, "messages"},
      {"/v1/chat/completions", R"({"model":"tiny","messages":[{"role":"wizard","content":"x"}]})", 400, "messages[0].role"},
      {"/v1/chat/completions", R"({"model":"tiny","messages":[{"role":"user","content":5}]})", 400, "messages[0].content"},
      {"/v1/chat/completions", R"({"model":"tiny","messages":[{"role":"user","content":"x"}],"max_tokens":"10"})", 400, "max_tokens"},
      {"/v1/chat/completions", R"({"model":"tiny","messages":[{"role":"user","content":"x"}],"max_tokens":1000000000})", 400, "max_tokens"},
      {"/v1/chat/completions", R"({"model":"tiny","messages":[{"role":"user","content":"x"}],"max_tokens":-1})", 400, "max_tokens"},
      {"/v1/chat/completions", R"({"model":"tiny","messages":[{"role":"user","content":"x"}],"n":0})", 400, "n"},
      {"/v1/chat/completions", R"({"model":"tiny","messages":[{"role":"user","content":"x"}],"n":1000})", 400, "n"},
      {"/v1/chat/completions", R"({"model":"tiny","messages":[{"role":"user","content":"x"}],"temperature":7})", 400, "temperature"},
      {"/v1/chat/completions", R"({"model":"tiny","messages":[{"role":"user","content":"x"}],"top_p":"high"})", 400, "top_p"},
      {"/v1/chat/completions", R"({"model":"tiny","messages":[{"role":"user","content":"x"}],"stop":[1,2]})", 400, "stop"},
      {"/v1/chat/completions", R"({"model":"tiny","messages":[{"role":"user","content":"x"}],"top_logprobs":3})", 400, "top_logprobs"},
      {"/v1/chat/completions", R"({"model":"tiny","messages":[{"role":"user","content":"x"}],"logprobs":true,"top_logprobs":99})", 400, "top_logprobs"},
      {"/v1/chat/completions", R"({"model":"tiny","messages":[{"role":"user","content":"x"}],"stream_options":{"include_usage":true}})", 400, "stream_options"},
      {"/v1/chat/completions", R"({"model":"gpt-4o","messages":[{"role":"user","content":"x"}]})", 404, "model"},
      {"/v1/chat/completions", R"({"model":"tiny","messages":[{"role":"user","content":"x"}],"reasoning_effort":"extreme"})", 400, "reasoning_effort"},
      {"/v1/completions", R"({"model":"tiny","prompt":123})", 400, "prompt"},
      {"/v1/completions", R"({"model":"tiny","prompt":[1, 99999999]})", 400, "prompt"},
      {"/v1/completions", R"({"model":"tiny","prompt":[-1]})", 400, "prompt"},
      {"/v1/completions", R"({"model":"tiny","prompt":"x","logprobs":true})", 400, "logprobs"},
      {"/v1/completions", R"({"model":"tiny","prompt":")" + std::string(300, 'a') + R"("})", 400, "prompt"},
      {"/v1/completions", R"({"model":"tiny","prompt":"x","echo":"yes"})", 400, "echo"},
      // the hardening issue's cases: 2^63 passed the range check as a double; null content was a 200;
      // logit_bias was silently ignored (now applied, so its keys and values are checked)
      {"/v1/chat/completions", R"({"model":"tiny","messages":[{"role":"user","content":"x"}],"max_tokens":9223372036854775808})", 400, "max_tokens"},
      {"/v1/completions", R"({"model":"tiny","prompt":"x","max_tokens":18446744073709551615})", 400, "max_tokens"},
      {"/v1/chat/completions", R"({"model":"tiny","messages":[{"role":"user","content":null}]})", 400, "messages[0].content"},
      {"/v1/chat/completions", R"({"model":"tiny","messages":[{"role":"user"}]})", 400, "messages[0].content"},
      {"/v1/chat/completions", R"({"model":"tiny","messages":[{"role":"user","content":"x"}],"logit_bias":{"a":5}})", 400, "logit_bias"},
      {"/v1/chat/completions", R"({"model":"tiny","messages":[{"role":"user","content":"x"}],"logit_bias":{"5":500}})", 400, "logit_bias"},
      {"/v1/chat/completions", R"({"model":"tiny","messages":[{"role":"user","content":"x"}],"logit_bias":{"99999999":1}})", 400, "logit_bias"},
      {"/v1/chat/completions", R"({"model":"tiny","messages":[{"role":"user","content":"x"}],"logit_bias":[1]})", 400, "logit_bias"},
  };
  for (const Case& k : cases) {
    auto r = post(c, k.path, k.body);
    ASSERT_TRUE(r) << k.body;
    EXPECT_EQ(r->status, k.status) << k.body << " -> " << r->body;
    const json j = json::parse(r->body, nullptr, false);
    ASSERT_TRUE(j.is_object() && j.contains("error")) << r->body;
    EXPECT_TRUE(j["error"]["message"].is_string());
    if (!k.param.empty()) {
      EXPECT_EQ(j["error"]["param"], k.param) << k.body;
    }
  }
  // too large a body: 413 with an OpenAI error object
  auto big = post(c, "/v1/completions", R"({"model":"tiny","prompt":")" + std::string(100 * 1024, 'a') + R"("})");
  ASSERT_TRUE(big);
  EXPECT_EQ(big->status, 413);
  EXPECT_TRUE(json::parse(big->body, nullptr, false).contains("error")) << big->body;
  auto unknown = c.Get("/v1/nothing");
  EXPECT_EQ(unknown->status, 404);
  EXPECT_TRUE(json::parse(unknown->body, nullptr, false).contains("error"));
  // raw garbage on the socket does not take the server down
  raw_http(s.port(), "GARBAGE\r\n\r\n");
  raw_http(s.port(), "POST /v1/completions HTTP/1.1\r\nContent-Length: 100\r\n\r\n{\"model\"", 0);  // leaves mid-body
  // and it still answers
  auto ok = post(c, "/v1/chat/completions", chat_body("still there?", 3).dump());
  ASSERT_TRUE(ok);
  EXPECT_EQ(ok->status, 200) << ok->body;
}

TEST(Server, CorsOnlyForListedOrigins) {
  TinyModel m;
  {
    RunningServer s(m, ServeOptions{});  // default: no CORS headers at all
    httplib::Client c("127.0.0.1", s.port());
    auto r = c.Get("/v1/models", {{"Origin", "https://evil.example"}});
    ASSERT_TRUE(r);
    EXPECT_FALSE(r->has_header("Access-Control-Allow-Origin"));
  }
  ServeOptions o;
  o.cors_origins = {"https://app.example"};
  RunningServer s(m, o);
  httplib::Client c("127.0.0.1", s.port());
  auto pre = c.Options("/v1/chat/completions", {{"Origin", "https://app.example"}, {"Access-Control-Request-Method", "POST"}});
  ASSERT_TRUE(pre);
  EXPECT_EQ(pre->status, 204);
  EXPECT_EQ(pre->get_header_value("Access-Control-Allow-Origin"), "https://app.example");
  EXPECT_NE(pre->get_header_value("Access-Control-Allow-Headers").find("Authorization"), std::string::npos);
  auto ok = c.Post("/v1/chat/completions", {{"Origin", "https://app.example"}}, chat_body("hi", 2).dump(), "application/json");
  EXPECT_EQ(ok->status, 200);
  EXPECT_EQ(ok->get_header_value("Access-Control-Allow-Origin"), "https://app.example");
  auto other = c.Get("/v1/models", {{"Origin", "https://evil.example"}});
  EXPECT_FALSE(other->has_header("Access-Control-Allow-Origin"));
}

TEST(Server, KeysQuotasAndUsageRecords) {
  TinyModel m;
  TempDir dir;
  const std::string k_alice = "sk-alice-secret", k_bob = "sk-bob-secret", k_carol = "sk-carol";
  const json keys = {{"keys",
                      {{{"name", "alice"}, {"sha256", sha256_hex(k_alice)}, {"requests_per_minute", 3}},
                       {{"name", "bob"}, {"sha256", sha256_hex(k_bob)}, {"tokens_per_day", 60}},
                       {{"name", "carol"}, {"sha256", sha256_hex(k_carol)}, {"models", {"other"}}}}}};
  write_bytes(dir / "keys.json", keys.dump());
  ServeOptions o;
  o.keys_file = dir / "keys.json";
  o.usage_log = dir / "usage.jsonl";
  RunningServer s(m, o);
  httplib::Client c("127.0.0.1", s.port());
  const std::string body = chat_body("secret prompt text", 4).dump();
  EXPECT_EQ(post(c, "/v1/chat/completions", body)->status, 401);
  EXPECT_EQ(post(c, "/v1/chat/completions", body, "sk-wrong")->status, 401);
  httplib::Headers basic = {{"Authorization", "Basic abc"}};
  EXPECT_EQ(c.Post("/v1/chat/completions", basic, body, "application/json")->status, 401);
  EXPECT_EQ(c.Get("/v1/models")->status, 401);
  // alice: 3 requests per minute, the 4th is refused with Retry-After
  for (int i = 0; i < 3; ++i) EXPECT_EQ(post(c, "/v1/chat/completions", body, k_alice)->status, 200);
  auto limited = post(c, "/v1/chat/completions", body, k_alice);
  EXPECT_EQ(limited->status, 429);
  EXPECT_TRUE(limited->has_header("Retry-After"));
  EXPECT_GE(std::stoi(limited->get_header_value("Retry-After")), 1);
  EXPECT_EQ(json::parse(limited->body)["error"]["type"], "rate_limit_error");
  // bob: 60 tokens a day; a request uses 41, so the second passes and the third is refused
  auto first = post(c, "/v1/chat/completions", body, k_bob);
  ASSERT_EQ(first->status, 200);
  EXPECT_EQ(json::parse(first->body)["usage"]["total_tokens"], 41);
  EXPECT_EQ(post(c, "/v1/chat/completions", body, k_bob)->status, 200);
  EXPECT_EQ(post(c, "/v1/chat/completions", body, k_bob)->status, 429);
  // carol may not use this model
  EXPECT_EQ(post(c, "/v1/chat/completions", body, k_carol)->status, 403);

  // usage records: key names, statuses, tokens; never the text or the key
  const std::string log = read_bytes(dir / "usage.jsonl");
  EXPECT_EQ(log.find("secret prompt"), std::string::npos);
  EXPECT_EQ(log.find(k_alice), std::string::npos);
  int lines = 0, alice_ok = 0, alice_429 = 0;
  std::istringstream in(log);
  for (std::string line; std::getline(in, line); ++lines) {
    const json r = json::parse(line);
    EXPECT_TRUE(r.contains("time") && r.contains("status") && r.contains("latency_ms"));
    if (r["key"] == "alice" && r["status"] == 200) {
      ++alice_ok;
      EXPECT_EQ(r["completion_tokens"], 4);
    }
    if (r["key"] == "alice" && r["status"] == 429) ++alice_429;
  }
  EXPECT_EQ(lines, 12);  // 4 × 401 (incl. GET /v1/models), alice 3 + 1, bob 2 + 1, carol 1
  EXPECT_EQ(alice_ok, 3);
  EXPECT_EQ(alice_429, 1);
  const auto summary = summarize_usage(dir / "usage.jsonl", UsageThresholds{}, nullptr);
  ASSERT_EQ(summary.size(), 4u);  // "-" (no key), alice, bob, carol
}

TEST(Server, ConcurrentGreedyRequestsEqualSingleOnesAndDistillRun) {
  TinyModel m;
  ServeOptions o;
  o.n_parallel = 8;
  RunningServer s(m, o);
  const std::vector<std::string> prompts = {"one", "two two", "three three three", "four", "a b c d e", "xyz", "hello world", "?"};
  std::vector<std::string> single;
  {
    httplib::Client c("127.0.0.1", s.port());
    for (const auto& p : prompts) {
      auto r = post(c, "/v1/chat/completions", chat_body(p, 20).dump());
      ASSERT_EQ(r->status, 200);
      single.push_back(json::parse(r->body)["choices"][0]["message"]["content"]);
    }
  }
  std::vector<std::future<std::string>> futures;
  for (const auto& p : prompts)
    futures.push_back(std::async(std::launch::async, [&, p] {
      httplib::Client c("127.0.0.1", s.port());
      auto r = post(c, "/v1/chat/completions", chat_body(p, 20).dump());
      return r && r->status == 200 ? json::parse(r->body)["choices"][0]["message"]["content"].get<std::string>() : "<failed>";
    }));
  for (size_t i = 0; i < prompts.size(); ++i) EXPECT_EQ(futures[i].get(), single[i]) << prompts[i];

  // `distill run` greedy on the same model directory prints the same reply
  TempDir dir;
  m.save(dir / "model");
  const std::string cmd = std::string(DISTILL_BINARY) + " run " + dir / "model" + " -p 'hello world' --temp 0 -n 20 2>/dev/null";
  FILE* p = popen(cmd.c_str(), "r");
  std::string out;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, n);
  ASSERT_EQ(pclose(p), 0) << out;
  EXPECT_EQ(out, single[6]);
}

TEST(Server, QueueFullAnswers503AndLeavingClientsAreCancelled) {
  TinyModel m(256, 4);  // slow enough (~0.5 ms a token) that a 1000-token stream outlives its client
  ServeOptions o;
  o.n_parallel = 1, o.max_queue = 1, o.n_ctx = 1024;
  RunningServer s(m, o);
  // A stream that the client abandons after its first bytes: cancelled, its slot freed.
  json long_stream = chat_body("long", 1000, true);
  long_stream["temperature"] = 1.0;
  long_stream["seed"] = 1;
  const std::string part = raw_http(s.port(), post_request("/v1/chat/completions", long_stream.dump()), 600);
  EXPECT_NE(part.find("200"), std::string::npos);
  httplib::Client c("127.0.0.1", s.port());
  int64_t cancelled = 0;
  for (int i = 0; i < 100 && cancelled < 1; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    cancelled = metric(c.Get("/metrics")->body, "distill_cancelled_total");
  }
  EXPECT_GE(cancelled, 1) << "the abandoned stream was not cancelled";

  // One slot, one queue place: of several long requests at once, some get 503 + Retry-After.
  std::vector<std::future<std::pair<int, std::string>>> fs;
  for (int i = 0; i < 6; ++i)
    fs.push_back(std::async(std::launch::async, [&] {
      httplib::Client cl("127.0.0.1", s.port());
      cl.set_read_timeout(120, 0);
      auto r = post(cl, "/v1/chat/completions", chat_body("busy", 300).dump());
      return r ? std::make_pair(r->status, r->get_header_value("Retry-After")) : std::make_pair(-1, std::string());
    }));
  int ok = 0, busy = 0;
  for (auto& f : fs) {
    auto [status, retry] = f.get();
    if (status == 200) ++ok;
    if (status == 503) {
      ++busy;
      EXPECT_EQ(retry, "1");
    }
  }
  EXPECT_GE(ok, 1);
  EXPECT_GE(busy, 1);
  EXPECT_EQ(ok + busy, 6);
  // the engine frees a slot just after the last bytes of its answer leave: a client can read the
  // answer first (seen once on a loaded machine), so wait for the slot (up to 5 s)
  json h;
  for (int i = 0; i < 250; ++i) {
    h = json::parse(c.Get("/health")->body);
    if (h["slots_busy"] == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(h["slots_busy"], 0) << "a slot stayed busy after every request was answered";
}

TEST(Server, LoadThirtyTwoStreamingClients) {
  TinyModel m;
  ServeOptions o;
  o.n_parallel = 8, o.max_queue = 64;
  RunningServer s(m, o);
  auto rss_kb = [] {
    std::ifstream in("/proc/self/status");
    for (std::string line; std::getline(in, line);)
      if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
    return 0L;
  };
  std::atomic<int> failures{0}, streams{0};
  auto client = [&](int id, int requests) {
    for (int r = 0; r < requests; ++r) {
      json body = chat_body("client " + std::to_string(id) + " request " + std::to_string(r), 24 + (id % 5) * 8, true);
      body["temperature"] = 0.8;
      body["seed"] = id * 100 + r;
      body["stream_options"] = {{"include_usage", true}};
      const RawResponse resp = parse_response(raw_http(s.port(), post_request("/v1/chat/completions", body.dump())));
      if (resp.status != 200) {
        ++failures;
        continue;
      }
      std::string finish;
      check_chat_stream(resp.body, &finish);
      const auto events = sse_events(resp.body);
      const json usage = json::parse(events[events.size() - 2]);  // before [DONE]
      if (!usage["usage"].is_object() || usage["usage"]["completion_tokens"].get<int>() < 1) ++failures;
      ++streams;
    }
  };
  // warm-up round, then measure memory across the load
  client(0, 2);
  const long before = rss_kb();
  std::vector<std::thread> threads;
  for (int i = 0; i < 32; ++i) threads.emplace_back(client, i, 4);
  for (auto& t : threads) t.join();
  const long after = rss_kb();
  EXPECT_EQ(failures.load(), 0);
  EXPECT_EQ(streams.load(), 2 + 32 * 4);
  EXPECT_LT(after - before, 150 * 1024) << "RSS grew from " << before << " kB to " << after << " kB";
  httplib::Client c("127.0.0.1", s.port());
  const std::string metrics = c.Get("/metrics")->body;
  EXPECT_EQ(metric(metrics, "distill_queue_depth"), 0);
  EXPECT_GT(metric(metrics, "distill_completion_tokens_total"), 32 * 4 * 10);
}

}  // namespace distill

namespace distill {

// The owner's tools: `distill keys add` prints a key once and stores only its hash; `distill usage`
// totals a log per key and flags the key whose traffic looks like soft-label harvesting.
TEST(ServerTools, KeysAddAndUsageReport) {
  using namespace distill::test;
  TempDir dir;
  auto r = run_distill("keys add " + (dir / "keys.json") + " --name alice --rpm 10");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const size_t at = r.output.find("\nsk-distill-");  // the key is printed alone on its line
  ASSERT_NE(at, std::string::npos) << r.output;
  std::string key = r.output.substr(at + 1, r.output.find('\n', at + 1) - at - 1);
  ASSERT_EQ(key.rfind("sk-distill-", 0), 0u) << r.output;
  const std::string stored = read_bytes(dir / "keys.json");
  EXPECT_EQ(stored.find(key), std::string::npos) << "the key itself must not be stored";
  KeyStore ks = KeyStore::load(dir / "keys.json");
  ASSERT_TRUE(ks.find(key).has_value());
  EXPECT_EQ(ks.key(*ks.find(key)).requests_per_minute, 10);
  EXPECT_FALSE(ks.find(key + "x").has_value());
  EXPECT_NE(run_distill("keys add " + (dir / "keys.json") + " --name alice").exit_code, 0) << "duplicate name";

  // a log: "app" repeats a few prompts without log-probs; "scraper" asks log-probs of many distinct prompts
  std::string log;
  for (int i = 0; i < 120; ++i) {
    json app = {{"time", "2026-11-23T10:00:00.000Z"}, {"key", "app"}, {"status", 200}, {"prompt_tokens", 20}, {"completion_tokens", 50},
                {"latency_ms", 100.0}, {"logprobs", false}, {"n", 1}, {"prompt_sha256", std::to_string(i % 3)}};
    json scr = {{"time", "2026-11-23T10:00:00.000Z"}, {"key", "scraper"}, {"status", 200}, {"prompt_tokens", 30}, {"completion_tokens", 200},
                {"latency_ms", 300.0}, {"logprobs", true}, {"top_logprobs", 20}, {"n", 1}, {"prompt_sha256", "p" + std::to_string(i)}};
    log += app.dump() + "\n" + scr.dump() + "\n";
  }
  log += "not json\n";
  write_bytes(dir / "usage.jsonl", log);
  r = run_distill("usage " + (dir / "usage.jsonl"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const size_t flagged = r.output.find("Possible extraction");
  ASSERT_NE(flagged, std::string::npos) << r.output;
  const std::string flags = r.output.substr(flagged);
  EXPECT_NE(flags.find("  scraper ("), std::string::npos) << r.output;
  EXPECT_EQ(flags.find("  app ("), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("skipped"), std::string::npos) << "the bad line is reported";
}

}  // namespace distill

#include "formats/teacher_dataset.h"

namespace distill {

// `distill label` with a remote `distill serve` as the teacher gives the same answers and top-k
// log-probabilities as the same model used as a local teacher: the server is a white-box teacher.
// The model is built to write printable ASCII (every embedding has a large positive first
// component; lm_head's first column is +1 for printable bytes and −1 for the rest), so its token
// strings map back to single student tokens.
TEST(ServerTools, RemoteServeTeacherEqualsLocalTeacher) {
  using namespace distill::test;
  TinyModel m(32, 1, 5);
  ModelConfig c = m.model.config;
  c.tie_word_embeddings = false;
  Model model = Model::random(c, DType::F32, 5, 0.02f);
  float* emb = model.weights.tok_embd.data<float>();
  float* head = model.weights.lm_head.data<float>();
  for (int64_t t = 0; t < c.n_vocab; ++t) {
    emb[t * c.n_embd] = 10.0f;
    head[t * c.n_embd] = (t >= 0x20 && t < 0x7f) ? 1.0f : -1.0f;
    for (int64_t d = 1; d < c.n_embd; ++d) head[t * c.n_embd + d] *= 50.0f;  // some preference among printable bytes
  }
  m.model = std::move(model);
  TempDir dir;
  m.save(dir / "teacher");
  write_bytes(dir / "prompts.jsonl", "{\"prompt\": \"abc\"}\n{\"prompt\": \"Hello\"}\n{\"prompt\": \"12 + 30 =\"}\n");
  RunningServer s(m, ServeOptions{});
  const std::string common = " --prompts " + (dir / "prompts.jsonl") + " --top-k 5 --max-tokens 12 --temperature 0";
  auto remote = run_distill("label --teacher http://127.0.0.1:" + std::to_string(s.port()) + "/v1 --model tiny --tokenizer " +
                            (dir / "teacher") + " -o " + (dir / "remote") + common);
  ASSERT_EQ(remote.exit_code, 0) << remote.output;
  auto local = run_distill("label --teacher " + (dir / "teacher") + " -o " + (dir / "local") + common);
  ASSERT_EQ(local.exit_code, 0) << local.output;
  std::map<uint64_t, TeacherRecord> l, r;
  read_records(dir / "local/records.bin", [&](TeacherRecord&& x) { l[x.prompt_index] = std::move(x); });
  read_records(dir / "remote/records.bin", [&](TeacherRecord&& x) { r[x.prompt_index] = std::move(x); });
  ASSERT_EQ(l.size(), 3u);
  ASSERT_EQ(r.size(), 3u);
  int64_t soft = 0;
  for (const auto& [i, lr] : l) {
    const TeacherRecord& rr = r.at(i);
    EXPECT_EQ(rr.completion, lr.completion) << "prompt " << i;
    for (size_t j = 0; j < rr.completion.size() && j < lr.completion.size(); ++j) {
      if (!rr.soft[j]) continue;
      ++soft;
      for (int k = 0; k < 5; ++k) {
        EXPECT_EQ(rr.topk_ids[j * 5 + size_t(k)], lr.topk_ids[j * 5 + size_t(k)]) << "prompt " << i << " position " << j;
        EXPECT_NEAR(rr.topk_logp[j * 5 + size_t(k)], lr.topk_logp[j * 5 + size_t(k)], 2e-3) << "prompt " << i << " position " << j;
      }
    }
  }
  std::printf("[ measured ] %lld of 36 positions got soft labels through the server\n", (long long)soft);
  EXPECT_GE(soft, 30) << "of 36 positions, soft labels mapped back";
}

}  // namespace distill

namespace distill {

// HTTPS: serve --tls-cert/--tls-key with a self-signed certificate made here (openssl). A client
// that trusts the certificate talks to it; plain HTTP to the TLS port gets nothing; `label` against
// it works with --ca-file and says what is wrong without; bad files are refused at start.
TEST(ServerTls, SelfSignedCertificateServesHttpsAndLabels) {
  using namespace distill::test;
  TempDir dir;
  const std::string gen = "openssl req -x509 -newkey rsa:2048 -nodes -keyout " + (dir / "key.pem") + " -out " +
                          (dir / "cert.pem") + " -days 1 -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1 2>/dev/null";
  if (std::system(gen.c_str()) != 0) GTEST_SKIP() << "the openssl command is not available to make a certificate";
  TinyModel m;
  m.save(dir / "model");
  ServeOptions o;
  o.tls_cert = dir / "cert.pem", o.tls_key = dir / "key.pem";
  RunningServer s(m, o);

  httplib::SSLClient tls("127.0.0.1", s.port());
  tls.set_ca_cert_path((dir / "cert.pem").c_str());
  tls.enable_server_certificate_verification(true);
  auto res = tls.Post("/v1/chat/completions", R"({"model":"tiny","messages":[{"role":"user","content":"hi"}],"max_tokens":4})",
                      "application/json");
  ASSERT_TRUE(res) << httplib::to_string(res.error());
  EXPECT_EQ(res->status, 200) << res->body;
  EXPECT_NE(res->body.find("chat.completion"), std::string::npos);

  httplib::Client plain("127.0.0.1", s.port());
  plain.set_read_timeout(2, 0);
  EXPECT_FALSE(plain.Get("/health")) << "plain HTTP to the TLS port must not be answered";

  write_bytes(dir / "prompts.jsonl", "{\"prompt\": \"abc\"}\n");
  const std::string label = "label --teacher https://127.0.0.1:" + std::to_string(s.port()) + "/v1 --model tiny --tokenizer " +
                            (dir / "model") + " --prompts " + (dir / "prompts.jsonl") + " --max-tokens 4 --retries 0";
  auto ok = run_distill(label + " --ca-file " + (dir / "cert.pem") + " -o " + (dir / "ds"));
  EXPECT_EQ(ok.exit_code, 0) << ok.output;
  auto untrusted = run_distill(label + " -o " + (dir / "ds2"));
  EXPECT_NE(untrusted.output.find("--ca-file"), std::string::npos) << untrusted.output;

  ServeOptions bad;
  bad.tls_cert = dir / "key.pem", bad.tls_key = dir / "cert.pem";  // swapped
  EXPECT_THROW(OpenAIServer(m.model, m.tok, bad), Error);
  bad.tls_key.clear();
  EXPECT_THROW(OpenAIServer(m.model, m.tok, bad), Error);
}

}  // namespace distill
