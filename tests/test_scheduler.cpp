// Scheduler (continuous batching): jobs decoded together give exactly what each gives alone
// (greedy, and seeded sampling); prompt scoring equals the forward pass; stop strings, length,
// prefix reuse of a slot's previous turn, cancellation freeing the slot, the bounded queue.
#include "generate/generator.h"
#include "generate/scheduler.h"
#include "tokenizer/byte_vocab.h"
#include "tiny_model.h"

#include <cmath>
#include <thread>

namespace distill {

namespace {


std::shared_ptr<GenerationJob> job(const std::vector<int32_t>& prompt, int64_t max_new, float temperature = 0, uint64_t seed = 0) {
  auto j = std::make_shared<GenerationJob>();
  j->prompt = prompt;
  j->max_new_tokens = max_new;
  j->sampler.temperature = temperature;
  j->sampler.seed = seed;
  return j;
}

void wait_done(const std::vector<std::shared_ptr<GenerationJob>>& jobs) {
  const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(60);
  for (auto& j : jobs) {
    uint64_t v = 0;
    while (std::chrono::steady_clock::now() < until) {
      {
        std::lock_guard<std::mutex> lock(j->signal->mu);
        if (j->done) break;
      }
      v = j->signal->wait(v, 0.1);
    }
    std::lock_guard<std::mutex> lock(j->signal->mu);
    ASSERT_TRUE(j->done) << "a job did not finish within a minute";
  }
}

std::vector<int32_t> tokens_of(const GenerationJob& j) {
  std::vector<int32_t> t;
  for (const auto& p : j.pieces)
    for (const auto& x : p.tokens) t.push_back(x.id);
  return t;
}

std::string text_of(const GenerationJob& j) {
  std::string t;
  for (const auto& p : j.pieces) t += p.text;
  return t;
}

std::vector<std::vector<int32_t>> prompts(const Tokenizer& tok) {
  return {tok.encode("a", false), tok.encode("hello there", false), tok.encode("xyz xyz xyz", false),
          tok.encode("The quick brown fox jumps", false), tok.encode("0123456789", false), tok.encode("?!", false),
          tok.encode("ab", false), tok.encode("a longer prompt that needs more than one prefill chunk of tokens!", false)};
}

}  // namespace

TEST(Scheduler, EightConcurrentGreedyJobsEqualEachAlone) {
  test::TinyModel x(32, 2, 7, 512);
  const auto ps = prompts(*x.tok);
  // alone: the single-sequence generator
  std::vector<std::vector<int32_t>> expected;
  for (const auto& p : ps) {
    Generator g(x.model, *x.tok, 256);
    SamplerSettings s;
    s.temperature = 0;
    SamplerSettings sampler = s;
    GenerateOptions o;
    o.max_new_tokens = 24;
    expected.push_back(g.generate(p, sampler, o, [](const std::string&) { return true; }).tokens);
  }
  SchedulerOptions so;
  so.n_slots = 8, so.n_ctx = 256, so.prefill_chunk = 16;  // small chunks: prefill interleaves with decoding
  Scheduler sched(x.model, *x.tok, so);
  std::vector<std::shared_ptr<GenerationJob>> jobs;
  for (const auto& p : ps) jobs.push_back(job(p, 24));
  ASSERT_TRUE(sched.submit(jobs));
  wait_done(jobs);
  for (size_t i = 0; i < ps.size(); ++i) {
    EXPECT_EQ(tokens_of(*jobs[i]), expected[i]) << "prompt " << i;
    EXPECT_EQ(jobs[i]->n_generated, int64_t(expected[i].size()));
  }
  const SchedulerStats st = sched.stats();
  EXPECT_LT(st.steps, 8 * 24) << "the jobs were not batched together";
}

// Samples of one prompt (GRPO groups, n > 1) prefill it once: the followers copy the donor's K/V
// rows and run only their last prompt token, and decode exactly what an unshared run decodes.
TEST(Scheduler, SamplesOfOnePromptPrefillItOnce) {
  test::TinyModel x(32, 2, 7, 512);
  const std::vector<int32_t> prompt = x.tok->encode("a shared prompt that several samples of one request start from", false);
  const int64_t P = int64_t(prompt.size()), G = 5;
  std::vector<std::vector<int32_t>> out[2];
  int64_t copied[2] = {0, 0}, prefilled[2] = {0, 0};
  for (int share = 0; share < 2; ++share) {
    SchedulerOptions so;
    so.n_slots = G, so.n_ctx = 256, so.share_prefill = share == 1;
    Scheduler sched(x.model, *x.tok, so);
    std::vector<std::shared_ptr<GenerationJob>> jobs;
    for (int64_t g = 0; g < G; ++g) jobs.push_back(job(prompt, 12, g == 0 ? 0.0f : 0.9f, uint64_t(100 + g)));
    ASSERT_TRUE(sched.submit(jobs));
    wait_done(jobs);
    for (const auto& j : jobs) out[share].push_back(tokens_of(*j));
    copied[share] = sched.stats().copied_prompt_tokens;
    prefilled[share] = sched.stats().prompt_tokens;
  }
  EXPECT_EQ(out[1], out[0]) << "sharing the prefill changes no token";
  EXPECT_EQ(copied[0], 0);
  EXPECT_EQ(copied[1], (G - 1) * (P - 1)) << "every follower copies all but its last prompt token";
  EXPECT_EQ(prefilled[0], G * P);
  EXPECT_EQ(prefilled[1], P + (G - 1)) << "the prompt is run once, plus one last token per follower";
  EXPECT_NE(out[1][1], out[1][2]) << "the samples still differ (own seeds)";
}

TEST(Scheduler, SeededSamplingDoesNotDependOnBatchmates) {
  test::TinyModel x(32, 2, 7, 512);
  const auto ps = prompts(*x.tok);
  SchedulerOptions so;
  so.n_slots = 4, so.n_ctx = 256;
  Scheduler sched(x.model, *x.tok, so);
  auto alone = job(ps[1], 20, 1.0f, 42);
  ASSERT_TRUE(sched.submit({alone}));
  wait_done({alone});
  std::vector<std::shared_ptr<GenerationJob>> crowd = {job(ps[0], 20, 1.0f, 1), job(ps[1], 20, 1.0f, 42), job(ps[2], 20, 1.0f, 3)};
  ASSERT_TRUE(sched.submit(crowd));
  wait_done(crowd);
  EXPECT_EQ(tokens_of(*crowd[1]), tokens_of(*alone));
  EXPECT_NE(tokens_of(*crowd[0]), tokens_of(*crowd[2]));
}

// With an f32 cache the engine's prompt scores are the forward pass's; with the default f16 cache
// they are within its rounding (measured ≤ 3e-3 in log-probability).
TEST(Scheduler, PromptScoresEqualTheForwardPass) {
  for (const auto& [kv, tol] : {std::pair{DType::F32, 1e-4}, std::pair{DType::F16, 1e-2}}) {
    SCOPED_TRACE(std::string(dtype_name(kv)) + " cache");
    const test::ScopedKvCacheType cache_type(kv);
    test::TinyModel x(32, 2, 7, 512);
    const auto p = x.tok->encode("scoring a text without generating", false);
    SchedulerOptions so;
    so.n_slots = 2, so.n_ctx = 128, so.prefill_chunk = 5;
    Scheduler sched(x.model, *x.tok, so);
    auto j = job(p, 0);
    j->prompt_logprobs = true, j->top_logprobs = 3;
    ASSERT_TRUE(sched.submit({j}));
    wait_done({j});
    EXPECT_EQ(j->finish_reason, "length");
    EXPECT_EQ(j->n_generated, 0);
    ASSERT_EQ(j->prompt_scores.size(), p.size() - 1);
    Decoder d(x.model);
    const Tensor logits = d.forward_full(p.data(), 1, int64_t(p.size()));
    const int64_t V = x.model.config.n_vocab;
    for (size_t i = 0; i + 1 < p.size(); ++i) {
      const float* row = logits.data<float>() + int64_t(i) * V;
      EXPECT_EQ(j->prompt_scores[i].id, p[i + 1]);
      EXPECT_NEAR(j->prompt_scores[i].logprob, token_logprob(row, V, p[i + 1], 1.0f), tol) << i;
      ASSERT_EQ(j->prompt_scores[i].top.size(), 3u);
      const int32_t best = int32_t(std::max_element(row, row + V) - row);
      EXPECT_EQ(j->prompt_scores[i].top[0].first, best);
    }
  }
}

TEST(Scheduler, StopStringLengthAndLogprobs) {
  test::TinyModel x(32, 2, 7, 512);
  SchedulerOptions so;
  so.n_slots = 2, so.n_ctx = 64;
  Scheduler sched(x.model, *x.tok, so);
  // Greedy text first; then the same with its 5th..7th characters as a stop string.
  auto free_run = job(x.tok->encode("stop test", false), 16);
  ASSERT_TRUE(sched.submit({free_run}));
  wait_done({free_run});
  const std::string full = text_of(*free_run);
  ASSERT_GE(full.size(), 8u);
  EXPECT_EQ(free_run->finish_reason, "length");
  auto stopped = job(x.tok->encode("stop test", false), 16);
  stopped->stop = {full.substr(4, 3)};
  stopped->logprobs = true, stopped->top_logprobs = 2;
  ASSERT_TRUE(sched.submit({stopped}));
  wait_done({stopped});
  EXPECT_EQ(stopped->finish_reason, "stop");
  EXPECT_EQ(text_of(*stopped), full.substr(0, full.find(full.substr(4, 3))));
  for (const auto& piece : stopped->pieces)
    for (const auto& t : piece.tokens) {
      EXPECT_LE(t.logprob, 0.0f);
      ASSERT_EQ(t.top.size(), 2u);
      EXPECT_GE(t.top[0].second, t.logprob - 1e-6f);  // greedy: the chosen token is the most likely
    }
  // A prompt near the context end stops at the context ("length").
  auto near_end = job(std::vector<int32_t>(60, x.tok->encode("a", false)[0]), 100);
  ASSERT_TRUE(sched.submit({near_end}));
  wait_done({near_end});
  EXPECT_EQ(near_end->finish_reason, "length");
  EXPECT_EQ(near_end->n_generated, 4);
}

TEST(Scheduler, NextTurnReusesTheSlotsCache) {
  test::TinyModel x(32, 2, 7, 512);
  SchedulerOptions so;
  so.n_slots = 2, so.n_ctx = 256;
  Scheduler sched(x.model, *x.tok, so);
  const auto turn1 = x.tok->encode("user: hi\nassistant:", false);
  auto j1 = job(turn1, 8);
  ASSERT_TRUE(sched.submit({j1}));
  wait_done({j1});
  std::vector<int32_t> turn2 = turn1;
  const auto reply = tokens_of(*j1);
  turn2.insert(turn2.end(), reply.begin(), reply.end());
  const auto more = x.tok->encode("\nuser: and?\nassistant:", false);
  turn2.insert(turn2.end(), more.begin(), more.end());
  auto j2 = job(turn2, 8);
  ASSERT_TRUE(sched.submit({j2}));
  wait_done({j2});
  EXPECT_GE(j2->n_reused, int64_t(turn1.size()));
  // same tokens as a fresh scheduler that prefills everything
  Scheduler fresh(x.model, *x.tok, so);
  auto j3 = job(turn2, 8);
  ASSERT_TRUE(fresh.submit({j3}));
  wait_done({j3});
  EXPECT_EQ(j3->n_reused, 0);
  EXPECT_EQ(tokens_of(*j2), tokens_of(*j3));
}

TEST(Scheduler, CancelFreesTheSlotAndTheQueueIsBounded) {
  test::TinyModel x(32, 2, 7, 512);
  SchedulerOptions so;
  so.n_slots = 1, so.n_ctx = 512, so.max_queue = 2;
  Scheduler sched(x.model, *x.tok, so);
  auto long_job = job(x.tok->encode("go on", false), 500);
  ASSERT_TRUE(sched.submit({long_job}));
  auto waiting = job(x.tok->encode("next", false), 3);
  ASSERT_TRUE(sched.submit({waiting}));
  EXPECT_FALSE(sched.submit({job({1}, 1), job({2}, 1), job({3}, 1)})) << "the queue holds 2";
  long_job->cancel = true;
  wait_done({long_job, waiting});
  EXPECT_EQ(long_job->finish_reason, "cancelled");
  EXPECT_LT(long_job->n_generated, 500);
  EXPECT_EQ(waiting->finish_reason, "length");
  EXPECT_EQ(waiting->n_generated, 3);
  EXPECT_GE(sched.stats().cancelled, 1);
}

TEST(Scheduler, DeadlineEndsAGenerationWithWhatItHasAndAWaitingJobWithAnError) {
  test::TinyModel x(32, 2, 7, 4096);
  SchedulerOptions so;
  so.n_slots = 1, so.n_ctx = 4096, so.max_queue = 4;
  Scheduler sched(x.model, *x.tok, so);
  auto endless = job(x.tok->encode("go on", false), 100000);
  endless->stop_at_eos = false;
  endless->deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(100);
  auto late = job(x.tok->encode("next", false), 3);
  late->deadline = std::chrono::steady_clock::now();  // out of time before it gets a slot
  ASSERT_TRUE(sched.submit({endless}));
  ASSERT_TRUE(sched.submit({late}));
  wait_done({endless, late});
  EXPECT_EQ(endless->finish_reason, "length");
  EXPECT_GT(endless->n_generated, 0) << "the deadline ends a generation, it does not discard it";
  EXPECT_LT(endless->n_generated, 4096 - 3) << "stopped by the deadline, not by the context";
  EXPECT_EQ(tokens_of(*endless).size(), size_t(endless->n_generated));
  EXPECT_EQ(late->finish_reason, "error");
  EXPECT_NE(late->error.find("time limit"), std::string::npos) << late->error;
  EXPECT_EQ(late->n_generated, 0);
}

}  // namespace distill
