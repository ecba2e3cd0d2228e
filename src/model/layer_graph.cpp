#include "model/layer_graph.h"

#include "core/error.h"
#include "kernels/kernels.h"
#include "model/moe.h"

#include <cstring>
#include <initializer_list>

namespace distill {

namespace {

const float* opt(const Tensor& t) { return t.defined() ? t.data<float>() : nullptr; }
float* opt(Tensor& t) { return t.defined() ? t.data<float>() : nullptr; }

// y[T, N] = x[T, K] · W^T + b, in the weight's own dtype (or its load-time prepared form), plus a
// LoRA adapter's low-rank branch when the layer has one for W.
void linear(float* y, const float* x, const Tensor& w, const Tensor& b, const LoraAdapter& ad, int64_t T) {
  matmul_prepared(y, x, w.raw(), w.dtype(), static_cast<const PreparedWeight*>(w.prepared()), opt(b), T, w.dim(0), w.dim(1));
  if (ad.defined()) lora_forward(y, x, ad.a, ad.b, ad.scale, T, w.dim(0), w.dim(1), ad.rank);
}

// Linears that read the same input x[T, K]: y = x · Wᵀ + b for each. At T = 1 (decode) one
// matvec batch (one parallel region, x quantized once per thread), else one product each.
struct LinearOut {
  float* y;
  const Tensor& w;
  const Tensor& b;
  const LoraAdapter& ad;
};
void linears_of(const float* x, int64_t T, std::initializer_list<LinearOut> outs) {
  if (T != 1) {
    for (const LinearOut& o : outs) linear(o.y, x, o.w, o.b, o.ad, T);
    return;
  }
  MatvecJob jobs[4];
  int n = 0;
  for (const LinearOut& o : outs) jobs[n++] = {o.y, x, o.w.raw(), o.w.dtype(), opt(o.b), o.w.dim(0), o.w.dim(1)};
  matvec_batch(jobs, n);
  for (const LinearOut& o : outs)
    if (o.ad.defined()) lora_forward(o.y, x, o.ad.a, o.ad.b, o.ad.scale, 1, o.w.dim(0), o.w.dim(1), o.ad.rank);
}

// Backward of linear: d_w (+ d_b) accumulate when the gradient views have them (a frozen base has
// none); an adapter's d_A, d_B accumulate into the gradient view's adapter; d_x = or += d_y W (+ its
// adapter's branch).
void linear_backward(float* d_x, Tensor& d_w, Tensor& d_b, LoraAdapter& d_ad, const float* d_y, const float* x,
                     const Tensor& w, const LoraAdapter& ad, int64_t T, bool accumulate_dx) {
  matmul_backward(d_x, opt(d_w), opt(d_b), d_y, x, w.raw(), w.dtype(), T, w.dim(0), w.dim(1), accumulate_dx);
  if (!ad.defined()) return;
  DISTILL_ASSERT_MSG(d_ad.defined(), "an adapter without a gradient slot");
  lora_backward(d_x, d_ad.a, d_ad.b, d_y, x, ad.a, ad.b, ad.scale, T, w.dim(0), w.dim(1), ad.rank);
}

// out = in + delta; in place when out == in (the decoder's single residual buffer).
void residual_add(float* out, const float* in, const float* delta, int64_t n) {
  if (out != in) std::memcpy(out, in, size_t(n) * sizeof(float));
  add_inplace(out, delta, n);
}

}  // namespace

void layer_forward(const ModelConfig& c, const LayerWeights& l, const LayerBuffers& a, int64_t T, const int32_t* pos,
                   const float* inv_freq, const AttendFn& attend) {
  const int64_t E = c.n_embd, HD = c.head_dim, F = c.n_ff;
  const float eps = float(c.norm_eps);

  // --- attention block: x_mid = x_in + o_proj(attention(rope(q), rope(k), v)) ---
  rmsnorm_forward(a.xn1, a.x_in, l.attn_norm.data<float>(), T, E, eps);
  linears_of(a.xn1, T, {{a.q_raw, l.wq, l.bq, l.lora.q_proj}, {a.k_raw, l.wk, l.bk, l.lora.k_proj}, {a.v, l.wv, l.bv, l.lora.v_proj}});
  if (c.qk_norm) {
    // Qwen3: each head's q and k vector is RMS-normalised on its own, before RoPE
    rmsnorm_forward(a.q, a.q_raw, l.q_norm.data<float>(), T * c.n_head, HD, eps);
    rmsnorm_forward(a.k, a.k_raw, l.k_norm.data<float>(), T * c.n_kv_head, HD, eps);
  } else {
    if (a.q != a.q_raw) std::memcpy(a.q, a.q_raw, size_t(T * c.q_dim()) * sizeof(float));
    if (a.k != a.k_raw) std::memcpy(a.k, a.k_raw, size_t(T * c.kv_dim()) * sizeof(float));
  }
  rope_forward(a.q, T, c.n_head, HD, pos, inv_freq);
  rope_forward(a.k, T, c.n_kv_head, HD, pos, inv_freq);
  attend(a.att, a.q, a.k, a.v);
  linear(a.proj, a.att, l.wo, l.bo, l.lora.o_proj, T);
  residual_add(a.x_mid, a.x_in, a.proj, T * E);

  // --- MLP block: x_out = x_mid + down(silu(gate(xn2)) * up(xn2)) ---
  rmsnorm_forward(a.xn2, a.x_mid, l.ffn_norm.data<float>(), T, E, eps);
  if (c.is_moe()) {
    moe_forward(c, l, a.xn2, a.proj, T);  // (inference only: training refuses experts)
  } else {
    linears_of(a.xn2, T, {{a.gate, l.w_gate, l.b_gate, l.lora.gate_proj}, {a.up, l.w_up, l.b_up, l.lora.up_proj}});
    swiglu_forward(a.h, a.gate, a.up, T * F);
    linear(a.proj, a.h, l.w_down, l.b_down, l.lora.down_proj, T);
  }
  residual_add(a.x_out, a.x_mid, a.proj, T * E);
}

void layer_backward(const ModelConfig& c, const LayerWeights& l, LayerWeights& g, const LayerBuffers& a,
                    const LayerGradScratch& s, float* d_resid, int64_t T, const int32_t* neg_pos, const float* inv_freq,
                    const AttendBackwardFn& attend_backward) {
  const int64_t E = c.n_embd, HD = c.head_dim, F = c.n_ff;
  const float eps = float(c.norm_eps);

  // MLP block, in reverse: the residual passes d_resid through unchanged and adds the branch's.
  linear_backward(s.d_h, g.w_down, g.b_down, g.lora.down_proj, d_resid, a.h, l.w_down, l.lora.down_proj, T, false);
  swiglu_backward(s.d_gate, s.d_up, s.d_h, a.gate, a.up, T * F);
  linear_backward(s.d_xn, g.w_gate, g.b_gate, g.lora.gate_proj, s.d_gate, a.xn2, l.w_gate, l.lora.gate_proj, T, false);
  linear_backward(s.d_xn, g.w_up, g.b_up, g.lora.up_proj, s.d_up, a.xn2, l.w_up, l.lora.up_proj, T, true);
  rmsnorm_backward(s.d_xn, opt(g.ffn_norm), s.d_xn, a.x_mid, l.ffn_norm.data<float>(), T, E, eps);
  add_inplace(d_resid, s.d_xn, T * E);

  // Attention block, in reverse.
  linear_backward(s.d_att, g.wo, g.bo, g.lora.o_proj, d_resid, a.att, l.wo, l.lora.o_proj, T, false);
  attend_backward(s.d_q, s.d_k, s.d_v, s.d_att);
  rope_forward(s.d_q, T, c.n_head, HD, neg_pos, inv_freq);  // a rotation's transpose: the opposite angle
  rope_forward(s.d_k, T, c.n_kv_head, HD, neg_pos, inv_freq);
  if (c.qk_norm) {
    rmsnorm_backward(s.d_q, opt(g.q_norm), s.d_q, a.q_raw, l.q_norm.data<float>(), T * c.n_head, HD, eps);
    rmsnorm_backward(s.d_k, opt(g.k_norm), s.d_k, a.k_raw, l.k_norm.data<float>(), T * c.n_kv_head, HD, eps);
  }
  linear_backward(s.d_xn, g.wq, g.bq, g.lora.q_proj, s.d_q, a.xn1, l.wq, l.lora.q_proj, T, false);
  linear_backward(s.d_xn, g.wk, g.bk, g.lora.k_proj, s.d_k, a.xn1, l.wk, l.lora.k_proj, T, true);
  linear_backward(s.d_xn, g.wv, g.bv, g.lora.v_proj, s.d_v, a.xn1, l.wv, l.lora.v_proj, T, true);
  rmsnorm_backward(s.d_xn, opt(g.attn_norm), s.d_xn, a.x_in, l.attn_norm.data<float>(), T, E, eps);
  add_inplace(d_resid, s.d_xn, T * E);
}

}  // namespace distill
