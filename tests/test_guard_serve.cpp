// The guard and the watermark in a live `distill serve` on loopback, on a clock the test drives:
// a scraping key is flagged, loses its log-probabilities, is throttled, then blocked — across
// restarts that keep its state and the day's quota use; the owner reads the reasons on /v1/guard
// and reverses the verdict; other keys are untouched; answers to a watermarked key carry the mark.
#include "guard_sim.h"
#include "sample/watermark.h"
#include "serve_fixture.h"

#include <atomic>
#include <map>
#include <mutex>
#include <fstream>

namespace distill {

using json = nlohmann::json;
using namespace distill::test;

namespace {

struct GuardedServer {
  TinyModel m;
  TempDir dir;
  std::atomic<double> clock{1.8e9};
  const std::string owner = "sk-owner", scraper = "sk-scraper", person = "sk-person", marked = "sk-marked";

  // Writes the keys file with these guard thresholds and returns the server's options.
  ServeOptions options(const json& guard) {
    const json keys = {{"keys",
                        {{{"name", "owner"}, {"sha256", sha256_hex(owner)}, {"admin", true}},
                         {{"name", "scraper"}, {"sha256", sha256_hex(scraper)}},
                         {{"name", "person"}, {"sha256", sha256_hex(person)}, {"tokens_per_day", 50}},
                         {{"name", "marked"}, {"sha256", sha256_hex(marked)}, {"watermark", true}}}},
                       {"guard", guard}};
    write_bytes(dir / "keys.json", keys.dump());
    ServeOptions o;
    o.keys_file = dir / "keys.json";
    o.guard_options.state_file = dir / "guard.json";
    o.guard_options.log_file = dir / "guard.log";
    o.guard_options.clock = [this] { return clock.load(); };
    o.watermark.key = watermark_key_from_secret("owner's secret");
    o.watermark.delta = 2.0f;
    return o;
  }
  // One template-sweep request of the scraper, 10 simulated seconds after the last.
  httplib::Result scrape(httplib::Client& c, int i) {
    clock = clock + 10.0;
    json b = chat_body("Answer in one sentence, then the answer alone. Question: what is item number " + std::to_string(i) + "?", 3);
    b["logprobs"] = true, b["top_logprobs"] = 5;
    return post(c, "/v1/chat/completions", b.dump(), scraper);
  }
};

}  // namespace

TEST(GuardServe, AScraperIsStrippedThrottledBlockedAcrossRestartsAndTheOwnerReversesIt) {
  GuardedServer g;
  const std::string body = chat_body("secret prompt text", 4).dump();
  // The owner's alert receiver (--guard-webhook).
  httplib::Server hook;
  std::mutex hook_mu;
  std::vector<json> alerts;
  hook.Post("/alerts", [&](const httplib::Request& req, httplib::Response&) {
    std::lock_guard<std::mutex> lock(hook_mu);
    alerts.push_back(json::parse(req.body));
  });
  const int hook_port = hook.bind_to_any_port("127.0.0.1");
  std::thread hook_thread([&] { hook.listen_after_bind(); });
  int first_stripped = -1;
  {
    // Throttle and block off: the scraper ends at strip_logprobs.
    ServeOptions o = g.options({{"min_requests", 10}, {"window", 40}, {"alert", 1.2}, {"strip_logprobs", 1.6}, {"throttle", 0}, {"block", 0}});
    o.guard_options.webhook_url = "http://127.0.0.1:" + std::to_string(hook_port) + "/alerts";
    RunningServer s(g.m, o);
    httplib::Client c("127.0.0.1", s.port());
    EXPECT_EQ(post(c, "/v1/chat/completions", body, g.person)->status, 200);  // 41 of the person's 50 tokens
    for (int i = 0; i < 30; ++i) {
      auto r = g.scrape(c, i);
      ASSERT_EQ(r->status, 200) << r->body;
      const json j = json::parse(r->body);
      if (j["choices"][0]["logprobs"].is_null() && first_stripped < 0) first_stripped = i;
      if (first_stripped >= 0) EXPECT_TRUE(j["choices"][0]["logprobs"].is_null()) << "stripping stays on: request " << i;
    }
  }
  EXPECT_GE(first_stripped, 10) << "nothing happens before min_requests";
  for (int i = 0; i < 100; ++i) {  // the webhook is posted off the request path
    {
      std::lock_guard<std::mutex> lock(hook_mu);
      if (!alerts.empty()) break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  hook.stop();
  hook_thread.join();
  ASSERT_EQ(alerts.size(), 1u) << "one rise, one alert";
  EXPECT_EQ(alerts[0]["key"], "scraper");
  EXPECT_EQ(alerts[0]["to"], "strip_logprobs");
  EXPECT_FALSE(alerts[0]["reasons"].empty());
  std::printf("[guard] the scraper's log-probabilities were stripped from request %d on\n", first_stripped);
  {
    // Restarted with throttling on: the state file brought the scraper's window back.
    RunningServer s(g.m, g.options({{"min_requests", 10}, {"window", 40}, {"throttle", 2.2}, {"throttle_rpm", 2}, {"block", 0}}));
    httplib::Client c("127.0.0.1", s.port());
    EXPECT_EQ(post(c, "/v1/chat/completions", body, g.person)->status, 200) << "82 tokens used: still under 50 before it";
    int throttled = 0;
    for (int i = 30; i < 40; ++i) {
      auto r = g.scrape(c, i);
      if (r->status == 429) {
        ++throttled;
        EXPECT_TRUE(r->has_header("Retry-After"));
        EXPECT_EQ(json::parse(r->body)["error"]["code"], "guard_throttled");
      }
    }
    EXPECT_GE(throttled, 4) << "2 requests per minute at one every 10 s";
  }
  RunningServer s(g.m, g.options({{"min_requests", 10}, {"window", 40}}));
  httplib::Client c("127.0.0.1", s.port());
  auto quota = post(c, "/v1/chat/completions", body, g.person);
  EXPECT_EQ(quota->status, 429) << "the day's 82 tokens survived two restarts";
  int blocked = 0;
  for (int i = 40; i < 50; ++i) {
    auto r = g.scrape(c, i);
    if (r->status != 403) continue;
    ++blocked;
    EXPECT_EQ(json::parse(r->body)["error"]["code"], "guard_blocked");
  }
  EXPECT_GE(blocked, 5);

  // The owner's view and decision.
  EXPECT_EQ(c.Get("/v1/guard", {{"Authorization", "Bearer " + g.scraper}})->status, 403) << "admin keys only";
  auto report = c.Get("/v1/guard", {{"Authorization", "Bearer " + g.owner}});
  ASSERT_EQ(report->status, 200);
  const json rep = json::parse(report->body);
  json scraper_entry, person_entry;
  for (const json& k : rep["keys"]) {
    if (k["key"] == "scraper") scraper_entry = k;
    if (k["key"] == "person") person_entry = k;
  }
  ASSERT_FALSE(scraper_entry.is_null()) << rep.dump(2);
  EXPECT_EQ(scraper_entry["level"], "block");
  EXPECT_GE(scraper_entry["score"].get<double>(), 3.0);
  EXPECT_GE(scraper_entry["reasons"].size(), 3u) << scraper_entry.dump(2);
  EXPECT_NE(scraper_entry["reasons"].dump().find("100% over the key's whole history"), std::string::npos) << scraper_entry.dump(2);
  EXPECT_EQ(person_entry["level"], "none");
  EXPECT_EQ(post(c, "/v1/guard/keys/scraper", R"({"action": "forgive"})", g.owner)->status, 400);
  EXPECT_EQ(post(c, "/v1/guard/keys/nobody", R"({"action": "reset"})", g.owner)->status, 404);
  EXPECT_EQ(post(c, "/v1/guard/keys/scraper", R"({"action": "allow"})", g.scraper)->status, 403);
  ASSERT_EQ(post(c, "/v1/guard/keys/scraper", R"({"action": "allow"})", g.owner)->status, 200);
  EXPECT_EQ(g.scrape(c, 50)->status, 200) << "allowed by the owner";
  const json after = json::parse(g.scrape(c, 51)->body);
  EXPECT_FALSE(after["choices"][0]["logprobs"].is_null()) << "and its log-probabilities are back";

  // Every level change and the owner's decision are recorded.
  std::ifstream log(g.dir / "guard.log");
  std::string line, levels;
  bool owner_recorded = false;
  while (std::getline(log, line)) {
    const json e = json::parse(line);
    if (e["event"] == "level" && e["key"] == "scraper") levels += e["to"].get<std::string>() + " ";
    if (e["event"] == "owner") owner_recorded = e["action"] == "allow" && e["key"] == "scraper";
  }
  EXPECT_EQ(levels, "strip_logprobs throttle block ") << "alert is passed on the way; each rise is one record";
  EXPECT_TRUE(owner_recorded);

  // The same report offline, from the state file (the server saves it as it goes).
  const CliResult r = run_distill("usage --guard " + (g.dir / "guard.json"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("scraper"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("the owner set: allow"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("of prompts fill one template"), std::string::npos) << r.output;
  EXPECT_EQ(run_distill("usage --guard " + (g.dir / "nothing.json")).exit_code, 1);
}

TEST(GuardServe, AnswersToAWatermarkedKeyCarryTheMark) {
  GuardedServer g;
  RunningServer s(g.m, g.options(json::object()));
  httplib::Client c("127.0.0.1", s.port());
  WatermarkSettings w;
  w.key = watermark_key_from_secret("owner's secret");
  double z[2] = {0, 0};
  for (int k = 0; k < 2; ++k) {
    WatermarkDetector d(w);
    for (int i = 0; i < 4; ++i) {
      const json b = {{"model", "tiny"}, {"prompt", "Story " + std::to_string(i) + ":"}, {"max_tokens", 150}, {"temperature", 1.0}, {"seed", 7 + i}};
      auto r = post(c, "/v1/completions", b.dump(), k == 0 ? g.marked : g.person);
      if (k == 1 && r->status == 429) break;  // the person's daily tokens
      ASSERT_EQ(r->status, 200) << r->body;
      d.add(g.m.tok->encode(json::parse(r->body)["choices"][0]["text"].get<std::string>(), false));
    }
    z[k] = d.score().z;
  }
  std::printf("[watermark] served answers: z %.2f for the watermarked key, %.2f for another\n", z[0], z[1]);
  EXPECT_GT(z[0], 4.0);
  EXPECT_LT(z[1], 3.0);
}

// The simulation harness against a live server: a day of 65 people and 7 scraper keys of five
// kinds, every request over HTTP in time order on the guard's clock; the verdicts read back from
// /v1/guard. (GuardSimulation runs a larger population straight into the guard.)
TEST(GuardServe, LiveSimulationFlagsEveryScraperAndNoPerson) {
  test::SimPopulation pop(7);
  std::vector<test::SimRequest> reqs;
  for (auto [kind, n] : std::vector<std::pair<std::string, int>>{{"casual", 50}, {"heavy", 10}, {"developer", 5}})
    for (auto& r : pop.people(kind, n, 1)) reqs.push_back(r);
  std::map<std::string, int> per_actor;
  for (const char* kind : {"bulk", "template", "paraphrase", "slow", "split"})
    for (auto& r : pop.scrapers(kind, 1, 1))
      if (per_actor[r.actor]++ < 150) reqs.push_back(r);
  test::sort_by_time(reqs);

  GuardedServer g;
  json keys = {{"keys", json::array({{{"name", "owner"}, {"sha256", sha256_hex(g.owner)}, {"admin", true}}})}};
  std::map<std::string, std::string> kind_of;
  for (const auto& r : reqs)
    if (kind_of.emplace(r.actor, r.kind).second) keys["keys"].push_back({{"name", r.actor}, {"sha256", sha256_hex("sk-" + r.actor)}});
  write_bytes(g.dir / "sim-keys.json", keys.dump());
  ServeOptions o = g.options(json::object());
  o.keys_file = g.dir / "sim-keys.json";
  RunningServer s(g.m, o);
  httplib::Client c("127.0.0.1", s.port());
  const double t0 = g.clock;
  const int32_t eos = g.m.tok->stop_ids().at(0);
  int refused = 0;
  for (const test::SimRequest& r : reqs) {
    g.clock = t0 + r.t;
    // Answers as long as the simulated ones would be, without the time: a scraper's fixed short
    // max_tokens is kept (its answers are cut there); a person's answer ends at once on the end
    // of turn (forced by logit_bias), as an answer shorter than max_tokens would.
    json b = {{"model", "tiny"}, {"messages", {{{"role", "user"}, {"content", r.prompt}}}}, {"max_tokens", r.max_tokens},
              {"temperature", r.temperature}, {"n", r.n}};
    if (r.max_tokens <= 128) b["max_tokens"] = 1;  // the scrapers' fixed lengths, cut as theirs are
    else b["logit_bias"] = {{std::to_string(eos), 100}};
    if (r.logprobs) b["logprobs"] = true, b["top_logprobs"] = r.top_logprobs;
    auto res = post(c, "/v1/chat/completions", b.dump(), "sk-" + r.actor);
    ASSERT_TRUE(res);
    if (res->status != 200) ++refused;
  }
  auto report = c.Get("/v1/guard", {{"Authorization", "Bearer " + g.owner}});
  ASSERT_EQ(report->status, 200);
  std::map<std::string, std::pair<int, int>> flagged;  // kind → (flagged, actors)
  std::map<std::string, double> hours;
  const json rep = json::parse(report->body);
  for (const json& k : rep["keys"]) {
    const std::string kind = kind_of[k["key"].get<std::string>()];
    if (kind.empty()) continue;  // the owner
    auto& f = flagged[kind];
    ++f.second;
    if (k["level"] == "none") continue;
    ++f.first;
    hours[kind] = std::max(hours[kind], (k["flagged_at_s"].get<double>() - k["first_seen_s"].get<double>()) / 3600);
    EXPECT_TRUE(kind != "casual" && kind != "heavy" && kind != "developer") << k.dump(2);
  }
  std::printf("[guard live] %zu requests over HTTP, %d refused by the guard\n", reqs.size(), refused);
  for (const auto& [kind, f] : flagged)
    std::printf("[guard live] %-10s %d of %d flagged%s\n", kind.c_str(), f.first, f.second,
                f.first ? fmt::format(", within {:.2f} h", hours[kind]).c_str() : "");
  EXPECT_GE(flagged["casual"].second + flagged["heavy"].second + flagged["developer"].second, 50) << "most people came";
  for (const char* kind : {"bulk", "template", "paraphrase", "slow", "split"}) {
    EXPECT_GE(flagged[kind].second, 1) << kind;
    EXPECT_EQ(flagged[kind].first, flagged[kind].second) << kind;
  }
}

}  // namespace distill
