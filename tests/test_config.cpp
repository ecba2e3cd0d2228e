// config.json -> ModelConfig for every supported model_type, and the refusals.
#include "model/config.h"
#include "test_util.h"

#include <nlohmann/json.hpp>

#include <cmath>

namespace distill {

using nlohmann::json;

namespace {

json base(const std::string& type) {
  return {{"model_type", type}, {"vocab_size", 100}, {"hidden_size", 64}, {"intermediate_size", 128},
          {"num_hidden_layers", 2}, {"num_attention_heads", 4}, {"num_key_value_heads", 2}};
}

std::string refusal(const json& j) {
  try {
    ModelConfig::from_json(j, "cfg.json");
  } catch (const Error& e) {
    return e.what();
  }
  return "";
}

}  // namespace

TEST(Config, ArchitecturesSetTheirFlags) {
  ModelConfig llama = ModelConfig::from_json(base("llama"), "x");
  EXPECT_EQ(llama.head_dim, 16);
  EXPECT_FALSE(llama.qkv_bias || llama.qk_norm || llama.tie_word_embeddings);
  json jb = base("llama");
  jb["attention_bias"] = true;
  ModelConfig llama_b = ModelConfig::from_json(jb, "x");
  EXPECT_TRUE(llama_b.qkv_bias && llama_b.o_bias);

  ModelConfig qwen2 = ModelConfig::from_json(base("qwen2"), "x");
  EXPECT_TRUE(qwen2.qkv_bias);
  EXPECT_FALSE(qwen2.o_bias);

  json j3 = base("qwen3");
  j3["head_dim"] = 32;
  ModelConfig qwen3 = ModelConfig::from_json(j3, "x");
  EXPECT_TRUE(qwen3.qk_norm);
  EXPECT_EQ(qwen3.head_dim, 32);
  EXPECT_EQ(qwen3.q_dim(), 128);  // heads × head_dim ≠ hidden
  EXPECT_EQ(ModelConfig::from_json(base("qwen3"), "x").head_dim, 128);  // HF's Qwen3 default

  json jm = base("mistral");
  jm["sliding_window"] = 4096;
  EXPECT_EQ(ModelConfig::from_json(jm, "x").sliding_window, 4096);
}

TEST(Config, RoundTripsThroughJson) {
  json j = base("qwen3");
  j["head_dim"] = 8;
  j["tie_word_embeddings"] = true;
  j["rope_theta"] = 1e6;
  j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"original_max_position_embeddings", 8192}};
  j["eos_token_id"] = {1, 2};
  ModelConfig a = ModelConfig::from_json(j, "x");
  ModelConfig b = ModelConfig::from_json(a.to_json(), "y");
  EXPECT_EQ(b.to_json(), a.to_json());
  EXPECT_EQ(b.eos_token_ids, (std::vector<int64_t>{1, 2}));
  EXPECT_EQ(b.rope_scaling.type, RopeScalingType::Llama3);
}

TEST(Config, RefusesWhatItCannotRun) {
  std::string m = refusal(base("gpt2"));
  EXPECT_NE(m.find("cfg.json"), std::string::npos) << m;
  EXPECT_NE(m.find("model_type: 'gpt2'"), std::string::npos) << m;
  EXPECT_NE(m.find("qwen3"), std::string::npos) << "lists the known types: " << m;

  json moe = base("qwen2");
  moe["num_experts"] = 8;
  EXPECT_NE(refusal(moe).find("num_experts"), std::string::npos);

  json dynamic = base("llama");
  dynamic["rope_scaling"] = {{"type", "dynamic"}, {"factor", 4.0}};
  m = refusal(dynamic);
  EXPECT_NE(m.find("rope_scaling"), std::string::npos) << m;
  EXPECT_NE(m.find("dynamic"), std::string::npos) << m;

  json missing = base("llama");
  missing.erase("hidden_size");
  EXPECT_NE(refusal(missing).find("hidden_size: missing"), std::string::npos);

  json bad_heads = base("llama");
  bad_heads["num_key_value_heads"] = 3;
  EXPECT_NE(refusal(bad_heads).find("num_key_value_heads"), std::string::npos);

  json wrong_type = base("llama");
  wrong_type["vocab_size"] = "many";
  EXPECT_NE(refusal(wrong_type).find("vocab_size"), std::string::npos);

  json act = base("llama");
  act["hidden_act"] = "gelu";
  EXPECT_NE(refusal(act).find("hidden_act"), std::string::npos);
}

