// The decoder's weights as views (into an mmapped checkpoint or an owned arena), named after
// their Hugging Face tensors. Matrices keep their stored dtype (F32/F16/BF16) and are widened in
// the kernels; vectors (norms, biases) are always F32.
#pragma once

#include "core/tensor.h"
#include "model/config.h"

#include <functional>
#include <string>
#include <vector>

namespace distill {

class TensorStore;

// A LoRA adapter beside a frozen matrix W [out, in] (model/lora.h): the layer computes
// y = x Wᵀ + scale · (x Aᵀ) Bᵀ. Views into f32 memory its owner keeps (a training run's adapter
// arena, or its gradient buffer in a gradient view).
struct LoraAdapter {
  float* a = nullptr;  // [rank, in]
  float* b = nullptr;  // [out, rank]
  int64_t rank = 0;
  float scale = 0;
  bool defined() const { return a != nullptr; }
};

// The adapters of a layer's seven projections, named as PEFT's target modules.
struct LayerAdapters {
  LoraAdapter q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj;
};

struct LayerWeights {
  Tensor attn_norm;                // f32 [n_embd]          input_layernorm
  Tensor wq, wk, wv, wo;           // [q_dim, n_embd], [kv_dim, n_embd] ×2, [n_embd, q_dim]
  Tensor bq, bk, bv, bo;           // f32 [q_dim], [kv_dim] ×2, [n_embd]   (if the arch has them)
  Tensor q_norm, k_norm;           // f32 [head_dim]        (Qwen3)
  Tensor ffn_norm;                 // f32 [n_embd]          post_attention_layernorm
  Tensor w_gate, w_up, w_down;     // [n_ff, n_embd] ×2, [n_embd, n_ff]   (dense MLP)
  Tensor b_gate, b_up, b_down;     // f32 (mlp_bias)
  // Mixture of experts (instead of the dense MLP): mlp.gate (the router) and one SwiGLU per expert.
  Tensor router;                   // [n_expert, n_embd]
  std::vector<Tensor> exp_gate, exp_up, exp_down;  // per expert: [n_ff_expert, n_embd] ×2, [n_embd, n_ff_expert]
  Tensor router_b;                 // f32 [n_expert]                   (moe_bias)
  std::vector<Tensor> exp_gate_b, exp_up_b, exp_down_b;  // f32 per expert (moe_bias)
  Tensor sinks;                    // f32 [n_head]                      (attn_sinks)
  LayerAdapters lora;              // unset unless an adapter is trained or applied unmerged
};

struct ModelWeights {
  Tensor tok_embd;                 // [n_vocab, n_embd]
  std::vector<LayerWeights> layers;
  Tensor out_norm;                 // f32 [n_embd]
  Tensor lm_head;                  // [n_vocab, n_embd]; the same storage as tok_embd when tied
};

// One parameter: its HF name, the shape config.json implies, where it lives, and whether it is
// a matrix (kept in the stored dtype) or a vector (F32).
struct ParamRef {
  std::string name;
  Shape shape;
  Tensor* tensor;
  bool is_matrix;
};

// Every parameter the config implies, in checkpoint order; a tied lm_head is not listed.
std::vector<ParamRef> list_params(const ModelConfig& c, ModelWeights& w);

// Loads every parameter from `store` under `prefix` + HF name, checking shapes against the
// config. Missing tensors and contradicting shapes throw with the file and tensor named.
// `stored_name` maps a parameter's name to the name it has in the store ("" = not read here: the
// caller fills it), for a family whose files name some tensors differently (gpt_oss).
ModelWeights load_weights(const ModelConfig& c, const TensorStore& store, const std::string& prefix = "",
                          const std::function<std::string(const std::string&)>& stored_name = {});

// `t` in another element type: widened or narrowed, or quantized row by row along its last
// dimension for block types (which the kernels' quantizers define); `t` itself when already so.
Tensor converted(const Tensor& t, DType to);

// Points lm_head at tok_embd when the embeddings are tied.
void tie_lm_head(const ModelConfig& c, ModelWeights& w);

}  // namespace distill
