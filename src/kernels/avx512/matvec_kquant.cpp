// AVX-512 VNNI: the Q4_K and Q6_K decode matvecs (one input row against the weights) — what a
// Q4_K_M download's matrices are (Q6_K: the output matrix and some attn_v / ffn_down). The AVX2
// kernel builds each sub-block's products with maddubs + madd and unpacks the 6-bit scales one
// sub-block at a time; that kept it compute-bound
// (30 GB/s on an L3-resident 32000 × 768 matrix where Q8_0 streams 70). Here a super-block of 256
// values is four vpdpbusd of 64 bytes and its eight scales are unpacked at once:
//
//   x: quantized once per call to int8 with one f32 scale d_x per 256 values (as llama.cpp's Q8_K),
//      stored per super-block in the order the weight's bytes unpack to (below; Q6_K: natural
//      order), with Σ x_q per 16 values (for Q4_K's minimums and Q6_K's centre);
//   w: Q4_K's qs[32p .. 32p+31] hold sub-block 2p in the low nibbles and 2p+1 in the high ones, so
//      the low nibbles of qs[0..63] are sub-blocks (0, 2), the high ones (1, 3), and of qs[64..127]
//      (4, 6) and (5, 7): four vectors of 64 unsigned levels, each against 64 int8 of x;
//   Σ w·x over the super-block = d·d_x·Σ_j sc_j·Σ q·x_q − dmin·d_x·Σ_j m_j·Σ x_q: each vpdpbusd's
//      int32 lanes 0-7 belong to its first sub-block and 8-15 to its second, so the lanes are
//      multiplied by their sub-block's scale (a permutation of the eight unpacked scales) and
//      summed in int32: |lane| ≤ 4·15·127·63 per sub-block pass, far inside int32.
#include "kernels/activation_reuse.h"
#include "kernels/kernels.h"
#include "kernels/parallel.h"
#include "kernels/prefetch.h"
#include "kernels/quant_blocks.h"

#include <immintrin.h>

#include <cstring>
#include <vector>

namespace distill::avx512 {

namespace {

// Where natural sub-block j of x goes in a super-block: the order Q4_K's bytes unpack to.
constexpr int kSlotOf[8] = {0, 2, 1, 3, 4, 6, 5, 7};

struct ActivationQ8K {
  const int8_t* q;      // per super-block, 256 values (in kSlotOf order for Q4_K, else natural)
  const float* d;       // per super-block
  const int32_t* sum;   // Σ x_q per 16 values, natural order
};

// x in the form the Q4_K (q4_k_order) or Q6_K rows read; each order its own buffers, so a batch
// of both (a Q4_K_M layer's q/k and v) keeps both.
ActivationQ8K quantize_activation(const float* x, int64_t K, bool q4_k_order) {
  struct Buffers {
    std::vector<int8_t> q;
    std::vector<float> d;
    std::vector<int32_t> sum;
    PreparedActivationKey key;
  };
  static thread_local Buffers orders[2];
  auto& [q, d, sum, key] = orders[q4_k_order ? 1 : 0];
  const int64_t nsb = K / kQKK;
  if (int64_t(q.size()) < K) q.resize(size_t(K)), d.resize(size_t(nsb)), sum.resize(size_t(K / 16));
  if (activation_prepared(key, x, K)) return {q.data(), d.data(), sum.data()};
  for (int64_t sb = 0; sb < nsb; ++sb) {
    const float* xs = x + sb * kQKK;
    __m512 amax = _mm512_setzero_ps();
    for (int i = 0; i < kQKK; i += 16) amax = _mm512_max_ps(amax, _mm512_abs_ps(_mm512_loadu_ps(xs + i)));
    const float dx = _mm512_reduce_max_ps(amax) / 127.0f;
    d[size_t(sb)] = dx;
    const __m512 id = _mm512_set1_ps(dx != 0 ? 1.0f / dx : 0.0f);
    for (int j = 0; j < 8; ++j) {
      // round to nearest (even) as the other kernels' quantizers do; |v| ≤ 127 by construction
      const __m512i a = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(xs + 32 * j), id));
      const __m512i b = _mm512_cvtps_epi32(_mm512_mul_ps(_mm512_loadu_ps(xs + 32 * j + 16), id));
      int8_t* dst = q.data() + sb * kQKK + 32 * (q4_k_order ? kSlotOf[j] : j);
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), _mm512_cvtsepi32_epi8(a));
      _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + 16), _mm512_cvtsepi32_epi8(b));
      sum[size_t(sb * 16 + 2 * j)] = _mm512_reduce_add_epi32(a);
      sum[size_t(sb * 16 + 2 * j + 1)] = _mm512_reduce_add_epi32(b);
    }
  }
  return {q.data(), d.data(), sum.data()};
}

