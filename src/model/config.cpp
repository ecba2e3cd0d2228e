#include "model/config.h"

#include "core/error.h"
#include "core/atomic_file.h"
#include "formats/json_fields.h"
#include "model/arch/arch.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <fstream>

namespace distill {

using nlohmann::json;

namespace {

constexpr int64_t kBig = int64_t(1) << 24;  // above any real dimension, layer or vocabulary count

int64_t get_int(const json& j, const char* key, int64_t fallback, bool required, int64_t lo = 1, int64_t hi = kBig) {
  if (required) return jsonf::get_int(j, key, "", lo, hi);
  return jsonf::get_int(j, key, "", lo, hi, fallback);
}

double get_num(const json& j, const char* key, double fallback) { return jsonf::get_number(j, key, "", fallback); }

// A token id field: absent/null -> -1; else an integer in [0, n_vocab).
int64_t token_id(const json& j, const char* key, int64_t n_vocab) { return get_int(j, key, -1, false, 0, n_vocab - 1); }

RopeScaling parse_rope_scaling(const json& j) {
  RopeScaling r;
  if (!j.contains("rope_scaling") || j["rope_scaling"].is_null()) return r;
  const json& s = j["rope_scaling"];
  if (!s.is_object()) fail("rope_scaling: expected an object or null, got {}", s.dump());
  // transformers renamed "type" to "rope_type"; accept both.
  const char* key = s.contains("rope_type") ? "rope_type" : "type";
  const std::string type = s.contains(key) && s[key].is_string() ? s[key].get<std::string>() : "";
  if (type == "default" || type.empty()) return r;
  if (type == "linear") {
    r.type = RopeScalingType::Linear;
  } else if (type == "llama3") {
    r.type = RopeScalingType::Llama3;
    r.low_freq_factor = get_num(s, "low_freq_factor", 1.0);
    r.high_freq_factor = get_num(s, "high_freq_factor", 4.0);
    r.original_max_position_embeddings = get_int(s, "original_max_position_embeddings", 8192, false);
    if (r.high_freq_factor <= r.low_freq_factor)
      fail("rope_scaling: high_freq_factor {} must exceed low_freq_factor {}", r.high_freq_factor, r.low_freq_factor);
  } else if (type == "yarn") {
    r.type = RopeScalingType::Yarn;
    r.original_max_position_embeddings = get_int(s, "original_max_position_embeddings", 4096, false);
    r.beta_fast = get_num(s, "beta_fast", 32.0);
    r.beta_slow = get_num(s, "beta_slow", 1.0);
    r.truncate = jsonf::get_bool(s, "truncate", "", true);
    r.attention_factor = get_num(s, "attention_factor", 0.0);
    if (!(r.beta_fast > r.beta_slow && r.beta_slow > 0))
      fail("rope_scaling: beta_fast {} must exceed beta_slow {} > 0", r.beta_fast, r.beta_slow);
    if (r.attention_factor < 0) fail("rope_scaling.attention_factor: {} must not be negative", r.attention_factor);
  } else {
    fail("rope_scaling.{}: '{}' is not supported (supported: linear, llama3, yarn)", key, type);
  }
  r.factor = get_num(s, "factor", 1.0);
  if (!(r.factor > 0)) fail("rope_scaling.factor: must be positive, got {}", r.factor);
  return r;
}

}  // namespace

ModelConfig ModelConfig::from_json(const json& j, const std::string& where) {
  return with_context(where, [&] {
    if (!j.is_object()) fail("expected a JSON object");
    ModelConfig c;
    c.model_type = jsonf::get_string(j, "model_type", "");
    c.n_vocab = get_int(j, "vocab_size", 0, true);
    c.n_embd = get_int(j, "hidden_size", 0, true, 1, 1 << 16);
    c.n_ff = get_int(j, "intermediate_size", 0, true, 1, 1 << 20);
    c.n_layer = get_int(j, "num_hidden_layers", 0, true, 1, 1024);
    c.n_head = get_int(j, "num_attention_heads", 0, true, 1, 1024);
    c.n_kv_head = get_int(j, "num_key_value_heads", c.n_head, false, 1, c.n_head);
    c.norm_eps = get_num(j, "rms_norm_eps", 1e-6);
    if (!(c.norm_eps > 0 && c.norm_eps < 1)) fail("rms_norm_eps: {} must be in (0, 1)", c.norm_eps);
    c.rope_theta = get_num(j, "rope_theta", 10000.0);
    if (!(c.rope_theta > 0)) fail("rope_theta: {} must be positive", c.rope_theta);
    c.max_position_embeddings = get_int(j, "max_position_embeddings", 2048, false);
    c.tie_word_embeddings = jsonf::get_bool(j, "tie_word_embeddings", "", false);
    c.bos_token_id = token_id(j, "bos_token_id", c.n_vocab);
    token_id(j, "pad_token_id", c.n_vocab);  // checked only: a wrong one means a mismatched config
    if (jsonf::has(j, "eos_token_id")) {
      const json& e = j["eos_token_id"];
      if (e.is_array()) {
        for (size_t i = 0; i < e.size(); ++i)
          c.eos_token_ids.push_back(jsonf::as_int(e[i], fmt::format("eos_token_id[{}]", i), 0, c.n_vocab - 1));
      } else {
        c.eos_token_ids = {token_id(j, "eos_token_id", c.n_vocab)};
      }
    }
    if (jsonf::has(j, "torch_dtype") && j["torch_dtype"].is_string()) c.torch_dtype = j["torch_dtype"];
    if (c.n_head % c.n_kv_head != 0)
      fail("num_attention_heads: {} is not a multiple of num_key_value_heads {}", c.n_head, c.n_kv_head);
    c.head_dim = get_int(j, "head_dim", std::max<int64_t>(c.n_embd / c.n_head, 1), false, 1, 4096);
    // Partial rotary embeddings are not implemented: anything but the whole head would run a
    // different function from the one the weights were trained with.
    const double rotary = get_num(j, "partial_rotary_factor", 1.0);
    if (rotary != 1.0) fail("partial_rotary_factor: {} is not supported (only 1.0)", rotary);
    c.rope_scaling = parse_rope_scaling(j);
    const std::string act = jsonf::get_string(j, "hidden_act", "", "silu");
    if (act != "silu") fail("hidden_act: '{}' is not supported (only silu)", act);
    apply_arch_hooks(j, c);
    if (c.head_dim <= 0 || c.head_dim % 2 != 0 || c.head_dim > 512)
      fail("head_dim: {} must be even and in [2, 512]", c.head_dim);
    if (c.sliding_window < 0) fail("sliding_window: must not be negative");
    return c;
  });
}

ModelConfig ModelConfig::from_file(const std::string& path) {
  std::ifstream in(path);
  if (!in) fail("{}: cannot open", path);
  json j;
  try {
    j = json::parse(in);
  } catch (const json::exception& e) {
    fail("{}: malformed JSON: {}", path, e.what());
  }
  return from_json(j, path);
}

json ModelConfig::to_json() const {
  const ArchDescriptor& arch = arch_of(model_type);
  json j = {
      {"architectures", {arch.hf_class}},
      {"model_type", model_type},
      {"vocab_size", n_vocab},
      {"hidden_size", n_embd},
      {"intermediate_size", n_ff},
      {"num_hidden_layers", n_layer},
      {"num_attention_heads", n_head},
      {"num_key_value_heads", n_kv_head},
      {"head_dim", head_dim},
      {"rms_norm_eps", norm_eps},
      {"rope_theta", rope_theta},
      {"max_position_embeddings", max_position_embeddings},
      {"tie_word_embeddings", tie_word_embeddings},
      {"hidden_act", "silu"},
      {"torch_dtype", torch_dtype},
  };
  arch.write_config(*this, j);
  if (bos_token_id >= 0) j["bos_token_id"] = bos_token_id;
  if (eos_token_ids.size() == 1) j["eos_token_id"] = eos_token_ids[0];
  else if (!eos_token_ids.empty()) j["eos_token_id"] = eos_token_ids;
  if (rope_scaling.type == RopeScalingType::Linear) {
    j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", rope_scaling.factor}};
  } else if (rope_scaling.type == RopeScalingType::Yarn) {
    j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", rope_scaling.factor},
                         {"original_max_position_embeddings", rope_scaling.original_max_position_embeddings},
                         {"beta_fast", rope_scaling.beta_fast}, {"beta_slow", rope_scaling.beta_slow},
                         {"truncate", rope_scaling.truncate}};
    if (rope_scaling.attention_factor > 0) j["rope_scaling"]["attention_factor"] = rope_scaling.attention_factor;
  } else if (rope_scaling.type == RopeScalingType::Llama3) {
    j["rope_scaling"] = {{"rope_type", "llama3"},
                         {"factor", rope_scaling.factor},
                         {"low_freq_factor", rope_scaling.low_freq_factor},
                         {"high_freq_factor", rope_scaling.high_freq_factor},
                         {"original_max_position_embeddings", rope_scaling.original_max_position_embeddings}};
  }
  return j;
}

