// ModelConfig: the hyper-parameters of a decoder, read from a Hugging Face config.json.
// Only what the engine can run is accepted; anything else is refused with the field named.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <string>
#include <vector>

namespace distill {

enum class RopeScalingType { None, Linear, Llama3, Yarn };

struct RopeScaling {
  RopeScalingType type = RopeScalingType::None;
  double factor = 1.0;
  double low_freq_factor = 1.0;     // llama3
  double high_freq_factor = 4.0;    // llama3
  int64_t original_max_position_embeddings = 8192;  // llama3, yarn
  double beta_fast = 32.0, beta_slow = 1.0;         // yarn: the band of dimensions that is blended
  bool truncate = true;                             // yarn: band edges rounded to whole dimensions
  double attention_factor = 0;                      // yarn: scale of cos/sin (0: 0.1·ln(factor) + 1)
};

struct ModelConfig {
  std::string model_type;           // llama | mistral | qwen2 | qwen3 | qwen3_moe | gpt_oss
  int64_t n_vocab = 0;              // vocab_size
  int64_t n_embd = 0;               // hidden_size
  int64_t n_ff = 0;                 // intermediate_size
  int64_t n_layer = 0;              // num_hidden_layers
  int64_t n_head = 0;               // num_attention_heads
  int64_t n_kv_head = 0;            // num_key_value_heads
  int64_t head_dim = 0;             // head_dim (default n_embd / n_head; Qwen3: 128)
  double norm_eps = 1e-6;           // rms_norm_eps
  double rope_theta = 10000.0;
  RopeScaling rope_scaling;
  int64_t max_position_embeddings = 2048;
  int64_t sliding_window = 0;       // 0 = full attention
  bool tie_word_embeddings = false;
  // What the architecture has (set by the arch hooks from model_type and config fields):
  bool qkv_bias = false;            // q/k/v projections have biases
  bool o_bias = false;              // output projection has a bias
  bool mlp_bias = false;            // gate/up/down have biases
  bool qk_norm = false;             // RMSNorm over each head of q and k before RoPE
  // Mixture of experts (0 experts: a dense MLP of n_ff). Each token's MLP is the weighted sum of
  // n_expert_used of n_expert SwiGLU experts of width n_ff_expert, chosen by a linear router:
  // softmax over all experts, the top n_expert_used kept, renormalised to sum 1 if norm_topk_prob.
  int64_t n_expert = 0;             // num_experts
  int64_t n_expert_used = 0;        // num_experts_per_tok
  int64_t n_ff_expert = 0;          // moe_intermediate_size
  bool norm_topk_prob = false;
  // GPT-OSS's variant: the top k taken on the router's logits and softmaxed among themselves,
  // biases on the router and the experts, and the clamped SwiGLU: g = min(gate, L),
  // u = clamp(up, −L, L), h = g·sigmoid(1.702·g)·(u + 1) with L = swiglu_limit (0: plain SwiGLU).
  bool moe_softmax_after_topk = false;
  bool moe_bias = false;
  double swiglu_limit = 0;
  bool attn_sinks = false;          // a learned logit per head in the softmax's denominator
  // Per-layer attention window (GPT-OSS alternates sliding and full layers); empty: every layer
  // uses sliding_window.
  std::vector<int64_t> layer_window;
  int64_t bos_token_id = -1;
  std::vector<int64_t> eos_token_ids;
  std::string torch_dtype = "float32";

  bool is_moe() const { return n_expert > 0; }
  int64_t window_of(int64_t layer) const { return layer_window.empty() ? sliding_window : layer_window[size_t(layer)]; }
  int64_t q_dim() const { return n_head * head_dim; }
  int64_t kv_dim() const { return n_kv_head * head_dim; }

  // Throws distill::Error "<where>: field: reason".
  static ModelConfig from_json(const nlohmann::json& j, const std::string& where);
  static ModelConfig from_file(const std::string& path);
  nlohmann::json to_json() const;
  void save(const std::string& path) const;  // atomic

  // RoPE inverse frequencies [head_dim / 2] with rope_scaling applied.
  std::vector<float> rope_inv_freq() const;
  // The attention's score scale: 1/sqrt(head_dim), times YaRN's attention factor squared (it
  // scales the cos and sin that rotate both q and k).
  float attention_scale() const;
  // Number of parameters (tied head counted once); a mixture of experts counts every expert.
  int64_t n_params() const;
  // Parameters one token reads: a mixture of experts counts only n_expert_used experts.
  int64_t n_active_params() const;
};

}  // namespace distill
