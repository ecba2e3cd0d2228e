// AVX2: many activation rows (prefill) against Q8_0 / Q4_0 / Q4_K / Q6_K / MXFP4 weights in int8, on the
// same repacked panels as the AVX-512 GEMM (kernels/int8_panels.h). Without VNNI, a panel step's
// products are maddubs (unsigned level × signed activation, adjacent pairs summed to int16) then
// madd by ones (pairs of those to int32): the 4-value dot per row that vpdpbusd gives in one
// instruction. The int16 stage cannot overflow for these formats' levels (≤ 63: 2·63·127 < 2¹⁵).
// Q8_0's levels (up to 255) would: its weights go back to signed (level − 128) and multiply as
// maddubs(|x|, w with x's sign) — |w|, |x| ≤ 127, so pairs stay below 2¹⁵ and no centre term is
// left to subtract. A 256-bit register holds 8 of a panel's 16 rows, so a tile is 4 activation
// rows × 8 weight rows, each half of the panel in turn.
#include "kernels/int8_panels.h"

namespace distill::avx2 {

namespace {

using namespace int8_panels;

constexpr int kMR = 4;  // activation rows per tile

// The unsigned levels of step s (0..7) of block b for panel rows 8h .. 8h+7.
template <Fmt F>
inline __m256i step_levels(const uint8_t* q, int64_t b, int s, int h) {
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  auto load = [](const uint8_t* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); };
  if constexpr (F == Fmt::Q4_0) {
    const __m256i v = load(q + b * (kBlockBytes / 2) + (s & 3) * kStepBytes + 32 * h);
    return s < 4 ? _mm256_and_si256(v, low4) : _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
  } else if constexpr (F == Fmt::Q4_K) {
    const __m256i v = load(q + (b >> 1) * kBlockBytes + s * kStepBytes + 32 * h);
    return (b & 1) == 0 ? _mm256_and_si256(v, low4) : _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
  } else {
    return load(q + b * kBlockBytes + s * kStepBytes + 32 * h);
  }
}

// Per row of the 8: Σ of 4 level·activation products, the activation's 4 values broadcast
// (Q8_0: signed weights, see above).
template <Fmt F>
inline __m256i dot4(__m256i levels, const BlockQ8_0& xb, int s) {
  int32_t v;
  std::memcpy(&v, xb.qs + 4 * s, 4);
  const __m256i x4 = _mm256_set1_epi32(v);
  if constexpr (F == Fmt::Q8_0) {
    const __m256i w = _mm256_xor_si256(levels, _mm256_set1_epi8(char(0x80)));  // level − 128
    return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_abs_epi8(x4), _mm256_sign_epi8(w, x4)), _mm256_set1_epi16(1));
  }
  return _mm256_madd_epi16(_mm256_maddubs_epi16(levels, x4), _mm256_set1_epi16(1));
}

