// AVX2: many activation rows against f32 / f16 / bf16 weights — the panel GEMM of
// kernels/gemm_f32_panels.h with 8-lane vectors: panels of 16 weight rows, tiles of 6 rows
// (12 ymm accumulators, two panel vectors and a broadcast: 15 of the 16 registers).
#include "kernels/gemm_f32_panels.h"

#include <immintrin.h>

namespace distill::avx2 {

namespace {

// Lane i is kept where i < n (a mask vector for maskload / maskstore).
inline __m256i first_n(int n) {
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}

struct V8 {
  static constexpr int kLanes = 8;
  using reg = __m256;
  static reg zero() { return _mm256_setzero_ps(); }
  static reg load(const float* p) { return _mm256_loadu_ps(p); }
  static reg load_n(const float* p, int n) { return _mm256_maskload_ps(p, first_n(n)); }
  static void store(float* p, reg v) { _mm256_storeu_ps(p, v); }
  static void store_n(float* p, reg v, int n) { _mm256_maskstore_ps(p, first_n(n), v); }
  static reg set1(float a) { return _mm256_set1_ps(a); }
  static reg fma(reg a, reg b, reg c) { return _mm256_fmadd_ps(a, b, c); }
};

}  // namespace

void gemm_f32(const GemmF32Args& g) { gemm_f32_panels::gemm<V8, 6>(g, dequantize_row); }

}  // namespace distill::avx2
