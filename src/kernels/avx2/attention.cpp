// AVX2: causal GQA attention with an online (single-pass) softmax.
// Keys are visited in blocks; a running max m, running denominator l and running weighted sum
// acc are rescaled by e^(m_old - m_new) whenever the max grows, so no buffer of n_ctx scores is
// needed and the kernel allocates nothing. The cache holds f32 or f16 (widened 8 at a time by F16C).
#include "kernels/avx2/simd.h"
#include "core/error.h"
#include "kernels/kernels.h"
#include "kernels/parallel.h"

#include <algorithm>
#include <cmath>

namespace distill::avx2 {

namespace {

// Cache elements (float or F16) are read through simd.h's load8 / load1.

template <typename E>
float dot(const float* a, const E* b, int64_t n) {
  __m256 acc0 = _mm256_setzero_ps(), acc1 = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), load8(b + i), acc0);
    acc1 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i + 8), load8(b + i + 8), acc1);
  }
  for (; i + 8 <= n; i += 8) acc0 = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), load8(b + i), acc0);
  float s = hsum(_mm256_add_ps(acc0, acc1));
  for (; i < n; ++i) s += a[i] * load1(b + i);
  return s;
}

// The scores of 8 keys (rows kv_dim apart) against q, in one vector: 8 independent accumulators
// over head_dim (a multiple of 8), then a transposing reduction (three rounds of pairwise adds) in
// place of 8 horizontal sums.
template <typename E>
__m256 dot8(const float* q, const E* k, int64_t kv_dim, int64_t hd) {
  __m256 a[8];
  for (int r = 0; r < 8; ++r) a[r] = _mm256_setzero_ps();
  for (int64_t i = 0; i < hd; i += 8) {
    const __m256 qv = _mm256_loadu_ps(q + i);
    for (int r = 0; r < 8; ++r) a[r] = _mm256_fmadd_ps(qv, load8(k + r * kv_dim + i), a[r]);
  }
  // per 128-bit half: [Σa0, Σa1, Σa2, Σa3] over that half's 4 lanes, then the halves added
  const __m256 s0123 = _mm256_hadd_ps(_mm256_hadd_ps(a[0], a[1]), _mm256_hadd_ps(a[2], a[3]));
  const __m256 s4567 = _mm256_hadd_ps(_mm256_hadd_ps(a[4], a[5]), _mm256_hadd_ps(a[6], a[7]));
  return _mm256_add_ps(_mm256_permute2f128_ps(s0123, s4567, 0x20), _mm256_permute2f128_ps(s0123, s4567, 0x31));
}

// y = y * a + p * v  over n floats
template <typename E>
void scale_add(float* y, float a, float p, const E* v, int64_t n) {
  const __m256 va = _mm256_set1_ps(a), vp = _mm256_set1_ps(p);
  int64_t i = 0;
  for (; i + 8 <= n; i += 8)
    _mm256_storeu_ps(y + i, _mm256_fmadd_ps(vp, load8(v + i), _mm256_mul_ps(va, _mm256_loadu_ps(y + i))));
  for (; i < n; ++i) y[i] = y[i] * a + p * load1(v + i);
}

