#include "train/training_pass.h"

#include "core/error.h"
#include "core/threads.h"
#include "kernels/kernels.h"

#include <cmath>
#include <cstring>

namespace distill {

namespace {

float* f(Tensor& t) { return t.data<float>(); }
const float* f(const Tensor& t) { return t.data<float>(); }
const float* opt(const Tensor& t) { return t.defined() ? t.data<float>() : nullptr; }
float* opt(Tensor& t) { return t.defined() ? t.data<float>() : nullptr; }

void linear(float* y, const float* x, const Tensor& w, const Tensor& b, int64_t rows) {
  matmul_forward(y, x, w.raw(), DType::F32, opt(b), rows, w.dim(0), w.dim(1));
}

// Backward of y = x W^T + b for one linear layer: d_w (+ d_b) accumulate; d_x = or += d_y W.
void linear_backward(float* d_x, Tensor& d_w, Tensor& d_b, const float* d_y, const float* x, const Tensor& w,
                     int64_t rows, bool accumulate_dx) {
  matmul_backward(d_x, f(d_w), opt(d_b), d_y, x, f(w), rows, w.dim(0), w.dim(1), accumulate_dx);
}

Tensor buffer(int64_t rows, int64_t cols) { return Tensor::zeros(DType::F32, {rows, cols}); }

}  // namespace

TrainingPass::TrainingPass(const Model& model, int64_t n_seq, int64_t seq_len)
    : model_(model), n_seq_(n_seq), seq_len_(seq_len) {
  const ModelConfig& c = model.config;
  ModelWeights handles = model.weights;  // list_params wants mutable views; these are copies
  for (const ParamRef& p : list_params(c, handles))
    DISTILL_ASSERT_MSG(p.tensor->dtype() == DType::F32, "training needs f32 weights ({} is {})", p.name,
                       dtype_name(p.tensor->dtype()));
  const int64_t N = n_seq * seq_len, E = c.n_embd, QD = c.q_dim(), KVD = c.kv_dim(), F = c.n_ff;
  ids_.resize(size_t(N));
  pos_.resize(size_t(N));
  for (int64_t i = 0; i < N; ++i) pos_[size_t(i)] = int32_t(i % seq_len);
  layers_.resize(size_t(c.n_layer));
  for (LayerActivations& a : layers_) {
    a.x_in = buffer(N, E), a.xn1 = buffer(N, E);
    if (c.qk_norm) a.q_raw = buffer(N, QD), a.k_raw = buffer(N, KVD);
    a.q = buffer(N, QD), a.k = buffer(N, KVD), a.v = buffer(N, KVD);
    a.probs = Tensor::zeros(DType::F32, {n_seq, c.n_head, seq_len, seq_len});
    a.att = buffer(N, QD), a.x_mid = buffer(N, E), a.xn2 = buffer(N, E);
    a.gate = buffer(N, F), a.up = buffer(N, F), a.h = buffer(N, F);
  }
  x_final_ = buffer(N, E), xn_final_ = buffer(N, E);
  logits_ = buffer(N, c.n_vocab), d_logits_ = buffer(N, c.n_vocab);
  d_resid_ = buffer(N, E), d_xn_ = buffer(N, E);
  d_q_ = buffer(N, QD), d_k_ = buffer(N, KVD), d_v_ = buffer(N, KVD), d_att_ = buffer(N, QD);
  d_gate_ = buffer(N, F), d_up_ = buffer(N, F), d_h_ = buffer(N, F);
  attn_scratch_ = Tensor::zeros(DType::F32, {int64_t(num_threads()), seq_len, seq_len});
}

size_t TrainingPass::activation_bytes() const {
  size_t n = x_final_.nbytes() * 2 + logits_.nbytes() * 2;
  for (const LayerActivations& a : layers_)
    for (const Tensor* t : {&a.x_in, &a.xn1, &a.q_raw, &a.k_raw, &a.q, &a.k, &a.v, &a.probs, &a.att, &a.x_mid,
                            &a.xn2, &a.gate, &a.up, &a.h})
      n += t->defined() ? t->nbytes() : 0;
  return n;
}

const float* TrainingPass::forward(const int32_t* ids) {
  const ModelConfig& c = model_.config;
  const ModelWeights& w = model_.weights;
  const int64_t N = n_tokens(), E = c.n_embd, HD = c.head_dim, F = c.n_ff;
  const float eps = float(c.norm_eps);
  for (int64_t i = 0; i < N; ++i) {
    if (ids[i] < 0 || ids[i] >= c.n_vocab) fail("token {} at index {} is outside the vocabulary [0, {})", ids[i], i, c.n_vocab);
    ids_[size_t(i)] = ids[i];
  }
  const TrainAttentionShape as{n_seq_, seq_len_, c.n_head, c.n_kv_head, HD, 1.0f / std::sqrt(float(HD))};

  embedding_forward(f(layers_[0].x_in), ids_.data(), N, w.tok_embd.raw(), DType::F32, E);
  for (int64_t il = 0; il < c.n_layer; ++il) {
    LayerActivations& a = layers_[size_t(il)];
    const LayerWeights& l = w.layers[size_t(il)];
    // attention block
    rmsnorm_forward(f(a.xn1), f(a.x_in), f(l.attn_norm), N, E, eps);
    linear(c.qk_norm ? f(a.q_raw) : f(a.q), f(a.xn1), l.wq, l.bq, N);
    linear(c.qk_norm ? f(a.k_raw) : f(a.k), f(a.xn1), l.wk, l.bk, N);
    linear(f(a.v), f(a.xn1), l.wv, l.bv, N);
    if (c.qk_norm) {
      rmsnorm_forward(f(a.q), f(a.q_raw), f(l.q_norm), N * c.n_head, HD, eps);
      rmsnorm_forward(f(a.k), f(a.k_raw), f(l.k_norm), N * c.n_kv_head, HD, eps);
    }
    rope_forward(f(a.q), N, c.n_head, HD, pos_.data(), model_.inv_freq.data());
    rope_forward(f(a.k), N, c.n_kv_head, HD, pos_.data(), model_.inv_freq.data());
    attention_train_forward(f(a.att), f(a.probs), f(a.q), f(a.k), f(a.v), as);
    linear(f(a.x_mid), f(a.att), l.wo, l.bo, N);
    add_inplace(f(a.x_mid), f(a.x_in), N * E);
    // MLP block; its output is the next layer's input
    float* x_out = il + 1 < c.n_layer ? f(layers_[size_t(il + 1)].x_in) : f(x_final_);
    rmsnorm_forward(f(a.xn2), f(a.x_mid), f(l.ffn_norm), N, E, eps);
    linear(f(a.gate), f(a.xn2), l.w_gate, l.b_gate, N);
    linear(f(a.up), f(a.xn2), l.w_up, l.b_up, N);
    swiglu_forward(f(a.h), f(a.gate), f(a.up), N * F);
    linear(x_out, f(a.h), l.w_down, l.b_down, N);
    add_inplace(x_out, f(a.x_mid), N * E);
  }
  rmsnorm_forward(f(xn_final_), f(x_final_), f(w.out_norm), N, E, eps);
  linear(f(logits_), f(xn_final_), w.lm_head, Tensor(), N);
  return f(logits_);
}

void TrainingPass::backward(const float* d_logits, ModelWeights& g) {
  const ModelConfig& c = model_.config;
  const ModelWeights& w = model_.weights;
  const int64_t N = n_tokens(), E = c.n_embd, HD = c.head_dim, F = c.n_ff;
  const float eps = float(c.norm_eps);
  const TrainAttentionShape as{n_seq_, seq_len_, c.n_head, c.n_kv_head, HD, 1.0f / std::sqrt(float(HD))};
  float* d_resid = f(d_resid_);  // d loss / d residual stream, carried down through the layers
  float* d_xn = f(d_xn_);

  // head and final norm (a tied head accumulates into the embedding's gradient: same view)
  Tensor no_bias;
  linear_backward(d_xn, g.lm_head, no_bias, d_logits, f(xn_final_), w.lm_head, N, false);
  rmsnorm_backward(d_resid, f(g.out_norm), d_xn, f(x_final_), f(w.out_norm), N, E, eps);

  for (int64_t il = c.n_layer - 1; il >= 0; --il) {
    LayerActivations& a = layers_[size_t(il)];
    const LayerWeights& l = w.layers[size_t(il)];
    LayerWeights& gl = g.layers[size_t(il)];

    // MLP block: x_out = x_mid + down(silu(gate(xn2)) * up(xn2)), xn2 = norm(x_mid)
    linear_backward(f(d_h_), gl.w_down, gl.b_down, d_resid, f(a.h), l.w_down, N, false);
    swiglu_backward(f(d_gate_), f(d_up_), f(d_h_), f(a.gate), f(a.up), N * F);
    linear_backward(d_xn, gl.w_gate, gl.b_gate, f(d_gate_), f(a.xn2), l.w_gate, N, false);
    linear_backward(d_xn, gl.w_up, gl.b_up, f(d_up_), f(a.xn2), l.w_up, N, true);
    rmsnorm_backward(d_xn, f(gl.ffn_norm), d_xn, f(a.x_mid), f(l.ffn_norm), N, E, eps);
    add_inplace(d_resid, d_xn, N * E);  // the residual path adds its own gradient

    // attention block: x_mid = x_in + o(attention(rope(q), rope(k), v)), q/k/v from xn1 = norm(x_in)
    linear_backward(f(d_att_), gl.wo, gl.bo, d_resid, f(a.att), l.wo, N, false);
    attention_backward(f(d_q_), f(d_k_), f(d_v_), f(d_att_), f(a.probs), f(a.q), f(a.k), f(a.v), as,
                       f(attn_scratch_));
    rope_backward(f(d_q_), N, c.n_head, HD, pos_.data(), model_.inv_freq.data());
    rope_backward(f(d_k_), N, c.n_kv_head, HD, pos_.data(), model_.inv_freq.data());
    if (c.qk_norm) {
      rmsnorm_backward(f(d_q_), f(gl.q_norm), f(d_q_), f(a.q_raw), f(l.q_norm), N * c.n_head, HD, eps);
      rmsnorm_backward(f(d_k_), f(gl.k_norm), f(d_k_), f(a.k_raw), f(l.k_norm), N * c.n_kv_head, HD, eps);
    }
    linear_backward(d_xn, gl.wq, gl.bq, f(d_q_), f(a.xn1), l.wq, N, false);
    linear_backward(d_xn, gl.wk, gl.bk, f(d_k_), f(a.xn1), l.wk, N, true);
    linear_backward(d_xn, gl.wv, gl.bv, f(d_v_), f(a.xn1), l.wv, N, true);
    rmsnorm_backward(d_xn, f(gl.attn_norm), d_xn, f(a.x_in), f(l.attn_norm), N, E, eps);
    add_inplace(d_resid, d_xn, N * E);
  }
  embedding_backward(f(g.tok_embd), d_resid, ids_.data(), N, E);
}

}  // namespace distill
