// The KV cache of sliding-window layers (GPT-OSS's even layers): a slot keeps window + slack
// positions, not the context, and gives the same logits as a cache of the whole context — for a
// prefill longer than the slack (the decoder runs it in pieces), token-by-token decoding, slots
// interleaved, continuing a slot from an earlier position, and the scheduler's prefix reuse and
// shared prefill. Continuing from before what a slot kept is refused. And the memory plan made
// from a model's file headers before loading: what loading then takes.
#include "convert/export.h"
#include "generate/scheduler.h"
#include "kernels/kernels.h"
#include "model/decoder.h"
#include "model/memory_plan.h"
#include "tiny_model.h"

#include <nlohmann/json.hpp>

namespace distill {

namespace {

constexpr int64_t kWindow = 8, kSlack = 4, kCtx = 96;

// 2 layers: layer 0 slides over 8 positions, layer 1 sees the whole context.
Model windowed_model(int64_t n_vocab) {
  nlohmann::json j = {{"model_type", "gpt_oss"}, {"vocab_size", n_vocab}, {"hidden_size", 32},
                      {"intermediate_size", 32}, {"num_hidden_layers", 2}, {"num_attention_heads", 4},
                      {"num_key_value_heads", 2}, {"head_dim", 8}, {"num_local_experts", 4}, {"num_experts_per_tok", 2},
                      {"sliding_window", kWindow}, {"tie_word_embeddings", false}, {"max_position_embeddings", 2048}};
  Model m = Model::random(ModelConfig::from_json(j, "gpt_oss"), DType::F32, 5, 0.5f);
  test::randomize_biases(m, 300);
  return m;
}

std::vector<int32_t> sequence(int64_t n, int64_t n_vocab, int seed) {
  std::vector<int32_t> ids;
  for (int64_t i = 0; i < n; ++i) ids.push_back(int32_t((i * 37 + seed * 11 + 5) % n_vocab));
  return ids;
}

// Logits of every position of `ids` in `slot`, fed `step` tokens per forward from position `from`.
std::vector<float> feed(Decoder& d, KVCache& cache, const std::vector<int32_t>& ids, int32_t slot, int64_t step,
                        int64_t from = 0) {
  std::vector<float> out;
  const int64_t V = d.model().config.n_vocab;
  for (int64_t i = from; i < int64_t(ids.size()); i += step) {
    Batch b;
    for (int64_t t = i; t < std::min<int64_t>(i + step, int64_t(ids.size())); ++t) b.add(ids[size_t(t)], int32_t(t), slot, true);
    const float* l = d.forward(b, cache);
    out.insert(out.end(), l, l + b.size() * V);
  }
  return out;
}

}  // namespace

TEST(KvCache, SlidingLayersKeepTheirWindowOnly) {
  test::TinyModel tiny;
  const Model m = windowed_model(tiny.tok->vocab_size());
  const KVCache cache(m.config, 3, kCtx, DType::F32, kSlack);
  EXPECT_EQ(cache.rows, (std::vector<int64_t>{kWindow + kSlack, kCtx}));
  EXPECT_TRUE(cache.windowed(0));
  EXPECT_FALSE(cache.windowed(1));
  EXPECT_EQ(cache.max_run(), kSlack + 1);
  EXPECT_EQ(cache.nbytes(), size_t(2 * 3 * (kWindow + kSlack + kCtx) * m.config.kv_dim() * 4));
  EXPECT_EQ(cache.nbytes(), kv_cache_bytes(m.config, 3, kCtx, DType::F32, kSlack));
  // a window longer than the context: nothing to save
  EXPECT_FALSE(KVCache(m.config, 1, 10, DType::F32, kSlack).windowed(0));
}

TEST(KvCache, WindowedCacheGivesTheWholeContextsLogits) {
  test::TinyModel tiny;
  const Model m = windowed_model(tiny.tok->vocab_size());
  Decoder d(m);
  const std::vector<int32_t> ids = sequence(41, m.config.n_vocab, 1);
  KVCache whole(m.config, 2, kCtx, DType::F32, kCtx);
  ASSERT_FALSE(whole.windowed(0));
  const std::vector<float> want = feed(d, whole, ids, 0, int64_t(ids.size()));
  for (int64_t step : {int64_t(41), int64_t(1), int64_t(3), int64_t(7)}) {  // one batch (in pieces), decode, chunks
    KVCache cache(m.config, 2, kCtx, DType::F32, kSlack);
    const std::vector<float> got = feed(d, cache, ids, 1, step);
    ASSERT_EQ(got.size(), want.size());
    for (size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], want[i], 1e-4f) << "step " << step << " value " << i;
    EXPECT_GT(cache.first_pos[0][1], 0) << "the window slid";
    EXPECT_EQ(cache.first_pos[1][1], 0) << "a full-attention layer keeps every position";
  }