TEST(Config, RopeScaling) {
  json j = base("llama");
  j["hidden_size"] = 512;
  j["num_attention_heads"] = 4;  // head_dim 128
  j["rope_theta"] = 500000.0;
  const std::vector<float> plain = ModelConfig::from_json(j, "x").rope_inv_freq();
  ASSERT_EQ(plain.size(), 64u);
  EXPECT_FLOAT_EQ(plain[0], 1.0f);
  EXPECT_NEAR(plain[1], std::pow(500000.0, -2.0 / 128), 1e-7);  // f32 rounding

  j["rope_scaling"] = {{"type", "linear"}, {"factor", 4.0}};
  const std::vector<float> linear = ModelConfig::from_json(j, "x").rope_inv_freq();
  for (size_t i = 0; i < 64; ++i) EXPECT_FLOAT_EQ(linear[i], plain[i] / 4.0f);

  // Llama 3.1: factor 8, low 1, high 4, original context 8192.
  j["rope_scaling"] = {{"rope_type", "llama3"}, {"factor", 8.0}, {"low_freq_factor", 1.0},
                       {"high_freq_factor", 4.0}, {"original_max_position_embeddings", 8192}};
  const std::vector<float> l3 = ModelConfig::from_json(j, "x").rope_inv_freq();
  for (size_t i = 0; i < 64; ++i) {
    const double wavelen = 2 * M_PI / plain[i];
    if (wavelen < 8192.0 / 4) EXPECT_FLOAT_EQ(l3[i], plain[i]) << i;            // high frequencies kept
    else if (wavelen > 8192.0) EXPECT_FLOAT_EQ(l3[i], plain[i] / 8.0f) << i;    // low ones slowed 8×
    else EXPECT_TRUE(l3[i] < plain[i] && l3[i] > plain[i] / 8.0f) << i;         // blended between
  }

  // YaRN as gpt-oss ships it (factor 32, original context 4096, betas 32 / 1, head_dim 128 here):
  // the band edges are d(n) = 128·ln(4096 / (2πn)) / (2 ln θ) for n = 32 and 1, floored and ceiled
  j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", 32.0}, {"original_max_position_embeddings", 4096},
                       {"beta_fast", 32.0}, {"beta_slow", 1.0}};
  const ModelConfig yc = ModelConfig::from_json(j, "x");
  const std::vector<float> yarn = yc.rope_inv_freq();
  const double low = std::floor(128 * std::log(4096 / (2 * M_PI * 32)) / (2 * std::log(500000.0)));
  const double high = std::ceil(128 * std::log(4096 / (2 * M_PI * 1)) / (2 * std::log(500000.0)));
  ASSERT_GT(high, low + 2);
  for (size_t i = 0; i < 64; ++i) {
    if (double(i) <= low) EXPECT_FLOAT_EQ(yarn[i], plain[i]) << i;               // fast dimensions kept
    else if (double(i) >= high) EXPECT_NEAR(yarn[i], plain[i] / 32.0f, 1e-7 * plain[i]) << i;  // slow ones interpolated
    else {
      const double ramp = (double(i) - low) / (high - low);
      EXPECT_NEAR(yarn[i], plain[i] * (1 - ramp) + plain[i] / 32.0 * ramp, 1e-6 * plain[i]) << i;
    }
  }
  const double mscale = 0.1 * std::log(32.0) + 1;  // cos and sin scaled: scores by mscale²
  EXPECT_NEAR(yc.attention_scale(), mscale * mscale / std::sqrt(128.0), 1e-6);
  j["rope_scaling"]["beta_slow"] = 40.0;
  EXPECT_THROW(ModelConfig::from_json(j, "x"), Error);
}

TEST(Config, CountsParameters) {
  // llama-tiny of ../shared/reference: 96×64 ×2 (untied) + 2 × (64·64·2 + 32·64·2 + 3·64·160 + 2·64) + 64
  json j = base("llama");
  j["vocab_size"] = 96;
  j["intermediate_size"] = 160;
  EXPECT_EQ(ModelConfig::from_json(j, "x").n_params(),
            96 * 64 * 2 + 2 * (64 * 64 * 2 + 32 * 64 * 2 + 3 * 64 * 160 + 2 * 64) + 64);
}

}  // namespace distill
