// AVX2 helpers shared by the AVX2 kernels: horizontal sum, exp, loads that widen f16/bf16.
// Only included from files compiled with -mavx2 -mfma -mf16c.
#pragma once

#include <immintrin.h>

#include <cstdint>

namespace distill::avx2 {

inline float hsum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

inline float hmax(__m256 v) {
  __m128 s = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_max_ps(s, _mm_movehl_ps(s, s));
  s = _mm_max_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// e^x for 8 floats, relative error ~2e-7 over the clamped range.
// x = n ln2 + r with |r| <= ln2/2, e^x = 2^n e^r; e^r by its Taylor series to degree 7
// (truncation error < 2.7e-8 there), 2^n by building the exponent bits directly.
inline __m256 exp(__m256 x) {
  x = _mm256_max_ps(_mm256_min_ps(x, _mm256_set1_ps(88.0f)), _mm256_set1_ps(-87.0f));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(1.44269504088896341f)),
                                   _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  // r = x - n ln2, with ln2 split into a high part exact in f32 and a small correction
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(0.693359375f), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(-2.12194440e-4f), r);
  __m256 p = _mm256_set1_ps(1.0f / 5040);
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 720));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 120));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 24));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f / 6));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(0.5f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(1.0f));
  // 2^n: (n + 127) << 23 is the f32 bit pattern of 2^n for n in [-126, 127]
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

// 8 weights widened to f32.
inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
struct F16 { uint16_t bits; };
struct BF16 { uint16_t bits; };
inline __m256 load8(const F16* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
inline __m256 load8(const BF16* p) {
  // bf16 is the high half of an f32: zero-extend to 32 bits and shift into place
  const __m256i w = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
  return _mm256_castsi256_ps(_mm256_slli_epi32(w, 16));
}
inline float load1(const float* p) { return *p; }
inline float load1(const F16* p) { return _cvtsh_ss(p->bits); }
inline float load1(const BF16* p) {
  const uint32_t b = uint32_t(p->bits) << 16;
  float f;
  __builtin_memcpy(&f, &b, 4);
  return f;
}

// A row of f32/f16/bf16 values widened to f32.
template <typename W>
inline void widen_row(float* out, const W* row, int64_t dim) {
  int64_t i = 0;
  for (; i + 8 <= dim; i += 8) _mm256_storeu_ps(out + i, load8(row + i));
  for (; i < dim; ++i) out[i] = load1(row + i);
}

}  // namespace distill::avx2
