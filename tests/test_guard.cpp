// The extraction guard: its sketches and features on hand-made windows, and the simulation
// harness — people and scrapers of several kinds over three simulated days — with detection rate,
// false-positive rate and time to detection per kind.
#include "core/digest.h"
#include "guard_sim.h"
#include "serve/guard.h"
#include "test_util.h"

#include <map>

namespace distill {

TEST(GuardFeatures, SketchesSeeTemplatesAndParaphrasesNotUnrelatedText) {
  const PromptSketch a = sketch_text("Answer the question below in one sentence. Question: what is the capital of Peru?");
  const PromptSketch b = sketch_text("Answer the question below in one sentence. Question: what is the capital of Chad?");
  const PromptSketch c = sketch_text("my cat keeps knocking cups off the table, why does she do that");
  EXPECT_DOUBLE_EQ(sketch_similarity(a, a), 1.0);
  EXPECT_GT(sketch_similarity(a, b), 0.6) << "one template, another slot";
  EXPECT_LT(sketch_similarity(a, c), 0.15);
  EXPECT_DOUBLE_EQ(sketch_similarity(sketch_text("Hello   World"), sketch_text("hello world")), 1.0) << "case and spacing";
  EXPECT_EQ(sketch_similarity(PromptSketch{}, a), 0.0);
}

TEST(GuardFeatures, WindowFeaturesMeasureWhatTheySay) {
  std::vector<RequestTrace> w(40);
  for (size_t i = 0; i < w.size(); ++i) {
    w[i].time_s = 10.0 * double(i);  // a metronome
    w[i].soft_labels = i % 2 == 0;
    w[i].nearest = i < 20 ? 0.7 : 0.0;
    w[i].max_tokens = 64;
    w[i].length_capped = true;
  }
  std::map<std::string, FeatureValue> f;
  for (const FeatureValue& v : window_features(w, 360.0, 24)) f[v.name] = v;
  EXPECT_DOUBLE_EQ(f["soft_labels"].value, 0.5);
  EXPECT_DOUBLE_EQ(f["template"].value, 0.5);
  EXPECT_DOUBLE_EQ(f["regular_timing"].value, 0.0) << "equal gaps: no variation";
  EXPECT_DOUBLE_EQ(f["regular_timing"].strength, 1.0);
  EXPECT_NEAR(f["volume"].value, 40.0 / (390.0 / 3600.0) / 360.0, 1e-9) << "the key's rate over the fleet's median";
  EXPECT_DOUBLE_EQ(f["round_the_clock"].strength, 1.0);
  EXPECT_DOUBLE_EQ(f["length_targeting"].value, 1.0);
  EXPECT_DOUBLE_EQ(f["no_repeats"].value, 1.0);
  EXPECT_DOUBLE_EQ(f["coordinated"].value, 0.0);
}

namespace {

struct KindResult {
  int actors = 0, flagged = 0;
  double min_score = 1e9, max_score = 0;
  std::vector<double> hours_to_flag;
};

}  // namespace

// Three simulated days of 500 people and 15 scrapers (plus 3 groups of 4 keys splitting a job)
// through the guard, in time order on the guard's own clock.
TEST(GuardSimulation, EveryScraperKindIsFlaggedAndFewPeopleAre) {
  test::SimPopulation pop(2026);
  const double days = 3;
  std::vector<test::SimRequest> reqs;
  for (auto [kind, n] : std::vector<std::pair<std::string, int>>{{"casual", 400}, {"heavy", 60}, {"developer", 40}})
    for (auto& r : pop.people(kind, n, days)) reqs.push_back(r);
  for (const char* kind : {"bulk", "template", "paraphrase", "slow", "split"})
    for (auto& r : pop.scrapers(kind, 3, days)) reqs.push_back(r);
  test::sort_by_time(reqs);

  double clock = 0;
  GuardOptions o;
  o.clock = [&clock] { return clock; };
  Guard guard(o);
  Rng rng(1);
  std::map<std::string, std::string> kind_of;
  int refused = 0;
  for (const test::SimRequest& s : reqs) {
    clock = s.t;
    kind_of[s.actor] = s.kind;
    if (guard.check(s.actor).refuse) {
      ++refused;
      continue;
    }
    GuardRequest g;
    g.key = s.actor, g.origin = s.origin, g.time_s = s.t;
    g.prompt_hash = sha256_u64(s.prompt);
    g.sketch = sketch_text(s.prompt);
    g.logprobs = s.logprobs, g.top_logprobs = s.top_logprobs, g.greedy = s.temperature <= 0, g.n = s.n;
    g.max_tokens = s.max_tokens;
    g.length_capped = rng.uniform() < (s.max_tokens <= 128 ? 0.8 : 0.1);
    guard.observe(g);
  }
  std::map<std::string, KindResult> by_kind;
  std::vector<std::string> false_positives;
  for (const KeyReport& k : guard.report()) {
    KindResult& r = by_kind[kind_of[k.key]];
    ++r.actors;
    r.min_score = std::min(r.min_score, k.score), r.max_score = std::max(r.max_score, k.score);
    if (k.level == GuardLevel::none) continue;
    ++r.flagged;
    r.hours_to_flag.push_back((k.flagged_at_s - k.first_seen_s) / 3600.0);
    if (kind_of[k.key] == "casual" || kind_of[k.key] == "heavy" || kind_of[k.key] == "developer")
      false_positives.push_back(k.key + " (" + std::to_string(k.score) + ": " + (k.reasons.empty() ? "" : k.reasons[0]) + ")");
  }
  std::printf("[guard] %zu requests over %.0f simulated days, %d refused by the guard\n", reqs.size(), days, refused);
  std::printf("[guard] %-10s %6s %8s %16s %12s\n", "kind", "actors", "flagged", "median h to flag", "score range");
  for (auto& [kind, r] : by_kind) {
    std::sort(r.hours_to_flag.begin(), r.hours_to_flag.end());
    std::printf("[guard] %-10s %6d %8d %16.2f %5.2f–%.2f\n", kind.c_str(), r.actors, r.flagged,
                r.hours_to_flag.empty() ? -1.0 : r.hours_to_flag[r.hours_to_flag.size() / 2], r.min_score, r.max_score);
  }
  for (const auto& f : false_positives) std::printf("[guard] false positive: %s\n", f.c_str());
  for (const char* kind : {"bulk", "template", "paraphrase", "slow", "split"})
    EXPECT_EQ(by_kind[kind].flagged, by_kind[kind].actors) << kind << " scrapers must all be flagged";
  const int people = by_kind["casual"].actors + by_kind["heavy"].actors + by_kind["developer"].actors;
  EXPECT_GE(people, 495) << "a few people may not have come at all";
  EXPECT_LE(double(false_positives.size()), 0.01 * people) << "at most 1% of people flagged";
}

}  // namespace distill
