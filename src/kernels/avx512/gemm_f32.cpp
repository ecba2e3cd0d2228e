// AVX-512: many activation rows against f32 / f16 / bf16 weights — the panel GEMM of
// kernels/gemm_f32_panels.h with 16-lane vectors: panels of 32 weight rows, tiles of 12 rows
// (24 zmm accumulators, two panel vectors and a broadcast: 27 of the 32 registers).
#include "kernels/gemm_f32_panels.h"

#include <immintrin.h>

namespace distill::avx512 {

namespace {

struct V16 {
  static constexpr int kLanes = 16;
  using reg = __m512;
  static reg zero() { return _mm512_setzero_ps(); }
  static reg load(const float* p) { return _mm512_loadu_ps(p); }
  static reg load_n(const float* p, int n) { return _mm512_maskz_loadu_ps(__mmask16((1u << n) - 1), p); }
  static void store(float* p, reg v) { _mm512_storeu_ps(p, v); }
  static void store_n(float* p, reg v, int n) { _mm512_mask_storeu_ps(p, __mmask16((1u << n) - 1), v); }
  static reg set1(float a) { return _mm512_set1_ps(a); }
  static reg fma(reg a, reg b, reg c) { return _mm512_fmadd_ps(a, b, c); }
};

}  // namespace

void gemm_f32(const GemmF32Args& g) { gemm_f32_panels::gemm<V16, 12>(g, avx2::dequantize_row); }

}  // namespace distill::avx512