void ModelConfig::save(const std::string& path) const {
  const std::string text = to_json().dump(2) + "\n";
  write_file_atomic(path, text.data(), text.size());
}

std::vector<float> ModelConfig::rope_inv_freq() const {
  const int64_t half = head_dim / 2;
  std::vector<float> inv(static_cast<size_t>(half));
  if (rope_scaling.type == RopeScalingType::Yarn) {
    // YaRN: dimensions that turn fewer than beta_slow times over the original context are
    // interpolated (frequency / factor), those turning more than beta_fast times kept, and the
    // band between blended linearly. The dimension whose wavelength turns n times over the
    // original context L: d(n) = dim · ln(L / (n · 2π)) / (2 ln θ).
    const RopeScaling& r = rope_scaling;
    const double dim = double(head_dim), L = double(r.original_max_position_embeddings);
    auto corr_dim = [&](double n) { return dim * std::log(L / (n * 2.0 * M_PI)) / (2.0 * std::log(rope_theta)); };
    double low = corr_dim(r.beta_fast), high = corr_dim(r.beta_slow);
    if (r.truncate) low = std::floor(low), high = std::ceil(high);
    low = std::max(low, 0.0), high = std::min(high, dim - 1);
    for (int64_t i = 0; i < half; ++i) {
      const double extrapolated = 1.0 / std::pow(rope_theta, double(2 * i) / dim), interpolated = extrapolated / r.factor;
      const double ramp = std::clamp((double(i) - low) / std::max(high - low, 0.001), 0.0, 1.0);  // 0: keep, 1: interpolate
      inv[size_t(i)] = float(interpolated * ramp + extrapolated * (1.0 - ramp));
    }
    return inv;
  }
  for (int64_t i = 0; i < half; ++i) {
    // HF: 1 / theta^(2i / head_dim), computed in f32 from an integer arange
    double f = 1.0 / std::pow(rope_theta, double(2 * i) / double(head_dim));
    if (rope_scaling.type == RopeScalingType::Linear) {
      f /= rope_scaling.factor;  // positions divided by factor == frequencies divided by factor
    } else if (rope_scaling.type == RopeScalingType::Llama3) {
      // Long wavelengths (low frequencies) are slowed by `factor`, short ones kept, and the band
      // between blended linearly in 1/wavelength.
      const double old_ctx = double(rope_scaling.original_max_position_embeddings);
      const double low_freq_wavelen = old_ctx / rope_scaling.low_freq_factor;
      const double high_freq_wavelen = old_ctx / rope_scaling.high_freq_factor;
      const double wavelen = 2.0 * M_PI / f;
      if (wavelen > low_freq_wavelen) {
        f /= rope_scaling.factor;
      } else if (wavelen >= high_freq_wavelen) {
        const double smooth = (old_ctx / wavelen - rope_scaling.low_freq_factor) /
                              (rope_scaling.high_freq_factor - rope_scaling.low_freq_factor);
        f = (1.0 - smooth) * f / rope_scaling.factor + smooth * f;
      }
    }
    inv[size_t(i)] = float(f);
  }
  return inv;
}

