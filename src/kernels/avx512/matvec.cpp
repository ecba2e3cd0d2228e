// AVX-512 (F/BW/VL + VNNI): the Q8_0, Q4_0 and MXFP4 decode matvecs, one input row against the weights,
// as vpdpbusd int8 dot products of 64 bytes (two 32-value blocks) per instruction. Every other kernel
// and shape runs the AVX2 variant, which this CPU runs too — because it measured as fast or
// faster (134M, 2 threads, Zen 4): f32 decode 95 tok/s with AVX2 vs 63 with 512-bit loads (the
// weights are 32-byte aligned in a GGUF file, so each 64-byte load spans two cache lines); Q8_0
// 250-270 with VNNI vs 237; Q4_0 with VNNI (unsigned nibbles straight into vpdpbusd) 297-338 vs
// 195-243, same run alternating.
//
// Per pair of blocks: Σ w·x = dpbusd(|x|, w with x's sign), |x| computed once per call. The int32
// lanes 0-7 hold partial sums of the first block, 8-15 of the second, each scaled by its
// d_w·d_x into f32 accumulators. One weight row at a time: one linear stream per thread, which
// the hardware prefetcher follows at full bandwidth.
#include "kernels/activation_reuse.h"
#include "kernels/block_scales8.h"
#include "kernels/kernels.h"
#include "kernels/parallel.h"
#include "kernels/prefetch.h"
#include "kernels/quant_blocks.h"

#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

namespace distill::avx512 {

namespace {

inline float f16_to_f32(uint16_t h) { return _cvtsh_ss(h); }

// The 64 int8 values of two consecutive blocks, in value order.
inline __m512i pair_q8_0(const BlockQ8_0* b) {
  return _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b[0].qs))),
                            _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b[1].qs)), 1);
}
// A lone last block: its 32 values in the low half, zeros (adding nothing) in the high half.
inline __m512i single_q8_0(const BlockQ8_0* b) {
  return _mm512_zextsi256_si512(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b->qs)));
}
// w with the sign of x (x's negative lanes in `neg`); values are within ±127, so negation is exact.
inline __m512i signed_like(__m512i w, __mmask64 neg) { return _mm512_mask_sub_epi8(w, neg, _mm512_setzero_si512(), w); }

// The unsigned levels of 64 nibbles (one block per 128-bit lane; kernels/block_scales8.h).
template <typename Block>
inline __m512i unsigned_values(__m512i nibbles) {
  if constexpr (U4Format<Block>::kLevels == nullptr) return nibbles;
  else return _mm512_shuffle_epi8(_mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(U4Format<Block>::kLevels))), nibbles);
}
float row_dot(const BlockQ8_0* wr, const __m512i* ax, const __mmask64* neg, const float* xd, int64_t nb) {
  __m512 acc = _mm512_setzero_ps();
  const int64_t ahead = decode_prefetch_bytes();
  int64_t b = 0;
  for (; b + 2 <= nb; b += 2) {
    prefetch_ahead(wr + b, ahead, 64);  // (68 bytes a pair: the hardware prefetcher covers the rest)
    const __m512i dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ax[b / 2], signed_like(pair_q8_0(wr + b), neg[b / 2]));
    // lanes 0-7 scaled by the first block's d_w·d_x, 8-15 by the second's
    const __m512 s = _mm512_insertf32x8(_mm512_set1_ps(f16_to_f32(wr[b].d) * xd[b]),
                                        _mm256_set1_ps(f16_to_f32(wr[b + 1].d) * xd[b + 1]), 1);
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), s, acc);
  }
  if (b < nb) {  // an odd number of blocks: the last one alone
    const __m512i dot = _mm512_dpbusd_epi32(_mm512_setzero_si512(), ax[b / 2], signed_like(single_q8_0(wr + b), neg[b / 2]));
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_set1_ps(f16_to_f32(wr[b].d) * xd[b]), acc);
  }
  return _mm512_reduce_add_ps(acc);
}

// Q4_0 and MXFP4, four blocks per vector: each block's 16 bytes in one 128-bit lane, so the low
// nibbles of the four (values 0-15 of each) are one vector of unsigned bytes and the high nibbles
// (values 16-31) another, with no shuffle but the loads' inserts; x is stored once per call in that
// order (lo, hi: block j of a group in lane j). Σ (u − offset)·x = dpbusd(u, x) − Σ offset·x, the
// second per group computed once per call (off); int32 lanes 4j..4j+3 then hold block j's partial
// sums, scaled by its d_w·d_x. Eight blocks (two groups, two accumulators) at a time, their scales
// converted as one vector and spread over the lanes by a permutation: one scalar scale conversion
// per block made the kernel compute-bound.
struct ActivationU4 {
  const __m512i* lo;   // per group of four blocks: values 0-15 of each block, one block per 128-bit lane
  const __m512i* hi;   // values 16-31
  const __m512i* off;  // Σ offset·x per int32 lane of the group's dpbusd
  const float* d;      // per block
};