  // Two slots in one batch, alternating tokens: each as if alone.
  const std::vector<int32_t> other = sequence(41, m.config.n_vocab, 2);
  KVCache w2(m.config, 2, kCtx, DType::F32, kCtx);
  const std::vector<float> want_other = feed(d, w2, other, 0, int64_t(other.size()));
  KVCache cache(m.config, 2, kCtx, DType::F32, kSlack);
  Batch b;
  for (int32_t t = 0; t < 41; ++t) b.add(ids[size_t(t)], t, 0, true), b.add(other[size_t(t)], t, 1, true);
  const float* l = d.forward(b, cache);
  const int64_t V = m.config.n_vocab;
  for (int64_t t = 0; t < 41; ++t)
    for (int64_t v = 0; v < V; ++v) {
      ASSERT_NEAR(l[(2 * t) * V + v], want[size_t(t * V + v)], 1e-4f) << "slot 0 position " << t;
      ASSERT_NEAR(l[(2 * t + 1) * V + v], want_other[size_t(t * V + v)], 1e-4f) << "slot 1 position " << t;
    }
}

TEST(KvCache, ContinuingFromAnEarlierPosition) {
  test::TinyModel tiny;
  const Model m = windowed_model(tiny.tok->vocab_size());
  Decoder d(m);
  const int64_t V = m.config.n_vocab;
  std::vector<int32_t> ids = sequence(40, V, 3);
  KVCache cache(m.config, 1, kCtx, DType::F32, kSlack);
  feed(d, cache, ids, 0, 1);
  // Positions 38.. rewritten with other tokens: a slot still holding 36's window continues there,
  // as a cache that saw the new sequence from the start would.
  ASSERT_TRUE(cache.holds_prefix(0, 38));
  for (size_t i = 38; i < ids.size(); ++i) ids[i] = int32_t((ids[i] + 1) % V);
  const std::vector<float> got = feed(d, cache, ids, 0, 2, 38);
  KVCache whole(m.config, 1, kCtx, DType::F32, kCtx);
  const std::vector<float> want = feed(d, whole, ids, 0, int64_t(ids.size()));
  for (size_t i = 0; i < got.size(); ++i) ASSERT_NEAR(got[i], want[38 * size_t(V) + i], 1e-4f) << i;
  // Position 20's window is gone: refused with the slot and what it kept named; position 0 restarts.
  EXPECT_FALSE(cache.holds_prefix(0, 20));
  Batch b;
  b.add(ids[20], 20, 0, true);
  try {
    d.forward(b, cache);
    FAIL() << "continued from a position whose window was dropped";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("only kept positions from"), std::string::npos) << e.what();
  }
  const std::vector<float> again = feed(d, cache, ids, 0, 5);
  for (size_t i = 0; i < again.size(); ++i) ASSERT_NEAR(again[i], want[i], 1e-4f) << i;
}

// The engine behind serve, label and rl: greedy completions with a windowed cache equal those of
// a whole-context cache — prompts longer than the slack, a second turn reusing a slot's cache, and
// samples sharing one prefill (the followers copy the donor's kept rows).
TEST(KvCache, SchedulerWithSlidingWindowsDecodesAsWithout) {
  test::TinyModel tiny;
  const Model m = windowed_model(tiny.tok->vocab_size());
  const std::vector<int32_t> p1 = tiny.tok->encode("a prompt well past the window of eight", false);
  std::vector<int32_t> p2 = p1;  // a second turn: the first prompt and more
  for (int32_t t : tiny.tok->encode(" and then some", false)) p2.push_back(t);
  auto run = [&](int64_t slack) {
    SchedulerOptions so;
    so.n_slots = 3, so.n_ctx = kCtx, so.prefill_chunk = 16, so.threaded = false, so.kv_window_slack = slack;
    Scheduler sched(m, *tiny.tok, so);
    std::vector<std::vector<int32_t>> out;
    int64_t copied = 0, reused = 0;
    for (const std::vector<int32_t>* p : {&p1, static_cast<const std::vector<int32_t>*>(&p2)}) {
      std::vector<std::shared_ptr<GenerationJob>> jobs;
      for (int g = 0; g < 3; ++g) {
        auto j = std::make_shared<GenerationJob>();
        j->prompt = *p, j->max_new_tokens = 12, j->stop_at_eos = false;
        j->sampler.temperature = g == 0 ? 0.0f : 0.8f, j->sampler.seed = uint64_t(7 + g);
        jobs.push_back(j);
      }
      EXPECT_TRUE(sched.submit(jobs));
      sched.run_until_done();
      for (const auto& j : jobs) {
        out.push_back(j->tokens());
        reused += j->n_reused;
      }
      copied = sched.stats().copied_prompt_tokens;
    }
    return std::tuple{out, copied, reused};
  };
  const auto [want, copied_whole, reused_whole] = run(kCtx);
  const auto [got, copied, reused] = run(kSlack);
  EXPECT_EQ(got, want);
  EXPECT_GT(copied_whole, 0);
  EXPECT_GT(reused_whole, 0);
  EXPECT_GT(copied, 0) << "the samples of a prompt share its prefill through the kept rows";
  EXPECT_EQ(reused, 0) << "12 tokens past the first prompt, its window is gone: the second turn prefills";
}

