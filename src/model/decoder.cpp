#include "model/decoder.h"

#include "core/error.h"
#include "kernels/kernels.h"
#include "model/layer_graph.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <cstring>

namespace distill {

void Decoder::reserve(int64_t n_tokens, int64_t n_out) {
  const ModelConfig& c = model_.config;
  if (n_tokens > capacity_) {
    capacity_ = n_tokens;
    x_ = Tensor::zeros(DType::F32, {n_tokens, c.n_embd});
    xn_ = Tensor::zeros(DType::F32, {n_tokens, c.n_embd});
    q_ = Tensor::zeros(DType::F32, {n_tokens, c.q_dim()});
    k_ = Tensor::zeros(DType::F32, {n_tokens, c.kv_dim()});
    v_ = Tensor::zeros(DType::F32, {n_tokens, c.kv_dim()});
    att_ = Tensor::zeros(DType::F32, {n_tokens, c.q_dim()});
    proj_ = Tensor::zeros(DType::F32, {n_tokens, c.n_embd});
    gate_ = Tensor::zeros(DType::F32, {n_tokens, c.n_ff});
    up_ = Tensor::zeros(DType::F32, {n_tokens, c.n_ff});
  }
  if (n_out > out_capacity_) {
    out_capacity_ = n_out;
    out_x_ = Tensor::zeros(DType::F32, {n_out, c.n_embd});
    logits_ = Tensor();
  }
  if (!hidden_only_ && !logits_.defined()) logits_ = Tensor::zeros(DType::F32, {out_capacity_, c.n_vocab});
}

void Decoder::validate(const Batch& b, const KVCache& cache) const {
  const ModelConfig& c = model_.config;
  DISTILL_ASSERT(b.pos.size() == b.token.size() && b.seq.size() == b.token.size() &&
                 b.logits.size() == b.token.size());
  DISTILL_ASSERT(int64_t(cache.k.size()) == c.n_layer);
  for (int64_t i = 0; i < b.size(); ++i) {
    if (b.token[i] < 0 || b.token[i] >= c.n_vocab)
      fail("token {} (batch index {}) is outside the vocabulary [0, {})", b.token[i], i, c.n_vocab);
    if (b.pos[i] < 0 || b.pos[i] >= cache.n_ctx)
      fail("position {} (batch index {}) is outside the context [0, {})", b.pos[i], i, cache.n_ctx);
    if (b.seq[i] < 0 || b.seq[i] >= cache.n_slots)
      fail("sequence slot {} (batch index {}) is outside [0, {})", b.seq[i], i, cache.n_slots);
  }
}

namespace {
// Batch indices where pieces start so that no slot spans more than max_run positions in a piece.
std::vector<int64_t> piece_starts(const Batch& b, const KVCache& cache) {
  std::vector<int64_t> starts{0};
  const int64_t max_run = cache.max_run();
  if (max_run >= cache.n_ctx) return starts;
  std::vector<int32_t> lo(size_t(cache.n_slots), INT32_MAX), hi(size_t(cache.n_slots), -1);
  for (int64_t t = 0; t < b.size(); ++t) {
    const size_t s = size_t(b.seq[t]);
    if (std::max(hi[s], b.pos[t]) - std::min(lo[s], b.pos[t]) + 1 > max_run) {
      starts.push_back(t);
      std::fill(lo.begin(), lo.end(), INT32_MAX), std::fill(hi.begin(), hi.end(), -1);
    }
    lo[s] = std::min(lo[s], b.pos[t]), hi[s] = std::max(hi[s], b.pos[t]);
  }
  return starts;
}

// Readies the windowed layers of every slot in the batch for its positions.
void make_room(const Batch& b, KVCache& cache) {
  if (cache.max_run() >= cache.n_ctx) return;  // no layer keeps less than the context
  std::vector<int32_t> lo(size_t(cache.n_slots), INT32_MAX), hi(size_t(cache.n_slots), -1);
  for (int64_t t = 0; t < b.size(); ++t) {
    const size_t s = size_t(b.seq[t]);
    lo[s] = std::min(lo[s], b.pos[t]), hi[s] = std::max(hi[s], b.pos[t]);
  }
  for (int64_t s = 0; s < cache.n_slots; ++s)
    if (hi[size_t(s)] >= 0) cache.make_room(s, lo[size_t(s)], hi[size_t(s)]);
}
}  // namespace

const float* Decoder::forward(const Batch& b, KVCache& cache) {
  validate(b, cache);
  const std::vector<int64_t> starts = piece_starts(b, cache);
  if (starts.size() == 1) return forward_piece(b, cache);
  all_logits_.clear();
  for (size_t i = 0; i < starts.size(); ++i) {
    const int64_t end = i + 1 < starts.size() ? starts[i + 1] : b.size();
    piece_.clear();
    for (int64_t t = starts[i]; t < end; ++t) piece_.add(b.token[t], b.pos[t], b.seq[t], b.logits[t] != 0);
    const float* logits = forward_piece(piece_, cache);
    const int64_t width = hidden_only_ ? model_.config.n_embd : model_.config.n_vocab;  // a row of what forward returns
    all_logits_.insert(all_logits_.end(), logits, logits + out_rows_.size() * size_t(width));
  }
  return all_logits_.data();
}

const float* Decoder::forward_piece(const Batch& b, KVCache& cache) {
  make_room(b, cache);
  const ModelConfig& c = model_.config;
  const ModelWeights& w = model_.weights;
  const int64_t T = b.size();
  out_rows_.clear();
  for (int64_t i = 0; i < T; ++i)
    if (b.logits[i]) out_rows_.push_back(int32_t(i));
  const int64_t n_out = int64_t(out_rows_.size());
  reserve(T, n_out);
  if (T == 0) return hidden_only_ ? out_x_.data<float>() : logits_.data<float>();

  const int64_t E = c.n_embd, HD = c.head_dim, KVD = c.kv_dim();
  float* x = x_.data<float>();
  float* xn = xn_.data<float>();
  float* q = q_.data<float>();
  float* k = k_.data<float>();
  float* gate = gate_.data<float>();
  // Inference keeps nothing for a backward: one residual buffer, one normalised input, q/k
  // normalised in place, swiglu written over gate.
  const LayerBuffers buf{x, xn, q, k, q, k, v_.data<float>(), att_.data<float>(), x, xn, gate, up_.data<float>(),
                         gate, x, proj_.data<float>()};

  AttentionShape shape;
  shape.n_tokens = T;
  shape.n_head = c.n_head;
  shape.n_kv_head = c.n_kv_head;
  shape.head_dim = HD;
  shape.scale = c.attention_scale();
  shape.kv_type = cache.type;

  embedding_forward(x, b.token.data(), T, w.tok_embd.raw(), w.tok_embd.dtype(), E);
  for (int64_t il = 0; il < c.n_layer; ++il) {
    const size_t l = size_t(il);
    auto* k_cache = static_cast<uint8_t*>(cache.k[l].raw());
    auto* v_cache = static_cast<uint8_t*>(cache.v[l].raw());
    shape.window = c.window_of(il);
    shape.n_ctx = cache.rows[l];
    shape.first_pos = cache.windowed(l) ? cache.first_pos[l].data() : nullptr;
    shape.sinks = c.attn_sinks ? w.layers[size_t(il)].sinks.data<float>() : nullptr;
    layer_forward(c, w.layers[size_t(il)], buf, T, b.pos.data(), model_.inv_freq.data(),
                  [&](float* att, const float* q_rot, const float* k_rot, const float* v_new) {
                    // Store this batch's keys and values at (slot, position) before attending,
                    // so tokens of the same sequence in this batch see each other causally.
                    for (int64_t t = 0; t < T; ++t) {
                      const size_t at = cache.offset(l, b.seq[t], b.pos[t]);
                      quantize_row(k_cache + at, cache.type, k_rot + t * KVD, KVD);
                      quantize_row(v_cache + at, cache.type, v_new + t * KVD, KVD);
                    }
                    attention_forward(att, q_rot, k_cache, v_cache, shape, b.pos.data(), b.seq.data());
                  });
  }

  // Final norm and head only for the rows whose logits are wanted (decode: one per sequence).
  float* out_x = out_x_.data<float>();
  for (int64_t i = 0; i < n_out; ++i) std::memcpy(out_x + i * E, x + int64_t(out_rows_[i]) * E, size_t(E) * sizeof(float));
  rmsnorm_forward(out_x, out_x, w.out_norm.data<float>(), n_out, E, float(c.norm_eps));
  if (hidden_only_) return out_x;
  head_rows(out_x, n_out, logits_.data<float>());
  return logits_.data<float>();
}

size_t forward_buffer_bytes(const ModelConfig& c, int64_t rows) {
  // per row: x, xn, proj, out_x and the copy out; q and att; k and v; gate and up
  const int64_t per_row = 5 * c.n_embd + 2 * c.q_dim() + 2 * c.kv_dim() + 2 * c.n_ff;
  return size_t(rows * per_row) * sizeof(float);
}

size_t full_forward_bytes(const ModelConfig& c, int64_t rows) {
  return forward_buffer_bytes(c, rows) + kv_cache_bytes(c, 1, rows, DType::F32);
}

void head_logits(const Model& model, const float* hidden, int64_t n, float* logits) {
  const ModelConfig& c = model.config;
  const Tensor& head = model.weights.lm_head;
  matmul_prepared(logits, hidden, head.raw(), head.dtype(), static_cast<const PreparedWeight*>(head.prepared()), nullptr, n,
                  c.n_vocab, c.n_embd);
}

void Decoder::head_rows(const float* hidden, int64_t n, float* logits) const { head_logits(model_, hidden, n, logits); }

const float* LogitParts::rows(int64_t r0, int64_t n) {
  const ModelConfig& c = model().config;
  buf_.resize(size_t(n * c.n_vocab));
  head_logits(model(), hidden_.data<float>() + r0 * c.n_embd, n, buf_.data());
  return buf_.data();
}

const float* Decoder::forward_all_rows(const int32_t* ids, int64_t n_seq, int64_t seq_len) {
  KVCache cache(model_.config, n_seq, seq_len, DType::F32);  // scoring: exact keys and values
  Batch b;
  for (int64_t s = 0; s < n_seq; ++s)
    for (int64_t p = 0; p < seq_len; ++p) b.add(ids[s * seq_len + p], int32_t(p), int32_t(s), true);
  return forward(b, cache);
}

Tensor Decoder::forward_full(const int32_t* ids, int64_t n_seq, int64_t seq_len) {
  const float* logits = forward_all_rows(ids, n_seq, seq_len);
  Tensor out = Tensor::zeros(DType::F32, {n_seq, seq_len, model_.config.n_vocab});
  std::memcpy(out.raw(), logits, out.nbytes());
  return out;
}

Tensor Decoder::forward_full_hidden(const int32_t* ids, int64_t n_seq, int64_t seq_len) {
  struct HiddenOnly {  // back to logits however the forward ends
    bool& flag;
    explicit HiddenOnly(bool& f) : flag(f) { flag = true; }
    ~HiddenOnly() { flag = false; }
  } scope(hidden_only_);
  const float* hidden = forward_all_rows(ids, n_seq, seq_len);
  Tensor out = Tensor::zeros(DType::F32, {n_seq * seq_len, model_.config.n_embd});
  std::memcpy(out.raw(), hidden, out.nbytes());
  return out;
}

}  // namespace distill
