// The decoder forward pass shared by every command (run, serve, label, train, rl) and every
// architecture. A Batch is a list of tokens, each tagged with its sequence slot in the KV cache
// and its position; sequences of different lengths, a prompt prefill and single-token decode
// steps of many sequences all go through the same call.
#pragma once

#include "model/kv_cache.h"
#include "model/model.h"

#include <algorithm>
#include <cstdint>
#include <vector>

namespace distill {

struct Batch {
  std::vector<int32_t> token;   // [n]
  std::vector<int32_t> pos;     // [n] position within its sequence
  std::vector<int32_t> seq;     // [n] KV cache slot
  std::vector<uint8_t> logits;  // [n] 1 = return this token's logits

  void add(int32_t token_id, int32_t position, int32_t slot, bool want_logits) {
    token.push_back(token_id);
    pos.push_back(position);
    seq.push_back(slot);
    logits.push_back(want_logits ? 1 : 0);
  }
  void clear() { token.clear(), pos.clear(), seq.clear(), logits.clear(); }
  int64_t size() const { return int64_t(token.size()); }
};

// Rows of logits over an n_vocab vocabulary that fill about 64 MiB (at least one): the part a
// caller turns hidden states into logits at a time (Decoder::head_rows).
inline int64_t logit_part_rows(int64_t n_vocab) { return n_vocab > 0 ? std::max<int64_t>(1, (int64_t(16) << 20) / n_vocab) : 1; }

// For memory estimates: the decoder's buffers for a batch of `rows` tokens (and their hidden
// states copied out); and what a full forward of `rows` tokens holds (forward_full_hidden: those
// buffers and an f32 KV cache).
size_t forward_buffer_bytes(const ModelConfig& c, int64_t rows);
size_t full_forward_bytes(const ModelConfig& c, int64_t rows);

// The model's head over n final hidden states (after the output norm): logits [n, n_vocab]. The
// decoder's, the training pass's and LogitParts' one head.
void head_logits(const Model& model, const float* hidden, int64_t n, float* logits);

class Decoder {
public:
  explicit Decoder(const Model& model) : model_(model) {}

  // Runs the batch: writes each token's K/V into its slot at its position, attends causally to
  // positions 0..pos of that slot (so a sequence's earlier tokens must already be in the cache or
  // earlier in this batch), and returns logits f32 [n_wanted, n_vocab] for the tokens marked in
  // batch.logits, in batch order. The pointer is valid until the next call. Buffers grow to the
  // largest batch seen and are reused: steady-state decoding allocates nothing.
  // Throws distill::Error for an out-of-range token id, position or slot. A cache with
  // sliding-window layers takes at most cache.max_run() positions per slot at once: a longer
  // batch runs in pieces (the same logits; each piece sees what the earlier ones stored).
  const float* forward(const Batch& batch, KVCache& cache);

  // Convenience: the full causal forward of `n_seq` sequences of `seq_len` tokens each
  // (ids [n_seq, seq_len]) at positions 0..seq_len-1 → logits [n_seq, seq_len, n_vocab].
  Tensor forward_full(const int32_t* ids, int64_t n_seq, int64_t seq_len);
  // The same forward without the head: the final hidden states after the output norm
  // [n_seq * seq_len, n_embd]. head_rows turns n of them into logits [n, n_vocab]: a caller that
  // needs a large vocabulary's logits for many rows (a teacher over a training batch) takes them
  // a few rows at a time instead of holding [rows, vocabulary] at once.
  Tensor forward_full_hidden(const int32_t* ids, int64_t n_seq, int64_t seq_len);
  void head_rows(const float* hidden, int64_t n, float* logits) const;

  const Model& model() const { return model_; }

private:
  void reserve(int64_t n_tokens, int64_t n_out);
  void validate(const Batch& batch, const KVCache& cache) const;
  // One piece: every slot's positions in it fit what its windowed layers keep.
  const float* forward_piece(const Batch& batch, KVCache& cache);
  const float* forward_all_rows(const int32_t* ids, int64_t n_seq, int64_t seq_len);  // forward_full's run

  const Model& model_;
  int64_t capacity_ = 0, out_capacity_ = 0;
  // Activations, f32, sized for `capacity_` tokens:
  Tensor x_;       // [T, n_embd]   residual stream
  Tensor xn_;      // [T, n_embd]   normalised input of a sub-layer
  Tensor q_;       // [T, q_dim]
  Tensor k_;       // [T, kv_dim]
  Tensor v_;       // [T, kv_dim]
  Tensor att_;     // [T, q_dim]    attention output before o_proj
  Tensor proj_;    // [T, n_embd]   sub-layer output before the residual add
  Tensor gate_;    // [T, n_ff]
  Tensor up_;      // [T, n_ff]
  Tensor out_x_;   // [n_out, n_embd] final hidden states of the tokens whose logits are wanted
  Tensor logits_;  // [n_out, n_vocab] (not allocated while hidden_only_)
  bool hidden_only_ = false;  // forward returns out_x_ rows instead of logits (forward_full_hidden)
  std::vector<int32_t> out_rows_;
  Batch piece_;                  // a piece of a batch too long for a windowed cache
  std::vector<float> all_logits_;  // the pieces' logits, in batch order
};

// A model's logits over a batch of rows, a part of rows at a time: run() does the forward once
// without the head (forward_full_hidden); rows() makes the logits of the rows asked for, never
// [rows, vocabulary] whole (a teacher or a reference model beside training, eval).
class LogitParts {
public:
  explicit LogitParts(const Model& model) : dec_(model) {}
  void run(const int32_t* ids, int64_t n_seq, int64_t seq_len) { hidden_ = dec_.forward_full_hidden(ids, n_seq, seq_len); }
  // Logits [n, n_vocab] of rows r0..r0+n of the last run; valid until the next call.
  const float* rows(int64_t r0, int64_t n);
  const Model& model() const { return dec_.model(); }

private:
  Decoder dec_;
  Tensor hidden_;           // [rows, n_embd] of the last run
  std::vector<float> buf_;  // the last rows' logits
};

}  // namespace distill