namespace {

int64_t count_params(const ModelConfig& c, int64_t experts_counted) {
  const int64_t attn = c.n_embd * (c.q_dim() + 2 * c.kv_dim()) + c.q_dim() * c.n_embd +
                       (c.qkv_bias ? c.q_dim() + 2 * c.kv_dim() : 0) + (c.o_bias ? c.n_embd : 0) +
                       (c.qk_norm ? 2 * c.head_dim : 0) + (c.attn_sinks ? c.n_head : 0);
  const int64_t mlp = c.is_moe() ? c.n_expert * c.n_embd + experts_counted * 3 * c.n_embd * c.n_ff_expert +
                                       (c.moe_bias ? c.n_expert + experts_counted * (2 * c.n_ff_expert + c.n_embd) : 0)
                                 : 3 * c.n_embd * c.n_ff + (c.mlp_bias ? 2 * c.n_ff + c.n_embd : 0);
  const int64_t per_layer = attn + mlp + 2 * c.n_embd;
  return c.n_vocab * c.n_embd * (c.tie_word_embeddings ? 1 : 2) + c.n_layer * per_layer + c.n_embd;
}

}  // namespace

float ModelConfig::attention_scale() const {
  double s = 1.0 / std::sqrt(double(head_dim));
  if (rope_scaling.type == RopeScalingType::Yarn && rope_scaling.factor > 1) {
    const double mscale = rope_scaling.attention_factor > 0 ? rope_scaling.attention_factor : 0.1 * std::log(rope_scaling.factor) + 1.0;
    s *= mscale * mscale;  // q and k are each rotated by cos/sin scaled by mscale
  }
  return float(s);
}

int64_t ModelConfig::n_params() const { return count_params(*this, n_expert); }
int64_t ModelConfig::n_active_params() const { return count_params(*this, n_expert_used); }

}  // namespace distill