// The nibbles of blocks b[0..r) (1 ≤ r ≤ 4) in lanes 0..r-1 as unsigned levels. A missing block's
// lanes hold whatever level a zero nibble stands for: x and Σ offset·x are zero there, so they add
// nothing.
template <typename Block>
inline void quad_levels(const Block* b, int r, __m512i* lo, __m512i* hi) {
  auto q = [&](int j) { return _mm_loadu_si128(reinterpret_cast<const __m128i*>(b[j].qs)); };
  __m512i v = _mm512_zextsi128_si512(q(0));
  if (r > 1) v = _mm512_inserti32x4(v, q(1), 1);
  if (r > 2) v = _mm512_inserti32x4(v, q(2), 2);
  if (r > 3) v = _mm512_inserti32x4(v, q(3), 3);
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  *lo = unsigned_values<Block>(_mm512_and_si512(v, low4));
  *hi = unsigned_values<Block>(_mm512_and_si512(_mm512_srli_epi16(v, 4), low4));
}

// Σ (u − offset)·x_q of group g's blocks (r of them), block j's in int32 lanes 4j..4j+3.
template <typename Block>
inline __m512i group_dot(const Block* w, int r, const ActivationU4& a, int64_t g) {
  __m512i lo, hi;
  quad_levels(w, r, &lo, &hi);
  return _mm512_sub_epi32(_mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), lo, a.lo[g]), hi, a.hi[g]), a.off[g]);
}

template <typename Block>
float row_dot_u4(const Block* wr, const ActivationU4& a, int64_t nb) {
  using F = U4Format<Block>;
  // lanes 4j..4j+3 take scale j (the first group of eight blocks) or 4 + j (the second)
  const __m512i spread0 = _mm512_set_epi32(3, 3, 3, 3, 2, 2, 2, 2, 1, 1, 1, 1, 0, 0, 0, 0);
  const __m512i spread1 = _mm512_add_epi32(spread0, _mm512_set1_epi32(4));
  __m512 acc0 = _mm512_setzero_ps(), acc1 = _mm512_setzero_ps();
  const int64_t ahead = decode_prefetch_bytes();
  int64_t b = 0;
  for (; b + 8 <= nb; b += 8) {
    prefetch_ahead(wr + b, ahead, int64_t(8 * sizeof(Block)));
    const __m512 s8 = _mm512_castps256_ps512(_mm256_mul_ps(scales8(wr + b), _mm256_loadu_ps(a.d + b)));
    acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(group_dot(wr + b, 4, a, b / 4)), _mm512_permutexvar_ps(spread0, s8), acc0);
    acc1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(group_dot(wr + b + 4, 4, a, b / 4 + 1)), _mm512_permutexvar_ps(spread1, s8), acc1);
  }
  for (; b < nb; b += 4) {  // one or two groups left, the last maybe partial
    const int r = int(std::min<int64_t>(4, nb - b));
    alignas(16) float s[4] = {0, 0, 0, 0};
    for (int j = 0; j < r; ++j) s[j] = F::scale(wr[b + j]) * a.d[b + j];
    const __m512 s4 = _mm512_castps128_ps512(_mm_load_ps(s));
    acc0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(group_dot(wr + b, r, a, b / 4)), _mm512_permutexvar_ps(spread0, s4), acc0);
  }
  return _mm512_reduce_add_ps(_mm512_add_ps(acc0, acc1));
}

