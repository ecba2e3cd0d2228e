#include "train/training_pass.h"

#include "core/error.h"
#include "core/threads.h"
#include "kernels/kernels.h"
#include "model/layer_graph.h"

#include <cmath>
#include <cstring>

namespace distill {

namespace {

float* f(Tensor& t) { return t.data<float>(); }
float* opt(Tensor& t) { return t.defined() ? t.data<float>() : nullptr; }  // a frozen weight's: none
const float* f(const Tensor& t) { return t.data<float>(); }
Tensor buffer(int64_t rows, int64_t cols) { return Tensor::zeros(DType::F32, {rows, cols}); }

}  // namespace

TrainingPass::TrainingPass(const Model& model, int64_t n_seq, int64_t seq_len, bool recompute_layers)
    : model_(model), n_seq_(n_seq), seq_len_(seq_len), recompute_(recompute_layers) {
  const ModelConfig& c = model.config;
  if (c.is_moe())
    fail("training a mixture-of-experts model ({}) is not supported: its experts run for inference (run, serve, eval, "
         "label --teacher)", c.model_type);
  const int64_t N = n_seq * seq_len, E = c.n_embd, QD = c.q_dim(), KVD = c.kv_dim(), F = c.n_ff;
  ids_.resize(size_t(N));
  pos_.resize(size_t(N));
  neg_pos_.resize(size_t(N));
  for (int64_t i = 0; i < N; ++i) pos_[size_t(i)] = int32_t(i % seq_len), neg_pos_[size_t(i)] = -pos_[size_t(i)];
  layers_.resize(size_t(c.n_layer));
  for (int64_t il = 0; il < c.n_layer; ++il) {
    layers_[size_t(il)].x_in = buffer(N, E);
    if (recompute_ && il > 0) continue;  // one set of the rest, shared (work_)
    LayerActivations& a = recompute_ ? work_ : layers_[size_t(il)];
    a.xn1 = buffer(N, E);
    if (c.qk_norm) a.q_raw = buffer(N, QD), a.k_raw = buffer(N, KVD);
    a.q = buffer(N, QD), a.k = buffer(N, KVD), a.v = buffer(N, KVD);
    a.lse = Tensor::zeros(DType::F32, {n_seq, c.n_head, seq_len});
    a.att = buffer(N, QD), a.x_mid = buffer(N, E), a.xn2 = buffer(N, E);
    a.gate = buffer(N, F), a.up = buffer(N, F), a.h = buffer(N, F);
  }
  x_final_ = buffer(N, E), xn_final_ = buffer(N, E);
  logits_ = buffer(N, c.n_vocab), d_logits_ = buffer(N, c.n_vocab);
  d_resid_ = buffer(N, E), d_xn_ = buffer(N, E), proj_ = buffer(N, E);
  d_q_ = buffer(N, QD), d_k_ = buffer(N, KVD), d_v_ = buffer(N, KVD), d_att_ = buffer(N, QD);
  d_gate_ = buffer(N, F), d_up_ = buffer(N, F), d_h_ = buffer(N, F);
  attn_scratch_ = Tensor::zeros(DType::F32, {int64_t(attention_train_scratch_floats(attention_shape()))});
}

size_t TrainingPass::activation_bytes() const {
  size_t n = x_final_.nbytes() * 2 + logits_.nbytes() * 2;
  std::vector<const LayerActivations*> sets;
  for (const LayerActivations& a : layers_) sets.push_back(&a);
  sets.push_back(&work_);
  for (const LayerActivations* a : sets)
    for (const Tensor* t : {&a->x_in, &a->xn1, &a->q_raw, &a->k_raw, &a->q, &a->k, &a->v, &a->lse, &a->att, &a->x_mid,
                            &a->xn2, &a->gate, &a->up, &a->h})
      n += t->defined() ? t->nbytes() : 0;
  return n;
}

LayerBuffers TrainingPass::buffers(int64_t il) {
  LayerActivations& a = kept(il);
  const bool qk = model_.config.qk_norm;
  // (a recomputed layer writes its output again where it was: the same values)
  float* x_out = il + 1 < model_.config.n_layer ? f(layers_[size_t(il + 1)].x_in) : f(x_final_);
  return LayerBuffers{f(layers_[size_t(il)].x_in), f(a.xn1), qk ? f(a.q_raw) : f(a.q), qk ? f(a.k_raw) : f(a.k), f(a.q), f(a.k), f(a.v),
                      f(a.att), f(a.x_mid), f(a.xn2), f(a.gate), f(a.up), f(a.h), x_out, f(proj_)};
}

TrainAttentionShape TrainingPass::attention_shape() const {
  const ModelConfig& c = model_.config;
  TrainAttentionShape as{n_seq_, seq_len_, c.n_head, c.n_kv_head, c.head_dim, c.attention_scale()};
  as.window = c.sliding_window;  // the same mask the decoder's cache attention applies
  return as;
}

const float* TrainingPass::forward(const int32_t* ids) {
  const ModelConfig& c = model_.config;
  const ModelWeights& w = model_.weights;
  const int64_t N = n_tokens(), E = c.n_embd;
  for (int64_t i = 0; i < N; ++i) {
    if (ids[i] < 0 || ids[i] >= c.n_vocab) fail("token {} at index {} is outside the vocabulary [0, {})", ids[i], i, c.n_vocab);
    ids_[size_t(i)] = ids[i];
  }
  embedding_forward(f(layers_[0].x_in), ids_.data(), N, w.tok_embd.raw(), w.tok_embd.dtype(), E);
  for (int64_t il = 0; il < c.n_layer; ++il) forward_layer(il);
  rmsnorm_forward(f(xn_final_), f(x_final_), f(w.out_norm), N, E, float(c.norm_eps));
  matmul_prepared(f(logits_), f(xn_final_), w.lm_head.raw(), w.lm_head.dtype(),
                  static_cast<const PreparedWeight*>(w.lm_head.prepared()), nullptr, N, c.n_vocab, E);
  return f(logits_);
}

void TrainingPass::forward_layer(int64_t il) {
  const TrainAttentionShape as = attention_shape();
  float* lse = f(kept(il).lse);
  layer_forward(model_.config, model_.weights.layers[size_t(il)], buffers(il), n_tokens(), pos_.data(), model_.inv_freq.data(),
                [&](float* att, const float* q, const float* k, const float* v) {
                  attention_train_forward(att, lse, q, k, v, as, f(attn_scratch_));  // keeps lse for the backward
                });
}

void TrainingPass::backward(const float* d_logits, ModelWeights& g) {
  const ModelConfig& c = model_.config;
  const ModelWeights& w = model_.weights;
  const int64_t N = n_tokens(), E = c.n_embd;
  const TrainAttentionShape as = attention_shape();
  float* d_resid = f(d_resid_);  // d loss / d residual stream, carried down through the layers
  float* d_xn = f(d_xn_);

  // head and final norm (a tied head accumulates into the embedding's gradient: same view); the
  // gradients `g` defines: all under full training, none of the frozen base under LoRA
  matmul_backward(d_xn, opt(g.lm_head), nullptr, d_logits, f(xn_final_), w.lm_head.raw(), w.lm_head.dtype(), N, c.n_vocab,
                  E, false);
  rmsnorm_backward(d_resid, opt(g.out_norm), d_xn, f(x_final_), f(w.out_norm), N, E, float(c.norm_eps));

  const LayerGradScratch scratch{d_xn, f(d_q_), f(d_k_), f(d_v_), f(d_att_), f(d_gate_), f(d_up_), f(d_h_)};
  for (int64_t il = c.n_layer - 1; il >= 0; --il) {
    if (recompute_) forward_layer(il);  // this layer's activations again, from its kept input
    LayerActivations& a = kept(il);
    layer_backward(c, w.layers[size_t(il)], g.layers[size_t(il)], buffers(il), scratch, d_resid, N, neg_pos_.data(),
                   model_.inv_freq.data(), [&](float* d_q, float* d_k, float* d_v, const float* d_att) {
                     attention_backward(d_q, d_k, d_v, d_att, f(a.lse), f(a.q), f(a.k), f(a.v), as, f(attn_scratch_));
                   });
  }
  if (g.tok_embd.defined()) embedding_backward(f(g.tok_embd), d_resid, ids_.data(), N, E);
}

}  // namespace distill
