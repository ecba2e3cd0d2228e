#include "model/layer_graph.h"

#include "kernels/kernels.h"
#include "model/moe.h"

#include <cstring>
#include <initializer_list>

namespace distill {

namespace {

const float* opt(const Tensor& t) { return t.defined() ? t.data<float>() : nullptr; }
float* opt(Tensor& t) { return t.defined() ? t.data<float>() : nullptr; }

// y[T, N] = x[T, K] · W^T + b, in the weight's own dtype (or its load-time prepared form).
void linear(float* y, const float* x, const Tensor& w, const Tensor& b, int64_t T) {
  matmul_prepared(y, x, w.raw(), w.dtype(), static_cast<const PreparedWeight*>(w.prepared()), opt(b), T, w.dim(0), w.dim(1));
}

// Linears that read the same input x[T, K]: y = x · Wᵀ + b for each. At T = 1 (decode) one
// matvec batch (one parallel region, x quantized once per thread), else one product each.
struct LinearOut {
  float* y;
  const Tensor& w;
  const Tensor& b;
};
void linears_of(const float* x, int64_t T, std::initializer_list<LinearOut> outs) {
  if (T != 1) {
    for (const LinearOut& o : outs) linear(o.y, x, o.w, o.b, T);
    return;
  }
  MatvecJob jobs[4];
  int n = 0;
  for (const LinearOut& o : outs) jobs[n++] = {o.y, x, o.w.raw(), o.w.dtype(), opt(o.b), o.w.dim(0), o.w.dim(1)};
  matvec_batch(jobs, n);
}

// Backward of linear (f32 weights): d_w (+ d_b) accumulate; d_x = or += d_y W.
void linear_backward(float* d_x, Tensor& d_w, Tensor& d_b, const float* d_y, const float* x, const Tensor& w,
                     int64_t T, bool accumulate_dx) {
  matmul_backward(d_x, d_w.data<float>(), opt(d_b), d_y, x, w.data<float>(), T, w.dim(0), w.dim(1), accumulate_dx);
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
  linears_of(a.xn1, T, {{a.q_raw, l.wq, l.bq}, {a.k_raw, l.wk, l.bk}, {a.v, l.wv, l.bv}});
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
  linear(a.proj, a.att, l.wo, l.bo, T);
  residual_add(a.x_mid, a.x_in, a.proj, T * E);

  // --- MLP block: x_out = x_mid + down(silu(gate(xn2)) * up(xn2)) ---
  rmsnorm_forward(a.xn2, a.x_mid, l.ffn_norm.data<float>(), T, E, eps);
  if (c.is_moe()) {
    moe_forward(c, l, a.xn2, a.proj, T);  // (inference only: training refuses experts)
  } else {
    linears_of(a.xn2, T, {{a.gate, l.w_gate, l.b_gate}, {a.up, l.w_up, l.b_up}});
    swiglu_forward(a.h, a.gate, a.up, T * F);
    linear(a.proj, a.h, l.w_down, l.b_down, T);
  }
  residual_add(a.x_out, a.x_mid, a.proj, T * E);
}

void layer_backward(const ModelConfig& c, const LayerWeights& l, LayerWeights& g, const LayerBuffers& a,
                    const LayerGradScratch& s, float* d_resid, int64_t T, const int32_t* neg_pos, const float* inv_freq,
                    const AttendBackwardFn& attend_backward) {
  const int64_t E = c.n_embd, HD = c.head_dim, F = c.n_ff;
  const float eps = float(c.norm_eps);

  // MLP block, in reverse: the residual passes d_resid through unchanged and adds the branch's.
  linear_backward(s.d_h, g.w_down, g.b_down, d_resid, a.h, l.w_down, T, false);
  swiglu_backward(s.d_gate, s.d_up, s.d_h, a.gate, a.up, T * F);
  linear_backward(s.d_xn, g.w_gate, g.b_gate, s.d_gate, a.xn2, l.w_gate, T, false);
  linear_backward(s.d_xn, g.w_up, g.b_up, s.d_up, a.xn2, l.w_up, T, true);
  rmsnorm_backward(s.d_xn, g.ffn_norm.data<float>(), s.d_xn, a.x_mid, l.ffn_norm.data<float>(), T, E, eps);
  add_inplace(d_resid, s.d_xn, T * E);

  // Attention block, in reverse.
  linear_backward(s.d_att, g.wo, g.bo, d_resid, a.att, l.wo, T, false);
  attend_backward(s.d_q, s.d_k, s.d_v, s.d_att);
  rope_forward(s.d_q, T, c.n_head, HD, neg_pos, inv_freq);  // a rotation's transpose: the opposite angle
  rope_forward(s.d_k, T, c.n_kv_head, HD, neg_pos, inv_freq);
  if (c.qk_norm) {
    rmsnorm_backward(s.d_q, g.q_norm.data<float>(), s.d_q, a.q_raw, l.q_norm.data<float>(), T * c.n_head, HD, eps);
    rmsnorm_backward(s.d_k, g.k_norm.data<float>(), s.d_k, a.k_raw, l.k_norm.data<float>(), T * c.n_kv_head, HD, eps);
  }
  linear_backward(s.d_xn, g.wq, g.bq, s.d_q, a.xn1, l.wq, T, false);
  linear_backward(s.d_xn, g.wk, g.bk, s.d_k, a.xn1, l.wk, T, true);
  linear_backward(s.d_xn, g.wv, g.bv, s.d_v, a.xn1, l.wv, T, true);
  rmsnorm_backward(s.d_xn, g.attn_norm.data<float>(), s.d_xn, a.x_in, l.attn_norm.data<float>(), T, E, eps);
  add_inplace(d_resid, s.d_xn, T * E);
}

}  // namespace distill
