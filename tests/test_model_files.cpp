// Model directories: save/load round trip, and broken directories refused with the file and
// tensor named.
#include "formats/checkpoint.h"
#include "model/decoder.h"
#include "test_util.h"

#include <filesystem>

namespace distill {
using test::TempDir;

namespace {

ModelConfig tiny_config(const std::string& type = "qwen2", bool tied = true) {
  ModelConfig c;
  c.model_type = type;
  c.n_vocab = 50, c.n_embd = 32, c.n_ff = 48, c.n_layer = 2, c.n_head = 4, c.n_kv_head = 2, c.head_dim = 8;
  c.tie_word_embeddings = tied;
  c.qkv_bias = type == "qwen2";
  c.qk_norm = type == "qwen3";
  return c;
}

std::string load_error(const std::string& dir) {
  try {
    Model::load(dir);
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

// Rewrites dir/model.safetensors through `edit`, which may drop or replace tensors.
template <typename Edit>
void rewrite_weights(const std::string& dir, Edit edit) {
  const std::string path = dir + "/model.safetensors";
  std::map<std::string, Tensor> tensors;
  {
    SafetensorsFile f = SafetensorsFile::open(path);
    for (const std::string& n : f.names()) tensors[n] = f.get(n).to(f.get(n).dtype());  // owned copies
  }
  edit(tensors);
  SafetensorsWriter w;
  for (auto& [n, t] : tensors) w.add(n, t);
  w.write(path);
}

}  // namespace

TEST(ModelFiles, SaveLoadRoundTripGivesSameLogits) {
  TempDir dir;
  for (const char* type : {"llama", "qwen2", "qwen3"}) {
    for (DType dt : {DType::F32, DType::BF16}) {
      const Model m = Model::random(tiny_config(type, std::string(type) != "llama"), dt, 7, 0.2f);
      const std::string path = dir / (std::string(type) + std::string(dtype_name(dt)));
      m.save(path);
      const Model loaded = Model::load(path);
      EXPECT_EQ(loaded.weights.layers[1].wq.dtype(), dt);
      const int32_t ids[6] = {1, 5, 49, 0, 3, 3};
      Decoder a(m), b(loaded);
      Tensor la = a.forward_full(ids, 2, 3), lb = b.forward_full(ids, 2, 3);
      EXPECT_EQ(test::max_abs_diff(la.data<float>(), lb.data<float>(), size_t(la.numel())), 0.0f) << type;
      EXPECT_GT(test::max_abs(la.data<float>(), size_t(la.numel())), 0.0f);
    }
  }
}

TEST(ModelFiles, RandomInitIsDeterministic) {
  const Model a = Model::random(tiny_config(), DType::F32, 3), b = Model::random(tiny_config(), DType::F32, 3);
  const Model c = Model::random(tiny_config(), DType::F32, 4);
  const size_t n = size_t(a.weights.tok_embd.numel());
  EXPECT_EQ(test::max_abs_diff(a.weights.tok_embd.data<float>(), b.weights.tok_embd.data<float>(), n), 0.0f);
  EXPECT_GT(test::max_abs_diff(a.weights.tok_embd.data<float>(), c.weights.tok_embd.data<float>(), n), 0.0f);
}

TEST(ModelFiles, RefusesMissingTensor) {
  TempDir dir;
  Model::random(tiny_config(), DType::F32, 1).save(dir.str());
  rewrite_weights(dir.str(), [](auto& t) { t.erase("model.layers.1.mlp.up_proj.weight"); });
  const std::string m = load_error(dir.str());
  EXPECT_NE(m.find(dir.str()), std::string::npos) << m;
  EXPECT_NE(m.find("'model.layers.1.mlp.up_proj.weight' is missing"), std::string::npos) << m;
}

TEST(ModelFiles, RefusesShapeThatContradictsConfig) {
  TempDir dir;
  Model::random(tiny_config(), DType::F32, 1).save(dir.str());
  rewrite_weights(dir.str(), [](auto& t) { t["model.layers.0.self_attn.k_proj.weight"] = Tensor::zeros(DType::F32, {32, 32}); });
  const std::string m = load_error(dir.str());
  EXPECT_NE(m.find("model.safetensors"), std::string::npos) << m;
  EXPECT_NE(m.find("'model.layers.0.self_attn.k_proj.weight' has shape [32, 32] but config.json implies [16, 32]"),
            std::string::npos) << m;
}

TEST(ModelFiles, RefusesWrongDtypeAndBrokenConfig) {
  TempDir dir;
  Model::random(tiny_config(), DType::F32, 1).save(dir.str());
  rewrite_weights(dir.str(), [](auto& t) { t["model.norm.weight"] = Tensor::zeros(DType::I32, {32}); });
  EXPECT_NE(load_error(dir.str()).find("'model.norm.weight' has dtype I32"), std::string::npos);
  test::write_bytes(dir / "config.json", "{\"model_type\": \"llama\",");
  std::string m = load_error(dir.str());
  EXPECT_NE(m.find("config.json: malformed JSON"), std::string::npos) << m;
  std::filesystem::remove(dir / "config.json");
  m = load_error(dir.str());
  EXPECT_NE(m.find("config.json: cannot open"), std::string::npos) << m;
  EXPECT_NE(load_error(dir / "no-such-dir").find("not a model directory"), std::string::npos);
}

TEST(ModelFiles, ForwardRefusesOutOfRangeInput) {
  const Model m = Model::random(tiny_config(), DType::F32, 1);
  Decoder dec(m);
  KVCache cache(m.config, 1, 4);
  Batch b;
  b.add(50, 0, 0, true);  // vocab is 50
  EXPECT_THROW(dec.forward(b, cache), Error);
  b.clear();
  b.add(1, 4, 0, true);  // context is 4
  EXPECT_THROW(dec.forward(b, cache), Error);
  b.clear();
  b.add(1, 0, 1, true);  // one slot
  EXPECT_THROW(dec.forward(b, cache), Error);
}

TEST(ModelFiles, SlidingWindowLimitsAttention) {
  // With window 2, the logits at position 3 must not depend on the token at position 0.
  ModelConfig c = tiny_config("mistral", false);
  c.sliding_window = 2;
  const Model m = Model::random(c, DType::F32, 5, 0.3f);
  Decoder dec(m);
  const int32_t a[4] = {1, 2, 3, 4}, b[4] = {9, 2, 3, 4};
  Tensor la = dec.forward_full(a, 1, 4), lb = dec.forward_full(b, 1, 4);
  const int64_t V = c.n_vocab;
  // Position 3 sees positions 2..3 in every layer; position 1 sees 0 directly.
  EXPECT_GT(test::max_abs_diff(la.data<float>() + 1 * V, lb.data<float>() + 1 * V, size_t(V)), 1e-4f);
  // Layer 2 at position 3 sees layer-1 states at 2 and 3, which saw 1..3: position 0 is out of reach.
  EXPECT_LT(test::max_abs_diff(la.data<float>() + 3 * V, lb.data<float>() + 3 * V, size_t(V)), 1e-6f);
}

}  // namespace distill
