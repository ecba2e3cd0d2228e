#include "model/weights.h"

#include "core/error.h"
#include "formats/checkpoint.h"
#include "kernels/kernels.h"

namespace distill {

std::vector<ParamRef> list_params(const ModelConfig& c, ModelWeights& w) {
  std::vector<ParamRef> p;
  w.layers.resize(size_t(c.n_layer));
  p.push_back({"model.embed_tokens.weight", {c.n_vocab, c.n_embd}, &w.tok_embd, true});
  for (int64_t il = 0; il < c.n_layer; ++il) {
    LayerWeights& l = w.layers[size_t(il)];
    const std::string pre = "model.layers." + std::to_string(il) + ".";
    p.push_back({pre + "input_layernorm.weight", {c.n_embd}, &l.attn_norm, false});
    p.push_back({pre + "self_attn.q_proj.weight", {c.q_dim(), c.n_embd}, &l.wq, true});
    p.push_back({pre + "self_attn.k_proj.weight", {c.kv_dim(), c.n_embd}, &l.wk, true});
    p.push_back({pre + "self_attn.v_proj.weight", {c.kv_dim(), c.n_embd}, &l.wv, true});
    p.push_back({pre + "self_attn.o_proj.weight", {c.n_embd, c.q_dim()}, &l.wo, true});
    if (c.qkv_bias) {
      p.push_back({pre + "self_attn.q_proj.bias", {c.q_dim()}, &l.bq, false});
      p.push_back({pre + "self_attn.k_proj.bias", {c.kv_dim()}, &l.bk, false});
      p.push_back({pre + "self_attn.v_proj.bias", {c.kv_dim()}, &l.bv, false});
    }
    if (c.o_bias) p.push_back({pre + "self_attn.o_proj.bias", {c.n_embd}, &l.bo, false});
    if (c.attn_sinks) p.push_back({pre + "self_attn.sinks", {c.n_head}, &l.sinks, false});
    if (c.qk_norm) {
      p.push_back({pre + "self_attn.q_norm.weight", {c.head_dim}, &l.q_norm, false});
      p.push_back({pre + "self_attn.k_norm.weight", {c.head_dim}, &l.k_norm, false});
    }
    p.push_back({pre + "post_attention_layernorm.weight", {c.n_embd}, &l.ffn_norm, false});
    if (c.is_moe()) {
      p.push_back({pre + "mlp.gate.weight", {c.n_expert, c.n_embd}, &l.router, true});
      if (c.moe_bias) p.push_back({pre + "mlp.gate.bias", {c.n_expert}, &l.router_b, false});
      l.exp_gate.resize(size_t(c.n_expert)), l.exp_up.resize(size_t(c.n_expert)), l.exp_down.resize(size_t(c.n_expert));
      if (c.moe_bias)
        l.exp_gate_b.resize(size_t(c.n_expert)), l.exp_up_b.resize(size_t(c.n_expert)), l.exp_down_b.resize(size_t(c.n_expert));
      for (int64_t e = 0; e < c.n_expert; ++e) {
        const std::string ex = pre + "mlp.experts." + std::to_string(e) + ".";
        p.push_back({ex + "gate_proj.weight", {c.n_ff_expert, c.n_embd}, &l.exp_gate[size_t(e)], true});
        p.push_back({ex + "up_proj.weight", {c.n_ff_expert, c.n_embd}, &l.exp_up[size_t(e)], true});
        p.push_back({ex + "down_proj.weight", {c.n_embd, c.n_ff_expert}, &l.exp_down[size_t(e)], true});
        if (c.moe_bias) {
          p.push_back({ex + "gate_proj.bias", {c.n_ff_expert}, &l.exp_gate_b[size_t(e)], false});
          p.push_back({ex + "up_proj.bias", {c.n_ff_expert}, &l.exp_up_b[size_t(e)], false});
          p.push_back({ex + "down_proj.bias", {c.n_embd}, &l.exp_down_b[size_t(e)], false});
        }
      }
      continue;
    }
    p.push_back({pre + "mlp.gate_proj.weight", {c.n_ff, c.n_embd}, &l.w_gate, true});
    p.push_back({pre + "mlp.up_proj.weight", {c.n_ff, c.n_embd}, &l.w_up, true});
    p.push_back({pre + "mlp.down_proj.weight", {c.n_embd, c.n_ff}, &l.w_down, true});
    if (c.mlp_bias) {
      p.push_back({pre + "mlp.gate_proj.bias", {c.n_ff}, &l.b_gate, false});
      p.push_back({pre + "mlp.up_proj.bias", {c.n_ff}, &l.b_up, false});
      p.push_back({pre + "mlp.down_proj.bias", {c.n_embd}, &l.b_down, false});
    }
  }
  p.push_back({"model.norm.weight", {c.n_embd}, &w.out_norm, false});
  if (!c.tie_word_embeddings) p.push_back({"lm_head.weight", {c.n_vocab, c.n_embd}, &w.lm_head, true});
  return p;
}

Tensor converted(const Tensor& t, DType to) {
  if (t.dtype() == to) return t;
  const int64_t n = t.numel();
  std::vector<float> f(static_cast<size_t>(n));
  dequantize_row(f.data(), t.raw(), t.dtype(), n);
  Tensor out = Tensor::zeros(to, t.shape());
  if (dtype_is_quantized(to)) {
    const int64_t K = t.dim(-1), rows = n / K;
    const size_t row_bytes = dtype_bytes(to, K);
#pragma omp parallel for schedule(static)
    for (int64_t r = 0; r < rows; ++r) quantize_row(static_cast<uint8_t*>(out.raw()) + size_t(r) * row_bytes, to, f.data() + r * K, K);
  } else {
    convert_from_f32(out.raw(), to, f.data(), size_t(n));
  }
  return out;
}

void tie_lm_head(const ModelConfig& c, ModelWeights& w) {
  if (c.tie_word_embeddings) w.lm_head = w.tok_embd;
}

ModelWeights load_weights(const ModelConfig& c, const TensorStore& store, const std::string& prefix,
                          const std::function<std::string(const std::string&)>& stored_name) {
  ModelWeights w;
  for (ParamRef& p : list_params(c, w)) {
    const std::string stored = stored_name ? stored_name(p.name) : p.name;
    if (stored.empty()) continue;  // the caller's
    const std::string name = prefix + stored;
    std::optional<Tensor> t = store.find(name);
    if (!t) {
      fail("{}: tensor '{}' is missing (config.json's model_type {} with {} layers needs it)",
           store.description(), name, c.model_type, c.n_layer);
    }
    if (t->shape() != p.shape)
      fail("{}: tensor '{}' has shape {} but config.json implies {}", store.source(name), name,
           shape_str(t->shape()), shape_str(p.shape));
    const DType dt = t->dtype();
    if (dt != DType::F32 && dt != DType::F16 && dt != DType::BF16)
      fail("{}: tensor '{}' has dtype {}; expected F32, F16 or BF16", store.source(name), name, dtype_name(dt));
    // Matrices stay as stored (zero-copy); small vectors are widened to f32 once.
    *p.tensor = (p.is_matrix || dt == DType::F32) ? *t : t->to(DType::F32);
  }
  // A layer the config does not count would be dropped silently: refuse it instead.
  const std::string extra = prefix + fmt::format("model.layers.{}.", c.n_layer);
  for (const std::string& name : store.names())
    if (name.compare(0, extra.size(), extra) == 0)
      fail("{}: tensor '{}' belongs to a layer past num_hidden_layers = {}", store.description(), name, c.n_layer);
  tie_lm_head(c, w);
  return w;
}

}  // namespace distill
