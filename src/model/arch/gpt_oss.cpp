// GPT-OSS (gpt-oss-20b, gpt-oss-120b): every layer a mixture of experts with biases, routed by
// the top k of the router's logits softmaxed among themselves, the clamped SwiGLU (swiglu_limit),
// attention with biases and a learned sink per head, and layers alternating between a sliding
// window (layer_types "sliding_attention", the even layers) and full attention. GGUF "gpt-oss"
// (llama.cpp) names the post-attention norm post_attention_norm. Read and written as GGUF and as
// the Hugging Face release (MXFP4 expert stacks, gate and up interleaved: model/gpt_oss_hf.h).
#include "core/error.h"
#include "formats/gguf.h"
#include "formats/json_fields.h"
#include "model/arch/arch.h"

namespace distill {

namespace {

void read(const nlohmann::json& j, ModelConfig& c) {
  c.qkv_bias = c.o_bias = config_flag(j, "attention_bias", true);
  c.attn_sinks = true;
  c.n_expert = jsonf::get_int(j, "num_local_experts", "", 1, 4096);
  c.n_expert_used = jsonf::has(j, "num_experts_per_tok") ? jsonf::get_int(j, "num_experts_per_tok", "", 1, c.n_expert)
                                                         : jsonf::get_int(j, "experts_per_token", "", 1, c.n_expert);
  c.n_ff_expert = c.n_ff;  // intermediate_size is the width of an expert
  c.moe_softmax_after_topk = true;
  c.moe_bias = true;
  c.swiglu_limit = jsonf::get_number(j, "swiglu_limit", "", 7.0);
  if (!(c.swiglu_limit > 0)) fail("swiglu_limit: {} must be positive", c.swiglu_limit);
  c.sliding_window = jsonf::get_int(j, "sliding_window", "", 1, int64_t(1) << 24, 128);
  c.layer_window.assign(size_t(c.n_layer), 0);
  if (jsonf::has(j, "layer_types")) {
    const nlohmann::json& t = j["layer_types"];
    if (!t.is_array() || int64_t(t.size()) != c.n_layer)
      fail("layer_types: expected an array of {} entries (num_hidden_layers)", c.n_layer);
    for (size_t i = 0; i < t.size(); ++i) {
      const std::string kind = t[i].is_string() ? t[i].get<std::string>() : "";
      if (kind != "sliding_attention" && kind != "full_attention")
        fail("layer_types[{}]: '{}' is not sliding_attention or full_attention", i, t[i].dump());
      c.layer_window[i] = kind == "sliding_attention" ? c.sliding_window : 0;
    }
  } else {
    for (int64_t i = 0; i < c.n_layer; i += 2) c.layer_window[size_t(i)] = c.sliding_window;  // even layers slide
  }
}

void write(const ModelConfig& c, nlohmann::json& j) {
  j["attention_bias"] = c.qkv_bias;
  j["num_local_experts"] = c.n_expert;
  j["num_experts_per_tok"] = c.n_expert_used;
  j["swiglu_limit"] = c.swiglu_limit;
  j["sliding_window"] = c.sliding_window;
  nlohmann::json types = nlohmann::json::array();
  for (int64_t i = 0; i < c.n_layer; ++i) types.push_back(c.window_of(i) > 0 ? "sliding_attention" : "full_attention");
  j["layer_types"] = types;
  // what transformers reads to take the expert stacks as MXFP4 (the release's own setting)
  j["quantization_config"] = {{"quant_method", "mxfp4"},
                              {"modules_to_not_convert", {"model.layers.*.self_attn", "model.layers.*.mlp.router", "model.embed_tokens", "lm_head"}}};
}

void read_gguf(const GgufFile& g, nlohmann::json& j) {
  j["num_local_experts"] = g.get_int("gpt-oss.expert_count");
  j["num_experts_per_tok"] = g.get_int("gpt-oss.expert_used_count");
  j["intermediate_size"] = g.get_int("gpt-oss.expert_feed_forward_length");
  j["sliding_window"] = g.get_int("gpt-oss.attention.sliding_window");
  // llama.cpp's gpt-oss: sliding window on the even layers, full attention on the odd ones
}

void write_gguf(const ModelConfig& c, GgufWriter& w) {
  for (int64_t i = 0; i < c.n_layer; ++i)
    if (c.window_of(i) != (i % 2 == 0 ? c.sliding_window : 0))
      fail("convert: gpt-oss in GGUF alternates sliding (even) and full (odd) layers; this model's layer {} does not", i);
  if (c.swiglu_limit != 7.0) fail("convert: llama.cpp's gpt-oss fixes swiglu_limit at 7 (this model: {})", c.swiglu_limit);
  write_gguf_expert_keys(c, "gpt-oss", w);
  w.set("gpt-oss.attention.sliding_window", GgufValue::of_u32(uint32_t(c.sliding_window)));
}

}  // namespace

extern const ArchDescriptor kGptOssArch = {"gpt_oss", "GptOssForCausalLM", "gpt-oss", false, true, read, write, read_gguf, write_gguf};

}  // namespace distill
