// The green-list watermark: its arithmetic (green share, bias, exact binomial tail, repeats
// scored once), detection on generated answers with its false-positive rate and quality cost, and
// the radioactivity test separating a student trained on watermarked answers from one trained on
// plain answers.
#include "eval/radioactivity.h"
#include "generate/batch_generate.h"
#include "kernels/logprobs.h"
#include "model/decoder.h"
#include "sample/watermark.h"
#include "test_util.h"
#include "tiny_model.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>

namespace distill {
using test::TempDir;

namespace {

WatermarkSettings key_settings(const std::string& secret, float delta = 2.0f) {
  WatermarkSettings w;
  w.key = watermark_key_from_secret(secret);
  w.delta = delta;
  return w;
}

}  // namespace

TEST(Watermark, GreenShareIsGammaAndTheBiasHitsExactlyTheGreenTokens) {
  const WatermarkSettings w = key_settings("owner secret");
  Rng rng(5);
  int64_t green = 0, total = 0;
  for (int ctx = 0; ctx < 200; ++ctx) {
    const int32_t prev = int32_t(rng.next_u64() % 50000);
    const uint64_t seed = watermark_context_seed(w, &prev, 1);
    for (int32_t t = 0; t < 100; ++t) green += watermark_is_green(w, seed, t), ++total;
  }
  EXPECT_NEAR(double(green) / double(total), 0.25, 0.015) << "a quarter of the vocabulary is green";

  const std::vector<int32_t> history = {7, 42};
  std::vector<float> logits(1000, 0.5f);
  watermark_logits(w, history, logits.data(), 1000);
  const uint64_t seed = watermark_context_seed(w, history.data(), history.size());
  int biased = 0;
  for (int32_t t = 0; t < 1000; ++t) {
    EXPECT_FLOAT_EQ(logits[size_t(t)], watermark_is_green(w, seed, t) ? 2.5f : 0.5f) << t;
    biased += logits[size_t(t)] > 1;
  }
  EXPECT_GT(biased, 200);
  EXPECT_LT(biased, 300);
  // Another key, another list.
  const WatermarkSettings other = key_settings("someone else");
  int same = 0;
  const uint64_t other_seed = watermark_context_seed(other, history.data(), history.size());
  for (int32_t t = 0; t < 1000; ++t) same += watermark_is_green(w, seed, t) == watermark_is_green(other, other_seed, t);
  EXPECT_LT(same, 700) << "independent keys agree on ~62.5% of tokens, not all";
}

TEST(Watermark, BinomialTailIsExact) {
  EXPECT_DOUBLE_EQ(binomial_upper_tail(10, 0, 0.5), 1.0);
  EXPECT_NEAR(binomial_upper_tail(10, 10, 0.5), 1.0 / 1024, 1e-15);
  EXPECT_NEAR(binomial_upper_tail(4, 2, 0.25), 1 - (0.31640625 + 0.421875), 1e-12);
  // Σ C(200, i) 0.25^i 0.75^(200-i) for i ≥ 50 and i ≥ 100, summed in exact arithmetic elsewhere
  EXPECT_NEAR(binomial_upper_tail(200, 50, 0.25), 0.5271236581202353, 1e-12);
  EXPECT_NEAR(binomial_upper_tail(200, 100, 0.25) / 2.6850803468607354e-14, 1.0, 1e-9);
  EXPECT_EQ(binomial_upper_tail(5, 6, 0.25), 0.0);
}

TEST(Watermark, RepeatedTuplesAreScoredOnce) {
  const WatermarkSettings w = key_settings("k");
  WatermarkDetector d(w);
  std::vector<int32_t> ids;
  for (int r = 0; r < 50; ++r) ids.insert(ids.end(), {3, 4, 5});
  d.add(ids);
  const WatermarkScore s = d.score();
  EXPECT_EQ(s.tokens, 3) << "(3,4), (4,5), (5,3) are the only tuples";
  EXPECT_EQ(s.repeats, int64_t(ids.size()) - 1 - 3);
  EXPECT_GT(s.p_value, 0.01) << "three tuples are no evidence";
}

// Answers of 200 tokens from a small model: watermarked ones are detected, plain ones are not (a
// false-positive rate over 40 plain answers), and the watermark's quality cost is the model's
// own perplexity of what it sampled.
TEST(Watermark, DetectsWatermarkedAnswersNotPlainOnesAtASmallQualityCost) {
  test::TinyModel tiny(32, 2, 21);
  const WatermarkSettings w = key_settings("owner secret");
  std::vector<std::vector<int32_t>> prompts;
  for (int p = 0; p < 40; ++p) prompts.push_back(tiny.tok->encode("Question " + std::to_string(p) + ":", false));
  BatchGenerateOptions o;
  o.max_new_tokens = 200;
  o.sampler.temperature = 1.0f, o.sampler.top_k = 0, o.sampler.top_p = 1.0f, o.sampler.min_p = 0.0f;
  o.sampler.seed = 9;
  const auto plain = generate_batch(tiny.model, *tiny.tok, prompts, o, nullptr);
  o.watermark = w;
  const auto marked = generate_batch(tiny.model, *tiny.tok, prompts, o, nullptr);

  auto z_of = [&](const SampledCompletion& c) {
    WatermarkDetector d(w);
    std::vector<int32_t> ids = prompts[size_t(c.prompt_index)];
    const size_t from = ids.size();
    ids.insert(ids.end(), c.completion.begin(), c.completion.end());
    d.add(ids, from);
    return d.score();
  };
  int detected = 0, false_positives = 0;
  double z_marked = 0, z_plain = 0, nll_marked = 0, nll_plain = 0;
  for (size_t i = 0; i < prompts.size(); ++i) {
    const WatermarkScore m = z_of(marked[i]), p = z_of(plain[i]);
    detected += m.p_value < 1e-3, false_positives += p.p_value < 1e-3;
    z_marked += m.z / double(prompts.size()), z_plain += p.z / double(prompts.size());
    for (float lp : marked[i].logp_old) nll_marked -= lp;  // log-probs under the biased sampler...
    for (float lp : plain[i].logp_old) nll_plain -= lp;
  }
  // ...so the quality cost is measured again under the plain model, by teacher forcing.
  auto plain_nll = [&](const std::vector<SampledCompletion>& set) {
    double nll = 0;
    int64_t n = 0;
    for (size_t i = 0; i < set.size(); ++i) {
      std::vector<int32_t> ids = prompts[i];
      ids.insert(ids.end(), set[i].completion.begin(), set[i].completion.end());
      Decoder dec(tiny.model);
      const Tensor logits = dec.forward_full(ids.data(), 1, int64_t(ids.size()));
      const int64_t V = tiny.model.config.n_vocab;
      for (size_t t = prompts[i].size(); t < ids.size(); ++t, ++n)
        nll -= token_logprob(logits.data<float>() + int64_t(t - 1) * V, V, ids[t], 1.0f);
    }
    return nll / double(n);
  };
  const double ppl_marked = std::exp(plain_nll(marked)), ppl_plain = std::exp(plain_nll(plain));
  std::printf("[watermark] 200-token answers: mean z %.2f watermarked, %.2f plain; detected %d/40, false positives %d/40; "
              "perplexity under the plain model %.2f watermarked vs %.2f plain\n",
              z_marked, z_plain, detected, false_positives, ppl_marked, ppl_plain);
  EXPECT_GE(detected, 38) << "a 200-token answer from a high-entropy model carries the mark";
  EXPECT_LE(false_positives, 1);
  EXPECT_GT(z_marked, 5.0);
  EXPECT_LT(std::abs(z_plain), 1.0);
  EXPECT_LT(ppl_marked / ppl_plain, 1.6) << "delta 2 on a quarter of the vocabulary tilts, it does not rewrite";
}

// Sander et al.'s question on a small scale: two students of one random teacher, one trained on its
// watermarked answers and one on its plain answers; the radioactivity test, from the students'
// own samples alone, tells them apart.
TEST(Watermark, RadioactivitySeparatesAStudentTrainedOnWatermarkedAnswers) {
  TempDir dir;
  const int64_t V = 32;
  test::TinyModel tiny;  // its byte tokenizer decodes the ids; the models below use 32 of them
  ModelConfig c = tiny.model.config;
  c.n_vocab = V;
  const Model teacher = Model::random(c, DType::F32, 7, 1.0f);
  const WatermarkSettings w = key_settings("owner secret");
  std::vector<std::vector<int32_t>> prompts;
  for (int32_t p = 0; p < V; ++p) prompts.push_back({p});
  BatchGenerateOptions o;
  o.group = 12, o.max_new_tokens = 48;
  o.sampler.temperature = 1.0f, o.sampler.top_k = 0, o.sampler.top_p = 1.0f, o.sampler.min_p = 0.0f;
  o.sampler.seed = 3;
  for (const bool marked : {true, false}) {
    o.watermark = marked ? w : WatermarkSettings{};
    const auto answers = generate_batch(teacher, *tiny.tok, prompts, o, nullptr);
    std::ofstream out(dir / (marked ? "marked.jsonl" : "plain.jsonl"));
    for (const SampledCompletion& a : answers) {
      nlohmann::json ids = {a.prompt_index}, mask = {0};
      for (const int32_t t : a.completion) ids.push_back(t), mask.push_back(1);
      out << nlohmann::json{{"ids", ids}, {"mask", mask}}.dump() << "\n";
    }
  }
  ASSERT_EQ(test::run_distill("init --preset tiny --vocab 32 --seed 5 -o " + (dir / "student")).exit_code, 0);
  double p_values[2];
  for (const bool marked : {true, false}) {
    const std::string name = marked ? "marked" : "plain";
    const test::CliResult r = test::run_distill("train --student " + (dir / "student") + " --data " + (dir / (name + ".jsonl")) +
                                                " -o " + (dir / ("student-" + name)) +
                                                " --steps 300 --batch 16 --seq-len 48 --lr 0.003 --warmup 10 --seed 2");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    const Model student = Model::load(dir / ("student-" + name));
    RadioactivityOptions ro;
    ro.prompts = prompts;
    ro.samples = 256, ro.max_new_tokens = 48;
    const RadioactivityResult t = radioactivity_test(student, *tiny.tok, w, ro);
    std::printf("[radioactivity] student trained on %s answers: %lld contexts, green mass %.1f%%, z %.2f, p %.3g "
                "(counting sampled tokens: z %.2f, p %.3g)\n", name.c_str(), (long long)t.contexts, 100.0 * t.green_mass, t.z,
                t.p_value, t.sampled.z, t.sampled.p_value);
    p_values[marked ? 0 : 1] = t.p_value;
  }
  EXPECT_LT(p_values[0], 1e-5) << "a student of watermarked answers carries the green bias";
  EXPECT_GT(p_values[1], 1e-3) << "a student of plain answers does not";
}

// The owner's commands: detect on a text, the radioactivity test on a model directory, and what
// they say about bad input.
TEST(Watermark, DetectAndProvenanceCommands) {
  TempDir dir;
  test::TinyModel tiny(32, 2, 21);
  tiny.save(dir / "model");
  test::write_bytes(dir / "key", "owner secret\n");
  BatchGenerateOptions o;
  o.max_new_tokens = 300;
  o.sampler.temperature = 1.0f, o.sampler.top_k = 0, o.sampler.top_p = 1.0f, o.sampler.min_p = 0.0f;
  o.watermark = key_settings("owner secret");
  std::vector<std::vector<int32_t>> prompts;
  for (int p = 0; p < 12; ++p) prompts.push_back(tiny.tok->encode("Hello " + std::to_string(p), false));
  std::string text;
  for (const SampledCompletion& a : generate_batch(tiny.model, *tiny.tok, prompts, o, nullptr)) text += a.text + "\n";
  test::write_bytes(dir / "answer.txt", text);
  test::CliResult r = test::run_distill("watermark detect --tokenizer " + (dir / "model") + " --key-file " + (dir / "key") +
                                        " --file " + (dir / "answer.txt"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("watermarked with this key"), std::string::npos) << r.output;
  r = test::run_distill("watermark detect --tokenizer " + (dir / "model") + " --key other --file " + (dir / "answer.txt") + " --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_FALSE(nlohmann::json::parse(r.output.substr(r.output.find('{')))["watermarked"]) << "another key sees no mark";
  r = test::run_distill("watermark detect --tokenizer " + (dir / "model") + " --file " + (dir / "answer.txt"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("--key-file FILE or --key SECRET"), std::string::npos) << r.output;

  r = test::run_distill("provenance test " + (dir / "model") + " --key-file " + (dir / "key") + " --samples 8 --tokens 32 --json");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const nlohmann::json j = nlohmann::json::parse(r.output.substr(r.output.find('{')));
  EXPECT_GT(j["contexts"].get<int64_t>(), 50);
  EXPECT_GT(j["p_value"].get<double>(), 1e-3) << "a model that never saw watermarked text";
  r = test::run_distill("provenance test " + (dir / "model") + " --key-file " + (dir / "key") + " --prompts " + (dir / "missing"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("missing: cannot open the prompts file"), std::string::npos) << r.output;
}

}  // namespace distill
