// Mixture of experts (qwen3_moe): routing by hand; the layer against a plain per-token reference
// written here (softmax, top-k, each chosen expert's SwiGLU in double); batch independence;
// HF directory and GGUF round trips (f32 exact, q8_0 close); the config's refusals.
#include "convert/export.h"
#include "formats/checkpoint.h"
#include "formats/safetensors.h"
#include "kernels/kernels.h"
#include "model/decoder.h"
#include "model/gpt_oss_hf.h"
#include "model/moe.h"
#include "test_util.h"
#include "tiny_model.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <numeric>

namespace distill {

namespace {

ModelConfig moe_config(int64_t n_vocab, bool norm = true) {
  nlohmann::json j = {{"model_type", "qwen3_moe"}, {"vocab_size", n_vocab}, {"hidden_size", 32}, {"intermediate_size", 64},
                      {"num_hidden_layers", 2}, {"num_attention_heads", 4}, {"num_key_value_heads", 2}, {"head_dim", 8},
                      {"num_experts", 6}, {"num_experts_per_tok", 2}, {"moe_intermediate_size", 32},
                      {"norm_topk_prob", norm}, {"tie_word_embeddings", true}, {"max_position_embeddings", 256}};
  return ModelConfig::from_json(j, "test");
}

// The MoE block for one token, the obvious way, in double.
std::vector<double> moe_reference(const ModelConfig& c, const LayerWeights& l, const float* x) {
  const int64_t E = c.n_embd, F = c.n_ff_expert, NE = c.n_expert;
  auto row_dot = [&](const Tensor& w, int64_t r, const auto* v, int64_t n) {
    double s = 0;
    for (int64_t i = 0; i < n; ++i) s += double(w.data<float>()[r * n + i]) * double(v[i]);
    return s;
  };
  std::vector<double> p(static_cast<size_t>(NE));
  double mx = -1e300, sum = 0;
  for (int64_t e = 0; e < NE; ++e) p[size_t(e)] = row_dot(l.router, e, x, E), mx = std::max(mx, p[size_t(e)]);
  for (double& v : p) sum += (v = std::exp(v - mx));
  for (double& v : p) v /= sum;
  std::vector<int> idx(static_cast<size_t>(NE));
  std::iota(idx.begin(), idx.end(), 0);
  std::sort(idx.begin(), idx.end(), [&](int a, int b) { return p[size_t(a)] > p[size_t(b)]; });
  double kept = 0;
  for (int64_t k = 0; k < c.n_expert_used; ++k) kept += p[size_t(idx[size_t(k)])];
  std::vector<double> out(static_cast<size_t>(E), 0.0), h(static_cast<size_t>(F));
  for (int64_t k = 0; k < c.n_expert_used; ++k) {
    const int e = idx[size_t(k)];
    const double w = c.norm_topk_prob ? p[size_t(e)] / kept : p[size_t(e)];
    for (int64_t f = 0; f < F; ++f) {
      const double g = row_dot(l.exp_gate[size_t(e)], f, x, E), u = row_dot(l.exp_up[size_t(e)], f, x, E);
      h[size_t(f)] = g / (1.0 + std::exp(-g)) * u;
    }
    for (int64_t i = 0; i < E; ++i) out[size_t(i)] += w * row_dot(l.exp_down[size_t(e)], i, h.data(), F);
  }
  return out;
}

}  // namespace

TEST(Moe, RoutingByHand) {
  ModelConfig c = moe_config(16);
  c.n_expert = 4, c.n_expert_used = 2;
  // token 0: experts 2 (logit 3) and 0 (logit 1); token 1: a tie between 1 and 3 goes to the lower index
  const float logits[8] = {1, 0, 3, -1, 0, 2, -5, 2};
  int32_t expert[4];
  float weight[4];
  route_tokens(c, logits, 2, expert, weight);
  EXPECT_EQ(expert[0], 2);
  EXPECT_EQ(expert[1], 0);
  EXPECT_EQ(expert[2], 1);
  EXPECT_EQ(expert[3], 3);
  EXPECT_NEAR(weight[0], 1.0 / (1.0 + std::exp(-2.0)), 1e-6);  // e^3 / (e^3 + e^1), renormalised
  EXPECT_NEAR(weight[0] + weight[1], 1.0f, 1e-6);
  EXPECT_NEAR(weight[2], 0.5f, 1e-6);
  c.norm_topk_prob = false;  // the softmax over all four experts, not renormalised
  route_tokens(c, logits, 2, expert, weight);
  const double z = std::exp(1.0) + std::exp(0.0) + std::exp(3.0) + std::exp(-1.0);
  EXPECT_NEAR(weight[0], std::exp(3.0) / z, 1e-6);
  EXPECT_NEAR(weight[1], std::exp(1.0) / z, 1e-6);
}

// GPT-OSS's routing: the top k of the raw logits, softmaxed among themselves.
TEST(Moe, GptOssRoutingByHand) {
  ModelConfig c = moe_config(16);
  c.n_expert = 4, c.n_expert_used = 2, c.moe_softmax_after_topk = true;
  const float logits[4] = {1, 0, 3, -1};
  int32_t expert[2];
  float weight[2];
  route_tokens(c, logits, 1, expert, weight);
  EXPECT_EQ(expert[0], 2);
  EXPECT_EQ(expert[1], 0);
  EXPECT_NEAR(weight[0], std::exp(3.0) / (std::exp(3.0) + std::exp(1.0)), 1e-6);
  EXPECT_NEAR(weight[1], std::exp(1.0) / (std::exp(3.0) + std::exp(1.0)), 1e-6);
}

// The clamped SwiGLU with expert biases (GPT-OSS) against the formula, through a one-expert layer.
TEST(Moe, ClampedSwigluWithBiases) {
  ModelConfig c = moe_config(16);
  c.n_expert = 1, c.n_expert_used = 1, c.moe_softmax_after_topk = true, c.moe_bias = true, c.swiglu_limit = 7.0;
  c.n_embd = 32, c.n_ff_expert = 32;
  Model m = Model::random(c, DType::F32, 4, 2.0f);  // large weights: values past the clamp at ±7
  LayerWeights& l = m.weights.layers[0];
  const auto bg = test::random_vector(32, 1, 1.0f), bu = test::random_vector(32, 2, 1.0f), bd = test::random_vector(32, 3, 1.0f);
  std::copy(bg.begin(), bg.end(), l.exp_gate_b[0].data<float>());
  std::copy(bu.begin(), bu.end(), l.exp_up_b[0].data<float>());
  std::copy(bd.begin(), bd.end(), l.exp_down_b[0].data<float>());
  const auto x = test::random_vector(32, 9, 1.0f);
  std::vector<float> out(32);
  moe_forward(c, l, x.data(), out.data(), 1);
  auto row = [&](const Tensor& w, int64_t r, const double* v) {
    double s = 0;
    for (int64_t i = 0; i < 32; ++i) s += double(w.data<float>()[r * 32 + i]) * v[i];
    return s;
  };
  double xd[32], h[32];
  int clamped = 0;
  for (int i = 0; i < 32; ++i) xd[i] = x[size_t(i)];
  for (int f = 0; f < 32; ++f) {
    const double g0 = row(l.exp_gate[0], f, xd) + bg[size_t(f)], u0 = row(l.exp_up[0], f, xd) + bu[size_t(f)];
    const double g = std::min(g0, 7.0), u = std::clamp(u0, -7.0, 7.0);
    clamped += (g0 > 7.0) + (std::fabs(u0) > 7.0);
    h[f] = g / (1.0 + std::exp(-1.702 * g)) * (u + 1.0);
  }
  EXPECT_GT(clamped, 4) << "the test should exercise the clamp";
  for (int i = 0; i < 32; ++i) EXPECT_NEAR(out[size_t(i)], row(l.exp_down[0], i, h) + bd[size_t(i)], 1e-3 * (1 + std::fabs(out[size_t(i)]))) << i;
}

TEST(Moe, LayerMatchesPerTokenReference) {
  for (bool norm : {true, false}) {
    const ModelConfig c = moe_config(64, norm);
    const Model m = Model::random(c, DType::F32, 5, 0.5f);
    const int64_t T = 11;
    const auto x = test::random_vector(size_t(T * c.n_embd), 7);
    std::vector<float> out(x.size(), -1.0f);
    moe_forward(c, m.weights.layers[1], x.data(), out.data(), T);
    for (int64_t t = 0; t < T; ++t) {
      const std::vector<double> want = moe_reference(c, m.weights.layers[1], x.data() + t * c.n_embd);
      for (int64_t i = 0; i < c.n_embd; ++i)
        ASSERT_NEAR(out[size_t(t * c.n_embd + i)], want[size_t(i)], 1e-4 * (1 + std::fabs(want[size_t(i)])))
            << "norm " << norm << " token " << t << " dim " << i;
    }
    // a token alone gives what it gives in the batch (its experts' terms in the same order)
    std::vector<float> one(size_t(c.n_embd));
    moe_forward(c, m.weights.layers[1], x.data() + 4 * c.n_embd, one.data(), 1);
    for (int64_t i = 0; i < c.n_embd; ++i) EXPECT_NEAR(one[size_t(i)], out[size_t(4 * c.n_embd + i)], 1e-5);
  }
}

// Prefill of a sequence and token-by-token decoding give the same last logits.
TEST(Moe, DecoderPrefillEqualsStepwiseDecode) {
  test::TinyModel tiny;
  const Model m = Model::random(moe_config(tiny.tok->vocab_size()), DType::F32, 3, 0.5f);
  Decoder dec(m);
  const std::vector<int32_t> ids = {5, 17, 99, 3, 42, 42, 7, 120, 64, 1, 33, 2, 250, 8, 9, 10, 11, 12, 13, 14};
  KVCache a(m.config, 1, 64), b(m.config, 1, 64);
  Batch batch;
  for (size_t i = 0; i < ids.size(); ++i) batch.add(ids[i], int32_t(i), 0, i + 1 == ids.size());
  const float* la = dec.forward(batch, a);
  std::vector<float> full(la, la + m.config.n_vocab);
  const float* lb = nullptr;
  for (size_t i = 0; i < ids.size(); ++i) {
    batch.clear();
    batch.add(ids[i], int32_t(i), 0, true);
    lb = dec.forward(batch, b);
  }
  for (int64_t v = 0; v < m.config.n_vocab; ++v) ASSERT_NEAR(full[size_t(v)], lb[v], 2e-4f) << v;
}

// The weight bytes a decoded token reads (`bench`'s GB/s), counted by hand: a mixture reads
// n_expert_used of its n_expert experts; a tied head is the embedding table, read whole; an untied
// model's embedding table is not read (one row).
TEST(Moe, DecodeBytesPerTokenCountsActiveExpertsAndTheHead) {
  const ModelConfig c = moe_config(256);  // tied, 6 experts of which 2 used, f32
  const Model m = Model::random(c, DType::F32, 3);
  const int64_t E = c.n_embd, hd = c.head_dim;
  const int64_t attention = E * c.n_head * hd * 2 + E * c.n_kv_head * hd * 2 + 2 * hd + 2 * E;  // q, o, k, v, q/k norms, norms
  const int64_t experts = 3 * E * c.n_ff_expert;  // one expert's gate, up, down
  const int64_t per_layer = attention + c.n_expert * E + 2 * experts;  // router, 2 of 6 experts
  const int64_t expected = 4 * (c.n_layer * per_layer + c.n_vocab * E + E);  // f32; head = embedding, final norm
  EXPECT_EQ(int64_t(m.decode_bytes_per_token()), expected);
  // the stored file holds every expert: 4 more per layer
  EXPECT_EQ(int64_t(m.stored_bytes()) - expected, 4 * c.n_layer * 4 * experts);

  nlohmann::json j = {{"model_type", "llama"}, {"vocab_size", 300}, {"hidden_size", 32}, {"intermediate_size", 64},
                      {"num_hidden_layers", 1}, {"num_attention_heads", 4}, {"num_key_value_heads", 4},
                      {"tie_word_embeddings", false}, {"max_position_embeddings", 64}};
  const Model dense = Model::random(ModelConfig::from_json(j, "test"), DType::Q8_0, 1);
  // untied: everything but the embedding table (q8_0 matrices: 34 bytes per 32 values; norms f32)
  EXPECT_EQ(int64_t(dense.decode_bytes_per_token()), int64_t(dense.stored_bytes()) - 300 * 32 / 32 * 34);
  EXPECT_EQ(int64_t(dense.decode_bytes_per_token()), (4 * 32 * 32 + 3 * 32 * 64 + 300 * 32) / 32 * 34 + 4 * (3 * 32));
}

TEST(Moe, DirectoryAndGgufRoundTrips) {
  test::TempDir dir;
  test::TinyModel tiny;
  const Model m = Model::random(moe_config(tiny.tok->vocab_size()), DType::F32, 9, 0.5f);
  m.save(dir / "hf");
  const std::vector<int32_t> ids = {1, 2, 3, 50, 60, 70, 80, 90, 100, 7, 7, 7};
  auto logits = [&](const Model& model) {
    Decoder d(model);
    Tensor t = d.forward_full(ids.data(), 1, int64_t(ids.size()));
    return std::vector<float>(t.data<float>(), t.data<float>() + t.numel());
  };
  const std::vector<float> want = logits(m);
  const Model from_dir = Model::load(dir / "hf");
  EXPECT_EQ(from_dir.config.n_expert, 6);
  EXPECT_EQ(from_dir.config.n_expert_used, 2);
  EXPECT_EQ(logits(from_dir), want);
  for (DType t : {DType::F32, DType::Q8_0}) {
    GgufExportOptions o;
    o.type = t;
    const std::string path = dir / (std::string(dtype_name(t)) + ".gguf");
    export_gguf(m, tiny.files, path, o);
    const Model g = Model::load(path);
    EXPECT_EQ(g.config.model_type, "qwen3_moe");
    EXPECT_EQ(g.config.n_ff_expert, 32);
    EXPECT_TRUE(g.config.norm_topk_prob);
    EXPECT_EQ(g.weights.layers[1].exp_gate[5].dtype(), t);
    EXPECT_EQ(g.weights.layers[1].router.dtype(), DType::F32);  // never quantized
    // the same weights quantized in memory (router kept f32, as in the file): the file's experts are
    // the right slices of its stacked tensors
    Model q = t == DType::F32 ? m : quantized(m, t);
    for (LayerWeights& l : q.weights.layers) l.router = m.weights.layers[&l - q.weights.layers.data()].router;
    const std::vector<float> got = logits(g), same = logits(q);
    ASSERT_EQ(got.size(), want.size());
    double max_diff = 0, max_vs_f32 = 0;
    for (size_t i = 0; i < got.size(); ++i)
      max_diff = std::max(max_diff, double(std::fabs(got[i] - same[i]))), max_vs_f32 = std::max(max_vs_f32, double(std::fabs(got[i] - want[i])));
    EXPECT_LT(max_diff, 1e-4) << dtype_name(t);
    std::printf("%s GGUF: max |logit - f32 logit| %.3g\n", std::string(dtype_name(t)).c_str(), max_vs_f32);
  }
  EXPECT_EQ(m.config.n_active_params() + 2 * 4 * 3 * 32 * 32, m.config.n_params());  // 4 unused experts × 3 × 2 layers
}

TEST(Moe, RefusesWhatItDoesNotRun) {
  test::TempDir dir;
  test::TinyModel tiny;
  nlohmann::json j = moe_config(64).to_json();
  j["mlp_only_layers"] = {1};
  EXPECT_THROW(ModelConfig::from_json(j, "t"), Error);
  j = moe_config(64).to_json();
  j["decoder_sparse_step"] = 2;
  EXPECT_THROW(ModelConfig::from_json(j, "t"), Error);
  nlohmann::json dense = test::TinyModel().model.config.to_json();
  dense["num_experts"] = 8;  // experts in a dense family
  try {
    ModelConfig::from_json(dense, "t");
    FAIL() << "experts in a llama config were accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("qwen3_moe"), std::string::npos) << e.what();
  }
  // GGUF's qwen3moe always renormalises: a model that does not has no GGUF form
  const Model m = Model::random(moe_config(tiny.tok->vocab_size(), false), DType::F32, 1);
  EXPECT_THROW(export_gguf(m, tiny.files, dir / "x.gguf", GgufExportOptions{}), Error);
}

// The Hugging Face release's MXFP4 block against the published rule: 16 bytes of E2M1 codes, value
// 2j in the low nibble of byte j and 2j + 1 in the high one, times 2^(scale − 127) — through the
// conversion to GGUF's block and the reference dequantization; and back to the same bytes.
TEST(Moe, GptOssHfBlockFollowsThePublishedLayout) {
  const float e2m1[16] = {0.0f, 0.5f, 1.0f, 1.5f, 2.0f, 3.0f, 4.0f, 6.0f, -0.0f, -0.5f, -1.0f, -1.5f, -2.0f, -3.0f, -4.0f, -6.0f};
  uint8_t bytes[16];
  int code[32];
  for (int i = 0; i < 32; ++i) code[i] = (7 * i + 3) % 16;  // every code, in no particular order
  for (int j = 0; j < 16; ++j) bytes[j] = uint8_t(code[2 * j] | (code[2 * j + 1] << 4));
  for (uint8_t scale : {uint8_t(127), uint8_t(129), uint8_t(120)}) {
    const BlockMxfp4 b = mxfp4_block_from_hf(bytes, scale);
    float got[32];
    ref::dequantize_row(got, &b, DType::MXFP4, 32);
    for (int i = 0; i < 32; ++i) EXPECT_EQ(got[i], e2m1[code[i]] * std::ldexp(1.0f, int(scale) - 127)) << "value " << i;
    uint8_t back[16], s_back = 0;
    mxfp4_block_to_hf(b, back, &s_back);
    EXPECT_EQ(std::vector<uint8_t>(back, back + 16), std::vector<uint8_t>(bytes, bytes + 16));
    EXPECT_EQ(s_back, scale);
  }
}

// A GPT-OSS-shaped model (sinks, biases everywhere, a sliding window shorter than the sequence,
// 8 experts top 2, MXFP4 experts) as GGUF and as a Hugging Face directory in the release layout:
// the same logits; the directory's tensors have the release's names and shapes, and its
// interleaved rows are the GGUF's gate and up rows.
TEST(Moe, GptOssHfDirectoryMatchesItsGguf) {
  test::TempDir dir;
  test::TinyModel tiny;
  nlohmann::json j = {{"model_type", "gpt_oss"}, {"vocab_size", tiny.tok->vocab_size()}, {"hidden_size", 64},
                      {"intermediate_size", 64}, {"num_hidden_layers", 2}, {"num_attention_heads", 4},
                      {"num_key_value_heads", 2}, {"head_dim", 16}, {"num_local_experts", 8}, {"num_experts_per_tok", 2},
                      {"sliding_window", 8}, {"tie_word_embeddings", false}, {"max_position_embeddings", 512},
                      {"rms_norm_eps", 1e-5}, {"rope_theta", 150000.0}};
  Model m = Model::random(ModelConfig::from_json(j, "gpt_oss"), DType::F32, 31, 0.5f);
  test::randomize_biases(m, 200);
  GgufExportOptions o;
  o.type = DType::F32;
  o.expert_type = DType::MXFP4;
  export_gguf(m, tiny.files, dir / "go.gguf", o);
  const Model g = Model::load(dir / "go.gguf");
  g.save(dir / "hf");
  const Model h = Model::load(dir / "hf");
  ASSERT_EQ(h.config.model_type, "gpt_oss");
  EXPECT_EQ(h.weights.layers[1].exp_up[5].dtype(), DType::MXFP4);
  std::vector<int32_t> ids;
  for (int i = 0; i < 24; ++i) ids.push_back(int32_t((i * 37 + 5) % tiny.tok->vocab_size()));
  auto logits = [&](const Model& model) {
    Decoder d(model);
    Tensor t = d.forward_full(ids.data(), 1, int64_t(ids.size()));
    return std::vector<float>(t.data<float>(), t.data<float>() + t.numel());
  };
  EXPECT_EQ(logits(h), logits(g));

  const TensorStore store = TensorStore::open_dir(dir / "hf");
  const std::string ex = "model.layers.1.mlp.experts.";
  EXPECT_EQ(store.get(ex + "gate_up_proj_blocks").shape(), (Shape{8, 128, 2, 16}));
  EXPECT_EQ(store.get(ex + "gate_up_proj_scales").shape(), (Shape{8, 128, 2}));
  EXPECT_EQ(store.get(ex + "down_proj_blocks").shape(), (Shape{8, 64, 2, 16}));
  EXPECT_EQ(store.get(ex + "gate_up_proj_bias").shape(), (Shape{8, 128}));
  EXPECT_TRUE(store.find("model.layers.0.mlp.router.weight").has_value());
  EXPECT_TRUE(store.find("model.layers.0.self_attn.sinks").has_value());
  EXPECT_FALSE(store.find("model.layers.0.mlp.gate.weight").has_value());
  // expert 3, HF rows 10 and 11: gate row 5 and up row 5 of the GGUF's expert 3
  const Tensor blocks = store.get(ex + "gate_up_proj_blocks"), scales = store.get(ex + "gate_up_proj_scales");
  for (int k = 0; k < 2; ++k) {
    const Tensor& want = k == 0 ? g.weights.layers[1].exp_gate[3] : g.weights.layers[1].exp_up[3];
    const int64_t hf_row = 3 * 128 + 10 + k;
    for (int64_t b = 0; b < 2; ++b) {
      const BlockMxfp4 got = mxfp4_block_from_hf(blocks.data<uint8_t>() + (hf_row * 2 + b) * 16, scales.data<uint8_t>()[hf_row * 2 + b]);
      const BlockMxfp4& w = static_cast<const BlockMxfp4*>(want.raw())[5 * 2 + b];
      EXPECT_EQ(got.e, w.e);
      EXPECT_EQ(std::vector<uint8_t>(got.qs, got.qs + 16), std::vector<uint8_t>(w.qs, w.qs + 16)) << (k ? "up" : "gate");
    }
  }

  // the dequantized variant (gate_up_proj) is named, not misread
  SafetensorsWriter w;
  for (const std::string& name : store.names())
    w.add(name == "model.layers.0.mlp.experts.gate_up_proj_blocks" ? "model.layers.0.mlp.experts.gate_up_proj" : name, store.get(name));
  const std::filesystem::path st = std::filesystem::path(dir / "hf") / "model.safetensors";
  w.write(st.string() + ".tmp");
  std::filesystem::rename(st.string() + ".tmp", st);
  try {
    Model::load(dir / "hf");
    FAIL() << "a dequantized gate_up_proj was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("MXFP4 release"), std::string::npos) << e.what();
  }
}

}  // namespace distill
