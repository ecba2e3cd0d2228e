// AVX2: RMSNorm and RoPE.
#include "kernels/avx2/simd.h"
#include "core/error.h"
#include "kernels/kernels.h"
#include "kernels/parallel.h"

#include <cmath>

namespace distill::avx2 {

void rmsnorm_forward(float* out, const float* x, const float* w, int64_t n_rows, int64_t dim, float eps) {
  parallel_for(n_rows, n_rows * dim > 65536, [&](int64_t r) {
    const float* xr = x + r * dim;
    float* yr = out + r * dim;
    __m256 acc = _mm256_setzero_ps();
    int64_t i = 0;
    for (; i + 8 <= dim; i += 8) {
      const __m256 v = _mm256_loadu_ps(xr + i);
      acc = _mm256_fmadd_ps(v, v, acc);
    }
    float ss = hsum(acc);
    for (; i < dim; ++i) ss += xr[i] * xr[i];
    const float rstd = 1.0f / std::sqrt(ss / float(dim) + eps);
    const __m256 vr = _mm256_set1_ps(rstd);
    for (i = 0; i + 8 <= dim; i += 8)
      _mm256_storeu_ps(yr + i, _mm256_mul_ps(_mm256_mul_ps(_mm256_loadu_ps(xr + i), vr), _mm256_loadu_ps(w + i)));
    for (; i < dim; ++i) yr[i] = xr[i] * rstd * w[i];
  });
}

void rope_forward(float* x, int64_t n_tokens, int64_t n_head, int64_t head_dim, const int32_t* pos,
                  const float* inv_freq) {
  const int64_t half = head_dim / 2;
  DISTILL_ASSERT(half <= 512);
  parallel_for(n_tokens, n_tokens > 16, [&](int64_t t) {
    // cos/sin once per token, shared by all its heads
    alignas(32) float c[512], s[512];
    for (int64_t i = 0; i < half; ++i) {
      const float angle = float(pos[t]) * inv_freq[i];
      c[i] = std::cos(angle);
      s[i] = std::sin(angle);
    }
    for (int64_t h = 0; h < n_head; ++h) {
      float* a = x + (t * n_head + h) * head_dim;
      float* b = a + half;
      int64_t i = 0;
      for (; i + 8 <= half; i += 8) {
        const __m256 va = _mm256_loadu_ps(a + i), vb = _mm256_loadu_ps(b + i);
        const __m256 vc = _mm256_load_ps(c + i), vs = _mm256_load_ps(s + i);
        _mm256_storeu_ps(a + i, _mm256_fmsub_ps(va, vc, _mm256_mul_ps(vb, vs)));  // a cos - b sin
        _mm256_storeu_ps(b + i, _mm256_fmadd_ps(vb, vc, _mm256_mul_ps(va, vs)));  // b cos + a sin
      }
      for (; i < half; ++i) {
        const float va = a[i], vb = b[i];
        a[i] = va * c[i] - vb * s[i];
        b[i] = vb * c[i] + va * s[i];
      }
    }
  });
}

}  // namespace distill::avx2
