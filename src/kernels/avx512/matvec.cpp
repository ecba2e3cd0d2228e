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
#include "kernels/quant_blocks.h"

#include <immintrin.h>

#include <algorithm>
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

// The 64 nibbles of two consecutive 4-bit blocks (Q4_0, MXFP4: values j and j+16 share byte j) as
// unsigned bytes 0..15 in value order: 128-bit lanes [block 0 low nibbles (values 0-15), its high
// nibbles (16-31), block 1 low, block 1 high].
template <typename Block>
inline __m512i pair_nibbles(const Block* b) {
  const __m256i v = _mm256_set_m128i(_mm_loadu_si128(reinterpret_cast<const __m128i*>(b[1].qs)),
                                     _mm_loadu_si128(reinterpret_cast<const __m128i*>(b[0].qs)));
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  const __m512i lh = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_and_si256(v, low4)),
                                        _mm256_and_si256(_mm256_srli_epi16(v, 4), low4), 1);  // [lo0, lo1, hi0, hi1]
  return _mm512_shuffle_i64x2(lh, lh, _MM_SHUFFLE(3, 1, 2, 0));
}
// A lone last block: zeros in the high half (which the caller's zero x lanes make add nothing).
template <typename Block>
inline __m512i single_nibbles(const Block* b) {
  const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b->qs)), low4 = _mm_set1_epi8(0x0F);
  return _mm512_zextsi256_si512(_mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), low4), _mm_and_si128(v, low4)));
}

// The two 4-bit formats as unsigned bytes u with value = scale · (u − kOffset):
// Q4_0 stores u itself (offset 8); MXFP4's nibble is an E2M1 code, looked up as its doubled value
// + 12 (0..24; the scale is halved to match, as in kernels/quant_blocks.h).
template <typename Block> struct U4;
template <> struct U4<BlockQ4_0> {
  static constexpr int kOffset = 8;
  static __m512i unsigned_values(__m512i nibbles) { return nibbles; }
  static float scale(const BlockQ4_0& b) { return f16_to_f32(b.d); }
};
template <> struct U4<BlockMxfp4> {
  static constexpr int kOffset = 12;
  static __m512i unsigned_values(__m512i nibbles) {
    const __m512i table = _mm512_add_epi8(
        _mm512_broadcast_i32x4(_mm_loadu_si128(reinterpret_cast<const __m128i*>(kMxfp4Doubled))), _mm512_set1_epi8(kOffset));
    return _mm512_shuffle_epi8(table, nibbles);  // per 128-bit lane: the table is in each
  }
  static float scale(const BlockMxfp4& b) { return mxfp4_half_scale(b.e); }
};

float row_dot(const BlockQ8_0* wr, const __m512i* ax, const __mmask64* neg, const float* xd, int64_t nb) {
  __m512 acc = _mm512_setzero_ps();
  int64_t b = 0;
  for (; b + 2 <= nb; b += 2) {
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

// Q4_0 and MXFP4: Σ (u − offset)·x = dpbusd(u, x) − dpbusd(offset, x), the second per pair of x
// blocks computed once per call. Eight blocks at a time, their scales d_w·d_x are converted and
// multiplied as one vector and each pair's lanes (0-7 the first block, 8-15 the second) take theirs
// by a permutation: one scalar scale conversion per block made the kernel compute-bound.
template <typename Block>
float row_dot_u4(const Block* wr, const __m512i* xv, const __m512i* xo, const float* xd, int64_t nb) {
  using F = U4<Block>;
  const __m512i idx[4] = {_mm512_set_epi32(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0),
                          _mm512_set_epi32(3, 3, 3, 3, 3, 3, 3, 3, 2, 2, 2, 2, 2, 2, 2, 2),
                          _mm512_set_epi32(5, 5, 5, 5, 5, 5, 5, 5, 4, 4, 4, 4, 4, 4, 4, 4),
                          _mm512_set_epi32(7, 7, 7, 7, 7, 7, 7, 7, 6, 6, 6, 6, 6, 6, 6, 6)};
  auto pair_dot = [&](const Block* w, int64_t p) {
    return _mm512_sub_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), F::unsigned_values(pair_nibbles(w)), xv[p]), xo[p]);
  };
  __m512 acc = _mm512_setzero_ps();
  int64_t b = 0;
  for (; b + 8 <= nb; b += 8) {
    const __m512 s8 = _mm512_castps256_ps512(_mm256_mul_ps(scales8(wr + b), _mm256_loadu_ps(xd + b)));
    for (int p = 0; p < 4; ++p)
      acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(pair_dot(wr + b + 2 * p, b / 2 + p)), _mm512_permutexvar_ps(idx[p], s8), acc);
  }
  for (; b + 2 <= nb; b += 2) {
    const __m512 s = _mm512_insertf32x8(_mm512_set1_ps(F::scale(wr[b]) * xd[b]), _mm256_set1_ps(F::scale(wr[b + 1]) * xd[b + 1]), 1);
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(pair_dot(wr + b, b / 2)), s, acc);
  }
  if (b < nb) {
    const __m512i u = F::unsigned_values(single_nibbles(wr + b));
    const __m512i dot = _mm512_sub_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), u, xv[b / 2]), xo[b / 2]);
    acc = _mm512_fmadd_ps(_mm512_cvtepi32_ps(dot), _mm512_set1_ps(F::scale(wr[b]) * xd[b]), acc);
  }
  return _mm512_reduce_add_ps(acc);
}

// x as Q8_0 pairs (xv), Σ offset·x per pair (xo) and each block's scale (xd), for row_dot_u4.
template <typename Block>
void prepare_u4(const float* x, int64_t K, BlockQ8_0* xq, float* xd, __m512i* xv, __m512i* xo) {
  const int64_t nb = K / kQK, np = (nb + 1) / 2;
  avx2::quantize_row(xq, DType::Q8_0, x, K);
  for (int64_t b = 0; b < nb; ++b) xd[b] = f16_to_f32(xq[b].d);
  for (int64_t p = 0; p < np; ++p) {
    xv[p] = 2 * p + 1 < nb ? pair_q8_0(&xq[2 * p]) : single_q8_0(&xq[2 * p]);
    xo[p] = _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(U4<Block>::kOffset), xv[p]);
  }
}

template <typename Block>
void matvec_u4(float* out, const float* x, const void* w, const float* bias, int64_t N, int64_t K) {
  const int64_t nb = K / kQK, np = (nb + 1) / 2;
  static thread_local std::vector<BlockQ8_0> xq;
  static thread_local std::vector<float> xd;
  static thread_local std::vector<__m512i> xv, xo;
  static thread_local PreparedActivationKey key;
  if (int64_t(xq.size()) < nb) xq.resize(size_t(nb)), xd.resize(size_t(nb)), xv.resize(size_t(np)), xo.resize(size_t(np));
  if (!activation_prepared(key, x, K)) prepare_u4<Block>(x, K, xq.data(), xd.data(), xv.data(), xo.data());
  const __m512i* const xvp = xv.data();
  const __m512i* const xop = xo.data();
  const float* const xdp = xd.data();
  parallel_rows(out, bias, N, K, [&](int64_t n) { return row_dot_u4(static_cast<const Block*>(w) + n * nb, xvp, xop, xdp, nb); });
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