// out rows m0 .. m0+MR−1, columns n0 .. n0+ncols−1 (ncols ≤ 16).
template <Fmt F, int MR>
void tile(float* out, int64_t ldo, const Panel& p, const Activation& a, int64_t m0, int64_t n0, int ncols, const float* bias) {
  constexpr bool kHalf = has_half_scales(F);
  for (int h = 0; h < 2 && 8 * h < ncols; ++h) {
    __m256 acc[MR];
    for (int i = 0; i < MR; ++i) acc[i] = _mm256_setzero_ps();
    for (int64_t b = 0; b < a.nb; ++b) {
      __m256i lo[MR], hi[MR];  // int32 sums over steps 0..3 and 4..7 (one sum unless kHalf)
      for (int i = 0; i < MR; ++i) lo[i] = _mm256_setzero_si256(), hi[i] = _mm256_setzero_si256();
      for (int s = 0; s < 8; ++s) {
        const __m256i u = step_levels<F>(p.q, b, s, h);
        for (int i = 0; i < MR; ++i) {
          __m256i& sum = kHalf && s >= 4 ? hi[i] : lo[i];
          sum = _mm256_add_epi32(sum, dot4<F>(u, a.q[(m0 + i) * a.nb + b], s));
        }
      }
      for (int i = 0; i < MR; ++i) {
        const int64_t mb = (m0 + i) * a.nb + b;
        const __m256 dx = _mm256_set1_ps(a.d[mb]);
        if constexpr (kHalf) {
          const __m256 s_lo = _mm256_loadu_ps(p.scale + b * 2 * kNR + 8 * h), s_hi = _mm256_loadu_ps(p.scale + b * 2 * kNR + kNR + 8 * h);
          const __m256 v_lo = _mm256_cvtepi32_ps(_mm256_sub_epi32(lo[i], _mm256_set1_epi32(a.csum[2 * mb])));
          const __m256 v_hi = _mm256_cvtepi32_ps(_mm256_sub_epi32(hi[i], _mm256_set1_epi32(a.csum[2 * mb + 1])));
          acc[i] = _mm256_fmadd_ps(_mm256_fmadd_ps(v_lo, s_lo, _mm256_mul_ps(v_hi, s_hi)), dx, acc[i]);
        } else {
          __m256i v = lo[i];
          if constexpr (centre(F) != 0 && F != Fmt::Q8_0) v = _mm256_sub_epi32(v, _mm256_set1_epi32(a.csum[mb]));
          acc[i] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(v), _mm256_mul_ps(_mm256_loadu_ps(p.scale + b * kNR + 8 * h), dx), acc[i]);
          if constexpr (has_offset(F))
            acc[i] = _mm256_fmadd_ps(_mm256_loadu_ps(p.offset + b * kNR + 8 * h), _mm256_set1_ps(a.dsum[mb]), acc[i]);
        }
      }
    }
    const int nc = std::min(8, ncols - 8 * h);
    for (int i = 0; i < MR; ++i) {
      alignas(32) float v[8];
      _mm256_store_ps(v, acc[i]);
      float* o = out + (m0 + i) * ldo + n0 + 8 * h;
      for (int c = 0; c < nc; ++c) o[c] = v[c] + (bias ? bias[n0 + 8 * h + c] : 0.0f);
    }
  }
}

template <Fmt F>
void gemm(float* out, const float* x, const void* w, const float* bias, int64_t M, int64_t N, int64_t K) {
  const Activation a = prepare_activation(x, F, M, K);
  for_each_panel<F>(w, nullptr, M, N, K, [&](const Panel& p, int64_t n0, int nr) {
    int64_t m0 = 0;
    for (; m0 + kMR <= M; m0 += kMR) tile<F, kMR>(out, N, p, a, m0, n0, nr, bias);
    for (; m0 < M; ++m0) tile<F, 1>(out, N, p, a, m0, n0, nr, bias);
  });
}

}  // namespace

bool gemm_int8_supports(DType t) {
  return t == DType::Q8_0 || t == DType::Q4_0 || t == DType::Q4_K || t == DType::Q6_K || t == DType::MXFP4;
}

void gemm_int8(float* out, const float* x, const void* w, DType w_dtype, const float* bias, int64_t M, int64_t N, int64_t K) {
  switch (w_dtype) {
    case DType::Q8_0: return gemm<Fmt::Q8_0>(out, x, w, bias, M, N, K);
    case DType::Q4_0: return gemm<Fmt::Q4_0>(out, x, w, bias, M, N, K);
    case DType::Q4_K: return gemm<Fmt::Q4_K>(out, x, w, bias, M, N, K);
    case DType::Q6_K: return gemm<Fmt::Q6_K>(out, x, w, bias, M, N, K);
    case DType::MXFP4: return gemm<Fmt::MXFP4>(out, x, w, bias, M, N, K);
    default: return avx2::matmul_forward(out, x, w, w_dtype, bias, M, N, K);
  }
}

}  // namespace distill::avx2