// The plan from the headers against the loaded model: weights (mapped + copied) are the model's
// tensor bytes, the panels what prepare_weights built (none off AVX-512), the KV cache what a
// KVCache of that size takes — for a Llama q8_0 GGUF (q/k rows permuted into copies), tied and
// not, and a gpt-oss release directory (MXFP4 experts repacked at load, windowed layers).
TEST(MemoryPlan, MatchesWhatLoadingTakes) {
  test::TempDir dir;
  test::TinyModel tiny(64, 2, 3, 256);
  Model go = windowed_model(tiny.tok->vocab_size());
  GgufExportOptions o;
  o.type = DType::Q8_0;
  export_gguf(tiny.model, tiny.files, dir / "tied.gguf", o);
  ModelConfig untied_config = tiny.model.config;
  untied_config.tie_word_embeddings = false;
  export_gguf(Model::random(untied_config, DType::F32, 4, 0.5f), tiny.files, dir / "untied.gguf", o);
  o.type = DType::F32, o.expert_type = DType::MXFP4;
  export_gguf(go, tiny.files, dir / "go.gguf", o);
  Model::load(dir / "go.gguf").save(dir / "go");
  for (const std::string name : {"tied.gguf", "untied.gguf", "go"}) {
    SCOPED_TRACE(name);
    const MemoryPlan plan = plan_memory(dir / name, 64, 3, DType::F16);
    Model m = Model::load(dir / name);
    size_t weights = 0;
    for (const ParamRef& p : list_params(m.config, m.weights)) weights += p.tensor->nbytes();
    EXPECT_EQ(plan.mapped + plan.copied, weights);
    EXPECT_GT(plan.copied, 0u) << "permuted q/k rows, or repacked experts";
    EXPECT_EQ(plan.prepared, m.prepared_bytes);
    if (name != "go") {
      EXPECT_EQ(plan.prepared > 0, active_kernel_variant() == KernelVariant::Avx512) << "q8_0 panels on AVX-512";
    }
    EXPECT_EQ(plan.kv_cache, KVCache(m.config, 3, 64, DType::F16).nbytes());
    EXPECT_EQ(plan.n_ctx, 64);
    EXPECT_GT(plan.buffers, 0u);
    EXPECT_EQ(plan.total(), plan.mapped + plan.copied + plan.prepared + plan.kv_cache + plan.buffers);
  }
  EXPECT_NE(describe(plan_memory(dir / "go", 1000, 1)).find("1 of 2 layers keep a 8-position window"), std::string::npos)
      << describe(plan_memory(dir / "go", 1000, 1));
  EXPECT_EQ(plan_memory(dir / "go", 100000, 1).n_ctx, 2048) << "capped at the model's context";
  // panels are built unless they would push the plan past the memory available
  MemoryPlan p;
  p.mapped = 900, p.prepared = 100;
  EXPECT_TRUE(plan_allows_panels(p, 0)) << "available memory unknown";
  EXPECT_TRUE(plan_allows_panels(p, 1000));
  EXPECT_FALSE(plan_allows_panels(p, 999));
  p.prepared = 0;
  EXPECT_TRUE(plan_allows_panels(p, 10)) << "nothing to skip";
  EXPECT_EQ(describe(plan_memory(dir / "go", 500, 1)).find("window"), std::string::npos) << "window + slack ≥ context: no saving";
}

}  // namespace distill