template <typename E>
void attend(float* out, const float* q, const E* k_cache, const E* v_cache, const AttentionShape& s, const int32_t* pos,
            const int32_t* seq) {
  constexpr int64_t kBlock = 64;
  DISTILL_ASSERT(s.head_dim <= 512);
  const int64_t group = s.n_head / s.n_kv_head;
  const int64_t kv_dim = s.n_kv_head * s.head_dim;
  const int64_t n_work = s.n_tokens * s.n_head;
  const int64_t row_bytes = s.head_dim * int64_t(sizeof(E));  // one head's keys (or values) of one position
  auto head = [&](int64_t w) {  // query head w % n_head of token w / n_head
    const int64_t t = w / s.n_head, h = w % s.n_head, g = h / group;
    const int64_t p = pos[t];
    const int64_t first = s.window > 0 ? std::max<int64_t>(0, p - s.window + 1) : 0;
    const float* qh = q + w * s.head_dim;
    const int64_t first_row = slot_origin(s, seq[t]) + first;  // the row holding position `first`
    const E* k_first = k_cache + first_row * kv_dim + g * s.head_dim;
    const E* v_first = v_cache + first_row * kv_dim + g * s.head_dim;
    alignas(32) float acc[512];
    std::fill(acc, acc + s.head_dim, 0.0f);
    // A sink is one more score with no value: start the running softmax from it.
    float m = s.sinks ? s.sinks[h] : -INFINITY, l = s.sinks ? 1.0f : 0.0f;
    alignas(32) float sc[kBlock];
    for (int64_t j0 = first; j0 <= p; j0 += kBlock) {
      const int64_t nb = std::min(kBlock, p + 1 - j0);
      const E* k_base = k_first + (j0 - first) * kv_dim;  // this block's first key and value
      const E* v_base = v_first + (j0 - first) * kv_dim;
      float block_max = -INFINITY;
      int64_t j8 = 0;
      if (s.head_dim % 8 == 0) {
        __m256 vmax = _mm256_set1_ps(-INFINITY);
        for (; j8 + 8 <= nb; j8 += 8) {
          // rows kv_dim apart defeat the stream prefetcher: ask for the next 8 keys and these 8 values
          for (int64_t r = 0; r < 8; ++r)
            for (int64_t off = 0; off < row_bytes; off += 64) {
              if (j0 + j8 + 8 + r <= p) _mm_prefetch(reinterpret_cast<const char*>(k_base + (j8 + 8 + r) * kv_dim) + off, _MM_HINT_T0);
              _mm_prefetch(reinterpret_cast<const char*>(v_base + (j8 + r) * kv_dim) + off, _MM_HINT_T0);
            }
          const __m256 v = _mm256_mul_ps(dot8(qh, k_base + j8 * kv_dim, kv_dim, s.head_dim), _mm256_set1_ps(s.scale));
          _mm256_store_ps(sc + j8, v);
          vmax = _mm256_max_ps(vmax, v);
        }
        block_max = hmax(vmax);
      }
      for (int64_t j = j8; j < nb; ++j) {
        sc[j] = dot(qh, k_base + j * kv_dim, s.head_dim) * s.scale;
        block_max = std::max(block_max, sc[j]);
      }
      const float m_new = std::max(m, block_max);
      const float correction = std::exp(m - m_new);  // 0 on the first block (m = -inf)
      // p_j = e^(s_j - m_new), 8 at a time
      int64_t j = 0;
      __m256 psum = _mm256_setzero_ps();
      for (; j + 8 <= nb; j += 8) {
        const __m256 e = exp(_mm256_sub_ps(_mm256_load_ps(sc + j), _mm256_set1_ps(m_new)));
        _mm256_store_ps(sc + j, e);
        psum = _mm256_add_ps(psum, e);
      }
      float ps = hsum(psum);
      for (; j < nb; ++j) ps += (sc[j] = std::exp(sc[j] - m_new));
      l = l * correction + ps;
      // acc = acc · correction + Σ_j p_j v_j, 32 dims at a time held in registers across the block
      for (int64_t d0 = 0; d0 < s.head_dim; d0 += 32) {
        if (d0 + 32 <= s.head_dim) {
          const __m256 c = _mm256_set1_ps(correction);
          __m256 a0 = _mm256_mul_ps(c, _mm256_load_ps(acc + d0)), a1 = _mm256_mul_ps(c, _mm256_load_ps(acc + d0 + 8));
          __m256 a2 = _mm256_mul_ps(c, _mm256_load_ps(acc + d0 + 16)), a3 = _mm256_mul_ps(c, _mm256_load_ps(acc + d0 + 24));
          for (int64_t jj = 0; jj < nb; ++jj) {
            const E* v = v_base + jj * kv_dim + d0;
            const __m256 pj = _mm256_set1_ps(sc[jj]);
            a0 = _mm256_fmadd_ps(pj, load8(v), a0);
            a1 = _mm256_fmadd_ps(pj, load8(v + 8), a1);
            a2 = _mm256_fmadd_ps(pj, load8(v + 16), a2);
            a3 = _mm256_fmadd_ps(pj, load8(v + 24), a3);
          }
          _mm256_store_ps(acc + d0, a0), _mm256_store_ps(acc + d0 + 8, a1);
          _mm256_store_ps(acc + d0 + 16, a2), _mm256_store_ps(acc + d0 + 24, a3);
        } else {  // a head_dim that is not a multiple of 32: the tail, one key at a time
          for (int64_t jj = 0; jj < nb; ++jj)
            scale_add(acc + d0, jj == 0 ? correction : 1.0f, sc[jj], v_base + jj * kv_dim + d0, s.head_dim - d0);
        }
      }
      m = m_new;
    }
    float* oh = out + w * s.head_dim;
    const float inv = 1.0f / l;
    for (int64_t d = 0; d < s.head_dim; ++d) oh[d] = acc[d] * inv;
  };
  if (s.n_tokens == 1) return pool_for(n_work, n_work > 1, head);  // a one-token step (kernels/parallel.h)
#pragma omp parallel for schedule(dynamic, 1) if (n_work > 1)
  for (int64_t w = 0; w < n_work; ++w) head(w);
}

}  // namespace

void attention_forward(float* out, const float* q, const void* k_cache, const void* v_cache, const AttentionShape& s,
                       const int32_t* pos, const int32_t* seq) {
  if (s.kv_type == DType::F16)
    return attend(out, q, static_cast<const F16*>(k_cache), static_cast<const F16*>(v_cache), s, pos, seq);
  attend(out, q, static_cast<const float*>(k_cache), static_cast<const float*>(v_cache), s, pos, seq);
}

}  // namespace distill::avx2