float row_q4_k(const BlockQ4_K* blk, const ActivationQ8K& a, int64_t nsb) {
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  // lanes 0-7 take the scale of the vector's first sub-block, 8-15 of its second
  const __m512i idx[4] = {_mm512_set_epi32(2, 2, 2, 2, 2, 2, 2, 2, 0, 0, 0, 0, 0, 0, 0, 0),
                          _mm512_set_epi32(3, 3, 3, 3, 3, 3, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1),
                          _mm512_set_epi32(6, 6, 6, 6, 6, 6, 6, 6, 4, 4, 4, 4, 4, 4, 4, 4),
                          _mm512_set_epi32(7, 7, 7, 7, 7, 7, 7, 7, 5, 5, 5, 5, 5, 5, 5, 5)};
  const __m512i pairs = _mm512_set_epi32(7, 7, 6, 6, 5, 5, 4, 4, 3, 3, 2, 2, 1, 1, 0, 0);
  __m512 acc = _mm512_setzero_ps(), corr = _mm512_setzero_ps();  // (corr: the minimums' part, reduced once)
  const int64_t ahead = decode_prefetch_bytes();
  for (int64_t sb = 0; sb < nsb; ++sb) {
    const BlockQ4_K& b = blk[sb];
    prefetch_ahead(&b, ahead, int64_t(sizeof(BlockQ4_K)));
    const int8_t* xq = a.q + sb * kQKK;
    const __m512i z0 = _mm512_loadu_si512(b.qs), z1 = _mm512_loadu_si512(b.qs + 64);
    const __m512i w[4] = {_mm512_and_si512(z0, low4), _mm512_and_si512(_mm512_srli_epi16(z0, 4), low4),
                          _mm512_and_si512(z1, low4), _mm512_and_si512(_mm512_srli_epi16(z1, 4), low4)};
    uint64_t sc, mn;
    scales_mins_k4(b.scales, &sc, &mn);
    const __m512i s = _mm512_cvtepu8_epi32(_mm_cvtsi64_si128(int64_t(sc)));  // sc 0..7 in lanes 0..7
    __m512i isum = _mm512_setzero_si512();
    for (int v = 0; v < 4; ++v) {
      const __m512i dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), w[v], _mm512_loadu_si512(xq + 64 * v));
      isum = _mm512_add_epi32(isum, _mm512_mullo_epi32(dot, _mm512_permutexvar_epi32(idx[v], s)));
    }
    const float dx = a.d[sb];
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(_cvtsh_ss(b.d) * dx), acc);
    // Σ_j m_j · Σ x_q (sub-block j): minimum j against the two sums of 16 of its sub-block
    const __m512i m = _mm512_permutexvar_epi32(pairs, _mm512_cvtepu8_epi32(_mm_cvtsi64_si128(int64_t(mn))));
    const __m512i ms = _mm512_mullo_epi32(m, _mm512_loadu_si512(a.sum + sb * 16));
    corr = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ms), _mm512_set1_ps(_cvtsh_ss(b.dmin) * dx), corr);
  }
  return _mm512_reduce_add_ps(_mm512_sub_ps(acc, corr));
}

