// The decoder layer, written once: every architecture's forward (biases, q/k norm, sliding
// window, GQA) as one sequence of kernel calls used by inference (Decoder: KV cache, buffers
// reused in place) and training (TrainingPass: every activation kept), with the training
// backward beside it, llm.c style — each backward step mirrors a forward step in reverse.
//
//   xn1  = rmsnorm(x_in)                       attn_norm
//   q,k,v = xn1 Wq,Wk,Wv (+ b)                  q_raw/k_raw before the Qwen3 per-head norm
//   q,k  = rope(norm_head(q_raw, k_raw))
//   att  = attention(q, k, v)                   the caller's: KV cache, or whole sequences
//   x_mid = x_in + att Wo (+ b)
//   xn2  = rmsnorm(x_mid)                       ffn_norm
//   h    = silu(xn2 Wg) * (xn2 Wu)
//   x_out = x_mid + h Wd (+ b)                   or, with experts: x_mid + moe(xn2) (model/moe.h)
#pragma once

#include "model/config.h"
#include "model/weights.h"

#include <cstdint>
#include <functional>

namespace distill {

// Where one layer's activations live for T tokens. The decoder points several at the same
// buffer (x_in = x_mid = x_out, xn1 = xn2, q_raw = q, k_raw = k, h = gate); training gives each
// its own so the backward can read them.
struct LayerBuffers {
  float* x_in;    // [T, E] residual stream entering the layer
  float* xn1;     // [T, E] attention input (normalised)
  float* q_raw;   // [T, QD] q before the per-head norm (= q without qk_norm)
  float* k_raw;   // [T, KVD]
  float* q;       // [T, QD] after norm and RoPE
  float* k;       // [T, KVD]
  float* v;       // [T, KVD]
  float* att;     // [T, QD] attention output (o_proj input)
  float* x_mid;   // [T, E] residual after the attention block
  float* xn2;     // [T, E] MLP input (normalised)
  float* gate;    // [T, F] gate_proj output, pre-activation
  float* up;      // [T, F]
  float* h;       // [T, F] silu(gate) * up (down_proj input)
  float* x_out;   // [T, E] residual leaving the layer
  float* proj;    // [T, E] scratch: a sub-layer's output before the residual add
};

// Attends with this layer's q, k, v (after RoPE) into att. The decoder stores k/v in its cache
// first; training runs whole-sequence attention and keeps the probabilities.
using AttendFn = std::function<void(float* att, const float* q, const float* k, const float* v)>;

// One layer's forward over T tokens at positions pos[T].
void layer_forward(const ModelConfig& c, const LayerWeights& l, const LayerBuffers& a, int64_t T, const int32_t* pos,
                   const float* inv_freq, const AttendFn& attend);

// Gradient buffers of the backward, shared by all layers.
struct LayerGradScratch {
  float* d_xn;    // [T, E]
  float* d_q;     // [T, QD]
  float* d_k;     // [T, KVD]
  float* d_v;     // [T, KVD]
  float* d_att;   // [T, QD]
  float* d_gate;  // [T, F]
  float* d_up;    // [T, F]
  float* d_h;     // [T, F]
};

// The attention's backward: d_att -> d_q, d_k, d_v (overwritten), for the q, k, v of this layer.
using AttendBackwardFn = std::function<void(float* d_q, float* d_k, float* d_v, const float* d_att)>;

// Backward of layer_forward: d_resid holds d loss / d x_out on entry and d loss / d x_in on
// exit; weight gradients accumulate into g, for the tensors g defines (a frozen base defines none),
// and an adapter's into g's adapter slot (LoRA). The buffers must be the ones the forward filled.
// neg_pos holds the negated positions: RoPE's backward is the forward rotation at −pos.
void layer_backward(const ModelConfig& c, const LayerWeights& l, LayerWeights& g, const LayerBuffers& a,
                    const LayerGradScratch& s, float* d_resid, int64_t T, const int32_t* neg_pos, const float* inv_freq,
                    const AttendBackwardFn& attend_backward);

}  // namespace distill
