#include "train/training_pass.h"

#include "core/data_parallel.h"
#include "core/error.h"
#include "core/threads.h"
#include "kernels/kernels.h"
#include "model/decoder.h"
#include "model/layer_graph.h"

#include <array>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <mutex>
#include <utility>

namespace distill {

namespace {

float* f(Tensor& t) { return t.data<float>(); }
float* opt(Tensor& t) { return t.defined() ? t.data<float>() : nullptr; }  // a frozen weight's: none
const float* f(const Tensor& t) { return t.data<float>(); }
Tensor buffer(int64_t rows, int64_t cols) { return Tensor::zeros(DType::F32, {rows, cols}); }

// Rows of the head's logits held at once: about 16 M floats (64 MiB) for logits and as much for
// their gradient, at least 64 rows (the head's products stay efficient), at most all of them.
int64_t head_chunk_rows(int64_t n_vocab, int64_t n_tokens) {
  return std::min(n_tokens, std::max<int64_t>(64, logit_part_rows(n_vocab)));
}

}  // namespace

TrainingPass::TrainingPass(const Model& model, int64_t n_seq, int64_t seq_len, bool recompute_layers, int64_t head_rows,
                           bool bf16_matmuls)
    : model_(model), n_seq_(n_seq), seq_len_(seq_len), bf16_matmuls_(bf16_matmuls), recompute_(recompute_layers) {
  const ModelConfig& c = model.config;
  if (c.is_moe())
    fail("training a mixture-of-experts model ({}) is not supported: its experts run for inference (run, serve, eval, "
         "label --teacher)", c.model_type);
  if (bf16_matmuls && !gemm_bf16_native() && DataParallel::leader()) {
    static std::once_flag told;  // (GRPO builds two passes)
    std::call_once(told, [] {
      std::fprintf(stderr, "note: this CPU (or DISTILL_ISA) has no AVX512_BF16: bf16 products are computed from rounded "
                           "f32 copies — the same values, but slower than --precision f32\n");
    });
  }
  const int64_t N = n_seq * seq_len, E = c.n_embd, QD = c.q_dim(), KVD = c.kv_dim(), F = c.n_ff;
  ids_.resize(size_t(N));
  pos_.resize(size_t(N));
  neg_pos_.resize(size_t(N));
  for (int64_t i = 0; i < N; ++i) pos_[size_t(i)] = int32_t(i % seq_len), neg_pos_[size_t(i)] = -pos_[size_t(i)];
  // the linears' kept inputs: bf16 under bf16 products (see the header), with an f32 staging set
  const bool bf16_kept = bf16_matmuls && !recompute_;
  auto linear_input = [&](int64_t cols) { return Tensor::zeros(bf16_kept ? DType::BF16 : DType::F32, {N, cols}); };
  layers_.resize(size_t(c.n_layer));
  for (int64_t il = 0; il < c.n_layer; ++il) {
    layers_[size_t(il)].x_in = buffer(N, E);
    if (recompute_ && il > 0) continue;  // one set of the rest, shared (work_)
    LayerActivations& a = recompute_ ? work_ : layers_[size_t(il)];
    a.xn1 = linear_input(E);
    if (c.qk_norm) a.q_raw = buffer(N, QD), a.k_raw = buffer(N, KVD);
    a.q = buffer(N, QD), a.k = buffer(N, KVD), a.v = buffer(N, KVD);
    a.lse = Tensor::zeros(DType::F32, {n_seq, c.n_head, seq_len});
    a.att = linear_input(QD), a.x_mid = buffer(N, E), a.xn2 = linear_input(E);
    a.gate = buffer(N, F), a.up = buffer(N, F), a.h = linear_input(F);
  }
  if (bf16_kept) staging_.xn1 = buffer(N, E), staging_.att = buffer(N, QD), staging_.xn2 = buffer(N, E), staging_.h = buffer(N, F);
  x_final_ = buffer(N, E), xn_final_ = buffer(N, E);
  head_rows_ = head_rows > 0 ? std::min(head_rows, N) : head_chunk_rows(c.n_vocab, N);
  chunk_logits_ = buffer(head_rows_, c.n_vocab), chunk_d_logits_ = buffer(head_rows_, c.n_vocab);
  d_resid_ = buffer(N, E), d_xn_ = buffer(N, E), proj_ = buffer(N, E);
  d_q_ = buffer(N, QD), d_k_ = buffer(N, KVD), d_v_ = buffer(N, KVD), d_att_ = buffer(N, QD);
  d_gate_ = buffer(N, F), d_up_ = buffer(N, F), d_h_ = buffer(N, F);
  attn_scratch_ = Tensor::zeros(DType::F32, {int64_t(attention_train_scratch_floats(attention_shape()))});
}

// A layer's kept linear inputs beside their f32 staging, as (kept, staging) pairs.
std::array<std::pair<Tensor*, Tensor*>, 4> TrainingPass::linear_inputs(LayerActivations& kept, LayerActivations& staging) {
  return {{{&kept.xn1, &staging.xn1}, {&kept.att, &staging.att}, {&kept.xn2, &staging.xn2}, {&kept.h, &staging.h}}};
}

size_t TrainingPass::activation_bytes() const {
  size_t n = x_final_.nbytes() * 2 + chunk_logits_.nbytes() * 2 + (logits_.defined() ? logits_.nbytes() : 0);
  std::vector<const LayerActivations*> sets;
  for (const LayerActivations& a : layers_) sets.push_back(&a);
  sets.push_back(&work_);
  sets.push_back(&staging_);
  for (const LayerActivations* a : sets)
    for (const Tensor* t : {&a->x_in, &a->xn1, &a->q_raw, &a->k_raw, &a->q, &a->k, &a->v, &a->lse, &a->att, &a->x_mid,
                            &a->xn2, &a->gate, &a->up, &a->h})
      n += t->defined() ? t->nbytes() : 0;
  return n;
}

LayerBuffers TrainingPass::buffers(int64_t il) {
  LayerActivations& k = kept(il);
  LayerActivations& a = bf16_kept() ? staging_ : k;  // (xn1, att, xn2, h only)
  const bool qk = model_.config.qk_norm;
  // (a recomputed layer writes its output again where it was: the same values)
  float* x_out = il + 1 < model_.config.n_layer ? f(layers_[size_t(il + 1)].x_in) : f(x_final_);
  return LayerBuffers{f(layers_[size_t(il)].x_in), f(a.xn1), qk ? f(k.q_raw) : f(k.q), qk ? f(k.k_raw) : f(k.k), f(k.q), f(k.k), f(k.v),
                      f(a.att), f(k.x_mid), f(a.xn2), f(k.gate), f(k.up), f(a.h), x_out, f(proj_)};
}

TrainAttentionShape TrainingPass::attention_shape() const {
  const ModelConfig& c = model_.config;
  TrainAttentionShape as{n_seq_, seq_len_, c.n_head, c.n_kv_head, c.head_dim, c.attention_scale()};
  as.window = c.sliding_window;  // the same mask the decoder's cache attention applies
  return as;
}

void TrainingPass::forward_trunk(const int32_t* ids) {
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
}

// logits[n, V] of rows r0.. r0+n from the final norm's output
void TrainingPass::head_forward(float* logits, int64_t r0, int64_t n) const {
  head_logits(model_, xn_final_.data<float>() + r0 * model_.config.n_embd, n, logits);
}

// The head's backward for rows r0..r0+n: their d_xn (written), and the head's gradient (added,
// when trained; a tied head accumulates into the embedding's gradient: the same view)
void TrainingPass::head_backward(const float* d_logits, int64_t r0, int64_t n, ModelWeights& g) {
  const ModelConfig& c = model_.config;
  const Tensor& head = model_.weights.lm_head;
  matmul_backward(f(d_xn_) + r0 * c.n_embd, opt(g.lm_head), nullptr, d_logits, f(xn_final_) + r0 * c.n_embd, head.raw(),
                  head.dtype(), n, c.n_vocab, c.n_embd, false);
}

const float* TrainingPass::forward(const int32_t* ids) {
  const Bf16MatmulScope precision(bf16_matmuls_);
  const int64_t N = n_tokens(), V = model_.config.n_vocab;
  forward_trunk(ids);
  if (!logits_.defined()) logits_ = buffer(N, V);  // only callers that want every row's logits pay for them
  head_forward(f(logits_), 0, N);
  return f(logits_);
}

void TrainingPass::backward(const float* d_logits, ModelWeights& g) {
  const Bf16MatmulScope precision(bf16_matmuls_);
  const int64_t N = n_tokens(), V = model_.config.n_vocab;
  for (int64_t r0 = 0; r0 < N; r0 += head_rows_) head_backward(d_logits + r0 * V, r0, std::min(head_rows_, N - r0), g);
  backward_trunk(g);
}

void TrainingPass::forward_backward(const int32_t* ids, const HeadLossFn& loss, ModelWeights& g) {
  const Bf16MatmulScope precision(bf16_matmuls_);
  const int64_t N = n_tokens(), V = model_.config.n_vocab;
  forward_trunk(ids);
  for (int64_t r0 = 0; r0 < N; r0 += head_rows_) {
    const int64_t n = std::min(head_rows_, N - r0);
    head_forward(f(chunk_logits_), r0, n);
    std::memset(chunk_d_logits_.raw(), 0, size_t(n * V) * sizeof(float));
    loss(r0, n, f(chunk_logits_), f(chunk_d_logits_));
    head_backward(f(chunk_d_logits_), r0, n, g);
  }
  backward_trunk(g);
}

void TrainingPass::forward_layer(int64_t il) {
  const TrainAttentionShape as = attention_shape();
  float* lse = f(kept(il).lse);
  layer_forward(model_.config, model_.weights.layers[size_t(il)], buffers(il), n_tokens(), pos_.data(), model_.inv_freq.data(),
                [&](float* att, const float* q, const float* k, const float* v) {
                  attention_train_forward(att, lse, q, k, v, as, f(attn_scratch_));  // keeps lse for the backward
                });
  if (bf16_kept())
    for (auto [kept_t, staged] : linear_inputs(kept(il), staging_))
      convert_from_f32(kept_t->raw(), DType::BF16, f(*staged), size_t(staged->numel()));
}

void TrainingPass::backward_trunk(ModelWeights& g) {
  const ModelConfig& c = model_.config;
  const ModelWeights& w = model_.weights;
  const int64_t N = n_tokens(), E = c.n_embd;
  const TrainAttentionShape as = attention_shape();
  float* d_resid = f(d_resid_);  // d loss / d residual stream, carried down through the layers
  float* d_xn = f(d_xn_);        // (the head's backward left d loss / d xn_final here)

  // the final norm; then the layers. The gradients `g` defines: all under full training, none of
  // the frozen base under LoRA
  rmsnorm_backward(d_resid, opt(g.out_norm), d_xn, f(x_final_), f(w.out_norm), N, E, float(c.norm_eps));

  const LayerGradScratch scratch{d_xn, f(d_q_), f(d_k_), f(d_v_), f(d_att_), f(d_gate_), f(d_up_), f(d_h_)};
  for (int64_t il = c.n_layer - 1; il >= 0; --il) {
    if (recompute_) forward_layer(il);  // this layer's activations again, from its kept input
    LayerActivations& a = kept(il);
    if (bf16_kept())  // the layer's linear inputs as its products read them (bf16 values, exact in f32)
      for (auto [kept_t, staged] : linear_inputs(a, staging_))
        convert_to_f32(f(*staged), kept_t->raw(), DType::BF16, size_t(staged->numel()));
    layer_backward(c, w.layers[size_t(il)], g.layers[size_t(il)], buffers(il), scratch, d_resid, N, neg_pos_.data(),
                   model_.inv_freq.data(), [&](float* d_q, float* d_k, float* d_v, const float* d_att) {
                     attention_backward(d_q, d_k, d_v, d_att, f(a.lse), f(a.q), f(a.k), f(a.v), as, f(attn_scratch_));
                   });
    if (layer_done_) layer_done_(il);
  }
  if (g.tok_embd.defined()) embedding_backward(f(g.tok_embd), d_resid, ids_.data(), N, E);
}

}  // namespace distill