// Q6_K: per half of 128 values, ql[64h .. 64h+63] holds values 0..63 in its low nibbles and
// 64..127 in its high ones; qh[32h + l] holds the two top bits of values l, l+32, l+64, l+96 at
// bits 0, 2, 4, 6. With qh's 32 bytes in both halves of a vector, one per-half variable shift
// (left 4 | 2, then right 0 | 2) puts the top bits of values 0..63 (then 64..127) at bits 4-5,
// a mask keeps them, and one ternary select joins them to the nibbles (bits 0-3): two vectors of
// 64 levels 0..63 in eight operations (the shifts are 16-bit: what crosses a byte is masked off).
// Σ (q − 32)·x·sc per 16 values = sc·Σ q·x_q − 32·sc·Σ x_q: the first from vpdpbusd lanes times
// their group's scale, the second from the activation's sums per 16.
float row_q6_k(const BlockQ6_K* blk, const ActivationQ8K& a, int64_t nsb) {
  const __m512i low4 = _mm512_set1_epi8(0x0F), bits45 = _mm512_set1_epi8(0x30);
  const __m512i left42 = _mm512_inserti64x4(_mm512_set1_epi16(4), _mm256_set1_epi16(2), 1);
  const __m512i right02 = _mm512_inserti64x4(_mm512_setzero_si512(), _mm256_set1_epi16(2), 1);
  constexpr int kSelectLow4 = 0xE4;  // ternary logic: c ? a : b per bit, c = 0x0F (a: nibbles, b: top bits)
  // lanes 4g .. 4g+3 take the scale of their group of 16: groups 0-3, 4-7, 8-11, 12-15 of the block
  const __m512i idx[4] = {_mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0),
                          _mm512_set_epi32(7, 7, 7, 7, 6, 6, 6, 6, 5, 5, 5, 5, 4, 4, 4, 4),
                          _mm512_set_epi32(11, 11, 11, 11, 10, 10, 10, 10, 9, 9, 9, 9, 8, 8, 8, 8),
                          _mm512_set_epi32(15, 15, 15, 15, 14, 14, 14, 14, 13, 13, 13, 13, 12, 12, 12, 12)};
  __m512 acc = _mm512_setzero_ps();
  const int64_t ahead = decode_prefetch_bytes();
  for (int64_t sb = 0; sb < nsb; ++sb) {
    const BlockQ6_K& b = blk[sb];
    prefetch_ahead(&b, ahead, int64_t(sizeof(BlockQ6_K)));
    const int8_t* xq = a.q + sb * kQKK;
    const __m512i sc = _mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b.scales)));
    // −32 · Σ_s sc_s · Σ x_q (group s), folded into the integer sum
    __m512i isum = _mm512_mullo_epi32(_mm512_set1_epi32(-32), _mm512_mullo_epi32(sc, _mm512_loadu_si512(a.sum + sb * 16)));
    for (int h = 0; h < 2; ++h) {
      const __m512i l = _mm512_loadu_si512(b.ql + 64 * h);
      const __m512i hh = _mm512_broadcast_i64x4(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qh + 32 * h)));
      const __m512i top0 = _mm512_and_si512(_mm512_sllv_epi16(hh, left42), bits45);
      const __m512i top1 = _mm512_and_si512(_mm512_srlv_epi16(hh, right02), bits45);
      const __m512i q[2] = {_mm512_ternarylogic_epi32(l, top0, low4, kSelectLow4),
                            _mm512_ternarylogic_epi32(_mm512_srli_epi16(l, 4), top1, low4, kSelectLow4)};
      for (int v = 0; v < 2; ++v) {
        const __m512i dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), q[v], _mm512_loadu_si512(xq + 128 * h + 64 * v));
        isum = _mm512_add_epi32(isum, _mm512_mullo_epi32(dot, _mm512_permutexvar_epi32(idx[2 * h + v], sc)));
      }
    }
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_set1_ps(_cvtsh_ss(b.d) * a.d[sb]), acc);
  }
  return _mm512_reduce_add_ps(acc);
}

}  // namespace

void matvec_q6_k(float* out, const float* x, const void* w, const float* bias, int64_t N, int64_t K) {
  const int64_t nsb = K / kQKK;
  const ActivationQ8K a = quantize_activation(x, K, false);
  const BlockQ6_K* const wb = static_cast<const BlockQ6_K*>(w);
  parallel_rows(out, bias, N, K, [&](int64_t n) { return row_q6_k(wb + n * nsb, a, nsb); });
}

void matvec_q4_k(float* out, const float* x, const void* w, const float* bias, int64_t N, int64_t K) {
  const int64_t nsb = K / kQKK;
  const ActivationQ8K a = quantize_activation(x, K, true);  // this thread's buffers, read by the team below
  const BlockQ4_K* const wb = static_cast<const BlockQ4_K*>(w);
  parallel_rows(out, bias, N, K, [&](int64_t n) { return row_q4_k(wb + n * nsb, a, nsb); });
}

}  // namespace distill::avx512