// x as Q8_0 blocks (ggml's rounding, as every decode kernel) laid out for row_dot_u4.
template <typename Block>
void prepare_u4(const float* x, int64_t K, BlockQ8_0* xq, float* xd, __m512i* lo, __m512i* hi, __m512i* off) {
  const int64_t nb = K / kQK, ng = (nb + 3) / 4;
  avx2::quantize_row(xq, DType::Q8_0, x, K);
  for (int64_t b = 0; b < nb; ++b) xd[b] = f16_to_f32(xq[b].d);
  const __m512i offset = _mm512_set1_epi8(U4Format<Block>::kOffset);
  for (int64_t g = 0; g < ng; ++g) {
    alignas(64) int8_t l[64] = {}, h[64] = {};
    for (int j = 0; j < 4 && 4 * g + j < nb; ++j) {
      std::memcpy(l + 16 * j, xq[4 * g + j].qs, 16);
      std::memcpy(h + 16 * j, xq[4 * g + j].qs + 16, 16);
    }
    lo[g] = _mm512_load_si512(l), hi[g] = _mm512_load_si512(h);
    off[g] = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), offset, lo[g]), offset, hi[g]);
  }
}

template <typename Block>
void matvec_u4(float* out, const float* x, const void* w, const float* bias, int64_t N, int64_t K) {
  const int64_t nb = K / kQK, ng = (nb + 3) / 4;
  static thread_local std::vector<BlockQ8_0> xq;
  static thread_local std::vector<float> xd;
  static thread_local std::vector<__m512i> lo, hi, off;
  static thread_local PreparedActivationKey key;
  if (int64_t(xq.size()) < nb)
    xq.resize(size_t(nb)), xd.resize(size_t(nb)), lo.resize(size_t(ng)), hi.resize(size_t(ng)), off.resize(size_t(ng));
  if (!activation_prepared(key, x, K)) prepare_u4<Block>(x, K, xq.data(), xd.data(), lo.data(), hi.data(), off.data());
  const ActivationU4 a{lo.data(), hi.data(), off.data(), xd.data()};  // this thread's buffers, read by the team below
  parallel_rows(out, bias, N, K, [&](int64_t n) { return row_dot_u4(static_cast<const Block*>(w) + n * nb, a, nb); });
}

void matvec_q8_0(float* out, const float* x, const void* w, const float* bias, int64_t N, int64_t K) {
  const int64_t nb = K / kQK, np = (nb + 1) / 2;
  // x -> Q8_0 once per call (ggml's rounding, as the AVX2 kernel), then per pair of blocks |x|
  // and x's sign mask, and each block's scale in f32: shared by every weight row.
  static thread_local std::vector<BlockQ8_0> xq;
  static thread_local std::vector<float> xd;
  static thread_local std::vector<__m512i> ax;
  static thread_local std::vector<__mmask64> neg;
  static thread_local PreparedActivationKey key;
  if (int64_t(xq.size()) < nb) xq.resize(size_t(nb)), xd.resize(size_t(nb)), ax.resize(size_t(np)), neg.resize(size_t(np));
  if (!activation_prepared(key, x, K)) {
    avx2::quantize_row(xq.data(), DType::Q8_0, x, K);
    for (int64_t b = 0; b < nb; ++b) xd[size_t(b)] = f16_to_f32(xq[size_t(b)].d);
    for (int64_t p = 0; p < np; ++p) {
      const __m512i xv = 2 * p + 1 < nb ? pair_q8_0(&xq[size_t(2 * p)]) : single_q8_0(&xq[size_t(2 * p)]);
      ax[size_t(p)] = _mm512_abs_epi8(xv);
      neg[size_t(p)] = _mm512_movepi8_mask(xv);
    }
  }
  const __m512i* const axp = ax.data();  // this thread's buffers, read by the team below
  const __mmask64* const negp = neg.data();
  const float* const xdp = xd.data();
  parallel_rows(out, bias, N, K, [&](int64_t n) { return row_dot(static_cast<const BlockQ8_0*>(w) + n * nb, axp, negp, xdp, nb); });
}

}  // namespace

void matmul_forward(float* out, const float* x, const void* w, DType w_dtype, const float* bias, int64_t M, int64_t N,
                    int64_t K) {
  if (M == 1 && w_dtype == DType::Q8_0) return matvec_q8_0(out, x, w, bias, N, K);
  if (M == 1 && w_dtype == DType::Q4_0) return matvec_u4<BlockQ4_0>(out, x, w, bias, N, K);
  if (M == 1 && w_dtype == DType::MXFP4) return matvec_u4<BlockMxfp4>(out, x, w, bias, N, K);
  if (M == 1 && w_dtype == DType::Q4_K && K % kQKK == 0) return matvec_q4_k(out, x, w, bias, N, K);
  if (M == 1 && w_dtype == DType::Q6_K && K % kQKK == 0) return matvec_q6_k(out, x, w, bias, N, K);
  avx2::matmul_forward(out, x, w, w_dtype, bias, M, N, K);
}

}  // namespace distill::avx512
