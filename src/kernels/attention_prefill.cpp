// Attention for runs of prompt tokens (prefill): a run is consecutive batch tokens of one cache
// slot at consecutive positions. The per-query kernels (ref/, avx2/) read every key and value
// once per query head and per query; here a chunk of 64 queries of one head shares them, as two
// small matrix products:
//   S = scale · Q_chunk · K_keysᵀ     [64, L]   (L keys: from the chunk's first visible key to its last query)
//   P = causal (and sliding-window) mask, softmax per row
//   O = P · V_keys                     [64, head_dim]
// Q, K and V are read in place through row strides (q: n_head·head_dim, K/V: n_kv_head·head_dim),
// so grouped KV heads need no copies. Only the diagonal 64×64 corner of each chunk computes
// masked-out products. OpenMP splits (head, chunk) pairs; the products are the active variant's
// panel GEMM (kernels/gemm_f32_panels.h), single-threaded inside (OpenBLAS's small-matrix calls
// cost twice as much here: 134M pp512 spent 29 % of its time in attention with them).
// An f16 cache's keys and values that a run sees are widened to f32 once per run (before the
// chunks share them), by the active variant's converter.
// Tokens outside long runs (decode steps, short runs) go to the active per-query kernel.
#include "kernels/kernels.h"

#include <algorithm>
#include <cmath>
#include <exception>
#include <vector>

namespace distill {

namespace {

constexpr int64_t kQueryChunk = 64;
constexpr int64_t kMinRun = 16;  // shorter runs: the per-query kernel is as fast

// The keys (or values) of positions lo .. hi of a slot as f32 rows of kv_dim: in place for an f32
// cache, widened into `buf` for an f16 one. Returns row lo.
const float* kv_rows_f32(const void* cache, int64_t slot_first, const AttentionShape& s, int64_t lo, int64_t hi,
                         std::vector<float>& buf) {
  const int64_t kv_dim = s.n_kv_head * s.head_dim, at = slot_first + lo * kv_dim, n = (hi - lo + 1) * kv_dim;
  if (s.kv_type == DType::F32) return static_cast<const float*>(cache) + at;
  if (int64_t(buf.size()) < n) buf.resize(size_t(n));
  const uint16_t* src = static_cast<const uint16_t*>(cache) + at;
  const int64_t per_task = 64 * kv_dim;
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; i += per_task) dequantize_row(buf.data() + i, src + i, DType::F16, std::min(per_task, n - i));
  return buf.data();
}

// Tokens [0, T) of q / out: positions p0 .. p0+T−1 of cache slot `slot`.
void attention_run(float* out, const float* q, const void* k_cache, const void* v_cache, const AttentionShape& s,
                   int64_t T, int64_t p0, int64_t slot) {
  const int64_t group = s.n_head / s.n_kv_head;
  const int64_t kv_dim = s.n_kv_head * s.head_dim, q_stride = s.n_head * s.head_dim;
  const int64_t n_chunks = (T + kQueryChunk - 1) / kQueryChunk;
  const int64_t slot_first = slot_origin(s, slot) * kv_dim;  // where the slot's position 0 lies
  // every key and value the run sees (from the first chunk's window start to its last query), as f32
  const int64_t row0 = s.window > 0 ? std::max<int64_t>(0, p0 - s.window + 1) : 0;
  static thread_local std::vector<float> k_wide, v_wide;
  const float* k_rows = kv_rows_f32(k_cache, slot_first, s, row0, p0 + T - 1, k_wide);
  const float* v_rows = kv_rows_f32(v_cache, slot_first, s, row0, p0 + T - 1, v_wide);
  // Later chunks see more keys: hand them out first so the threads finish together.
#pragma omp parallel
  {
    static thread_local std::vector<float> scores, with_sink;
#pragma omp for schedule(dynamic, 1)
    for (int64_t w = 0; w < s.n_head * n_chunks; ++w) {
      const int64_t c = n_chunks - 1 - w / s.n_head, h = w % s.n_head, g = h / group;
      const int64_t i0 = c * kQueryChunk, nq = std::min(kQueryChunk, T - i0);
      const int64_t first_pos = p0 + i0, last_pos = first_pos + nq - 1;
      const int64_t j_lo = s.window > 0 ? std::max<int64_t>(0, first_pos - s.window + 1) : 0;
      const int64_t L = last_pos - j_lo + 1;
      if (int64_t(scores.size()) < nq * L) scores.resize(size_t(nq * L));
      float* S = scores.data();
      // S = Q_chunk · K_keysᵀ (scaled below, on the visible scores only)
      gemm_f32({.out = S, .ldo = L, .x = q + (i0 * s.n_head + h) * s.head_dim, .ldx = q_stride,
                .w = k_rows + (j_lo - row0) * kv_dim + g * s.head_dim, .ldw = kv_dim, .M = nq, .N = L, .K = s.head_dim});
      for (int64_t i = 0; i < nq; ++i) {
        // query at position p sees keys max(0, p − window + 1) .. p: softmax over those, 0 elsewhere
        const int64_t p = first_pos + i;
        const int64_t lo = (s.window > 0 ? std::max<int64_t>(0, p - s.window + 1) : 0) - j_lo, hi = p - j_lo;
        float* row = S + i * L;
        std::fill(row, row + lo, 0.0f);
        std::fill(row + hi + 1, row + L, 0.0f);
        for (int64_t j = lo; j <= hi; ++j) row[j] *= s.scale;
        if (s.sinks) {
          // the sink joins the softmax as one more score (at the end of a copy), without a value
          const int64_t n = hi - lo + 1;
          if (int64_t(with_sink.size()) < n + 1) with_sink.resize(size_t(n + 1));
          std::copy(row + lo, row + hi + 1, with_sink.begin());
          with_sink[size_t(n)] = s.sinks[h];
          softmax_forward(with_sink.data(), 1, n + 1);
          std::copy(with_sink.begin(), with_sink.begin() + n, row + lo);
        } else {
          softmax_forward(row + lo, 1, hi - lo + 1);  // the active variant (vectorised exp)
        }
      }
      // O = P · V_keys: the values are the product's [K, N] operand as they lie in the cache
      gemm_f32({.out = out + (i0 * s.n_head + h) * s.head_dim, .ldo = q_stride, .x = S, .ldx = L,
                .w = v_rows + (j_lo - row0) * kv_dim + g * s.head_dim, .ldw = kv_dim, .w_kn = true, .M = nq,
                .N = s.head_dim, .K = L});
    }
  }
}

}  // namespace

void attention_forward_runs(float* out, const float* q, const void* k_cache, const void* v_cache,
                            const AttentionShape& s, const int32_t* pos, const int32_t* seq, AttentionKernel per_query) {
  const int64_t stride = s.n_head * s.head_dim;  // floats per token in q and out
  int64_t t = 0, pending = 0;                    // tokens [pending, t) wait for the per-query kernel
  auto flush = [&](int64_t end) {
    if (end == pending) return;
    AttentionShape part = s;
    part.n_tokens = end - pending;
    per_query(out + pending * stride, q + pending * stride, k_cache, v_cache, part, pos + pending, seq + pending);
  };
  while (t < s.n_tokens) {
    int64_t e = t + 1;
    while (e < s.n_tokens && seq[e] == seq[t] && pos[e] == pos[e - 1] + 1) ++e;
    if (e - t >= kMinRun) {
      flush(t);
      attention_run(out + t * stride, q + t * stride, k_cache, v_cache, s, e - t, pos[t], seq[t]);
      pending = e;
    }
    t = e;
  }
  flush(s.n_tokens);
}

}  // namespace distill
