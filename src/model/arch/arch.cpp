#include "model/arch/arch.h"

#include "core/error.h"
#include "formats/json_fields.h"

namespace distill {

namespace {

bool flag(const nlohmann::json& j, const char* key, bool fallback) {
  if (!j.contains(key) || j[key].is_null()) return fallback;
  if (!j[key].is_boolean()) fail("{}: expected true or false, got {}", key, j[key].dump());
  return j[key].get<bool>();
}

// Llama (and DeepSeek-R1-Distill-Llama): attention_bias puts biases on q, k, v and o.
void llama(const nlohmann::json& j, ModelConfig& c) {
  c.qkv_bias = c.o_bias = flag(j, "attention_bias", false);
  c.mlp_bias = flag(j, "mlp_bias", false);
}

// Mistral: Llama without biases; sliding_window (if set) limits attention.
void mistral(const nlohmann::json& j, ModelConfig& c) {
  c.sliding_window = jsonf::get_int(j, "sliding_window", "", 1, int64_t(1) << 24, 0);
}

// Qwen2 / Qwen2.5 (and DeepSeek-R1-Distill-Qwen): q, k, v always have biases, o never.
void qwen2(const nlohmann::json& j, ModelConfig& c) {
  c.qkv_bias = true;
  if (flag(j, "use_sliding_window", false))
    fail("use_sliding_window: true is not supported (per-layer windows of Qwen2)");
}

// Qwen3: RMSNorm on every head of q and k before RoPE; head_dim is explicit (HF default 128).
void qwen3(const nlohmann::json& j, ModelConfig& c) {
  c.qk_norm = true;
  c.qkv_bias = c.o_bias = flag(j, "attention_bias", false);
  if (!j.contains("head_dim") || j["head_dim"].is_null()) c.head_dim = 128;
  if (flag(j, "use_sliding_window", false)) fail("use_sliding_window: true is not supported");
}

struct Arch {
  const char* model_type;
  void (*apply)(const nlohmann::json&, ModelConfig&);
};

constexpr Arch kArchs[] = {{"llama", llama}, {"mistral", mistral}, {"qwen2", qwen2}, {"qwen3", qwen3}};

}  // namespace

std::vector<std::string> supported_model_types() {
  std::vector<std::string> out;
  for (const Arch& a : kArchs) out.push_back(a.model_type);
  return out;
}

void apply_arch_hooks(const nlohmann::json& j, ModelConfig& c) {
  for (const char* moe_key : {"num_experts", "num_local_experts", "n_routed_experts"}) {
    if (j.contains(moe_key) && j[moe_key].is_number() && j[moe_key].get<double>() > 0)
      fail("{}: {} — mixture-of-experts models are not supported yet", moe_key, j[moe_key].dump());
  }
  for (const Arch& a : kArchs) {
    if (c.model_type == a.model_type) {
      a.apply(j, c);
      return;
    }
  }
  std::string known;
  for (const auto& t : supported_model_types()) known += (known.empty() ? "" : ", ") + t;
  fail("model_type: '{}' is not supported (supported: {})", c.model_type, known);
}

}  // namespace distill
