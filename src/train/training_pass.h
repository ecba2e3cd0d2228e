// TrainingPass: the decoder's forward pass with every activation the backward needs kept in
// preallocated buffers, and the backward pass. The layer itself is model/layer_graph's, the same
// code the inference Decoder runs (forward and backward side by side there); this class owns the
// buffers, the embedding and the head. Built once for a micro-batch shape (n_seq × seq_len);
// steps allocate nothing. Attention is the whole-sequence variant that keeps one log-sum-exp per
// row (the probabilities are recomputed), with the model's sliding window.
//
// With `recompute_layers` (activation checkpointing) only each layer's input is kept; the
// backward runs a layer's forward again from it, into one shared set of buffers, just before
// that layer's backward: one more forward per step for activations of one layer instead of all.
// The recomputation runs the same kernels on the same input, so the gradients are the same.
#pragma once

#include "kernels/kernels.h"
#include "model/layer_graph.h"
#include "model/model.h"

#include <cstdint>
#include <functional>
#include <array>
#include <utility>
#include <vector>

namespace distill {

class TrainingPass {
public:
  // Weights of any dtype the kernels read; those trained must be f32 (ParamArena::adopt), a frozen
  // base (LoRA) stays as loaded, quantized included.
  // `head_rows`: rows of logits forward_backward holds at once (0: about 64 MiB of them).
  // `bf16_matmuls` (--precision bf16): every product of the passes (the linears, the head)
  // multiplies operands rounded to bf16 and sums in f32 (Bf16MatmulScope); weights stay the f32
  // masters. The linears' inputs that the backward keeps (xn1, att, xn2, h) are then held as bf16:
  // their products read them rounded anyway, so half the bytes change no value (without
  // activation checkpointing, which keeps one shared f32 set).
  TrainingPass(const Model& model, int64_t n_seq, int64_t seq_len, bool recompute_layers = false, int64_t head_rows = 0,
               bool bf16_matmuls = false);

  // The training step: the forward of ids [n_seq, seq_len] (positions 0..seq_len-1), then the head
  // a chunk of rows at a time — its logits, `loss` filling d loss / d logits for those rows (the
  // buffer arrives zeroed), the head's backward for them — then the backward of every layer, adding
  // d loss / d weight into `grads` (views with the model's layout, e.g. ParamArena::views of a
  // gradient buffer; under LoRA only the adapters' slots are set, LoraTraining::grad_views). The
  // [N, vocabulary] logits never exist at once: at a 152k vocabulary and 2048 tokens they and their
  // gradient would be 2.5 GB.
  using HeadLossFn = std::function<void(int64_t row0, int64_t n_rows, const float* logits, float* d_logits)>;
  void forward_backward(const int32_t* ids, const HeadLossFn& loss, ModelWeights& grads);

  // The same in two calls, with every row's logits held (tests, `distill forward`): logits f32
  // [n_seq * seq_len, n_vocab], kept with every activation for backward(d_logits [same shape]).
  const float* forward(const int32_t* ids);
  void backward(const float* d_logits, ModelWeights& grads);
  // Called with each layer's index as its backward ends (its gradients final for this pass):
  // the data-parallel harness starts that layer's sum over the ranks there.
  void set_layer_done(std::function<void(int64_t layer)> fn) { layer_done_ = std::move(fn); }

  int64_t n_tokens() const { return n_seq_ * seq_len_; }
  int64_t n_seq() const { return n_seq_; }
  int64_t seq_len() const { return seq_len_; }
  size_t activation_bytes() const;

private:
  struct LayerActivations {
    Tensor x_in;    // [N, E] residual stream entering the layer
    Tensor xn1;     // [N, E] input_layernorm output
    Tensor q_raw;   // [N, QD] q before q_norm (Qwen3 only)
    Tensor k_raw;   // [N, KVD] k before k_norm (Qwen3 only)
    Tensor q, k, v; // [N, QD], [N, KVD] ×2: q and k after RoPE
    Tensor lse;     // [n_seq, H, T] log-denominators of the attention softmax (P is recomputed)
    Tensor att;     // [N, QD] attention output (o_proj input)
    Tensor x_mid;   // [N, E] residual after the attention block
    Tensor xn2;     // [N, E] post_attention_layernorm output
    Tensor gate;    // [N, F] gate_proj output (pre-activation)
    Tensor up;      // [N, F] up_proj output
    Tensor h;       // [N, F] silu(gate) * up (down_proj input)
  };

  void forward_trunk(const int32_t* ids);
  void head_forward(float* logits, int64_t r0, int64_t n) const;
  void head_backward(const float* d_logits, int64_t r0, int64_t n, ModelWeights& g);
  void backward_trunk(ModelWeights& g);
  LayerBuffers buffers(int64_t il);
  LayerActivations& kept(int64_t il) { return recompute_ ? work_ : layers_[size_t(il)]; }  // all but x_in
  void forward_layer(int64_t il);
  TrainAttentionShape attention_shape() const;

  const Model& model_;
  int64_t n_seq_, seq_len_;
  bool bf16_matmuls_;
  bool recompute_;             // activation checkpointing: layers_ hold x_in only, work_ the rest
  std::vector<int32_t> ids_;   // [N] this step's input ids
  std::vector<int32_t> pos_;   // [N] positions (0..T-1 per sequence)
  std::vector<int32_t> neg_pos_;  // [N] -pos_: RoPE's backward rotates by the opposite angle
  std::vector<LayerActivations> layers_;
  LayerActivations work_;      // with recompute_: the one layer's activations being recomputed
  // With bf16 kept linear inputs: the layer's xn1, att, xn2, h in f32 while it runs (forward: then
  // rounded into the layer's bf16 tensors; backward: widened from them).
  LayerActivations staging_;
  bool bf16_kept() const { return staging_.xn1.defined(); }
  static std::array<std::pair<Tensor*, Tensor*>, 4> linear_inputs(LayerActivations& kept, LayerActivations& staging);
  Tensor x_final_;             // [N, E] residual after the last layer
  Tensor xn_final_;            // [N, E] final norm output
  std::function<void(int64_t)> layer_done_;
  int64_t head_rows_;          // rows of logits held at once by forward_backward
  Tensor chunk_logits_, chunk_d_logits_;  // [head_rows_, V]
  Tensor logits_;              // [N, V], only once forward() is called
  // Backward scratch, shared by all layers:
  Tensor proj_;                // [N, E] sub-layer output before the residual add
  Tensor d_resid_, d_xn_, d_q_, d_k_, d_v_, d_att_, d_gate_, d_up_, d_h_;
  Tensor attn_scratch_;        // a few query blocks of scores per thread (attention_train_scratch_floats)
};

}  // namespace distill
