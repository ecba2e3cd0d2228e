// AVX2: softmax, swiglu, add, embedding lookup.
#include "kernels/avx2/simd.h"
#include "kernels/kernels.h"
#include "kernels/parallel.h"

#include <cmath>

namespace distill::avx2 {

void softmax_forward(float* x, int64_t n_rows, int64_t n_cols) {
  parallel_for(n_rows, n_rows * n_cols > 32768, [&](int64_t r) {
    float* row = x + r * n_cols;
    int64_t i = 0;
    __m256 vmax = _mm256_set1_ps(-INFINITY);
    for (; i + 8 <= n_cols; i += 8) vmax = _mm256_max_ps(vmax, _mm256_loadu_ps(row + i));
    float max = hmax(vmax);
    for (; i < n_cols; ++i) max = std::max(max, row[i]);
    const __m256 m = _mm256_set1_ps(max);
    __m256 vsum = _mm256_setzero_ps();
    for (i = 0; i + 8 <= n_cols; i += 8) {
      const __m256 e = exp(_mm256_sub_ps(_mm256_loadu_ps(row + i), m));
      _mm256_storeu_ps(row + i, e);
      vsum = _mm256_add_ps(vsum, e);
    }
    float sum = hsum(vsum);
    for (; i < n_cols; ++i) {
      row[i] = std::exp(row[i] - max);
      sum += row[i];
    }
    const __m256 inv = _mm256_set1_ps(1.0f / sum);
    for (i = 0; i + 8 <= n_cols; i += 8) _mm256_storeu_ps(row + i, _mm256_mul_ps(_mm256_loadu_ps(row + i), inv));
    for (; i < n_cols; ++i) row[i] *= 1.0f / sum;
  });
}

void swiglu_forward(float* out, const float* gate, const float* up, int64_t n) {
  const int64_t n8 = n / 8 * 8;
  parallel_for(n8 / 8, n > 65536, [&](int64_t j) {
    const int64_t i = j * 8;
    const __m256 g = _mm256_loadu_ps(gate + i);
    // silu(g) = g / (1 + e^-g)
    const __m256 e = exp(_mm256_sub_ps(_mm256_setzero_ps(), g));
    const __m256 s = _mm256_div_ps(g, _mm256_add_ps(_mm256_set1_ps(1.0f), e));
    _mm256_storeu_ps(out + i, _mm256_mul_ps(s, _mm256_loadu_ps(up + i)));
  });
  for (int64_t i = n8; i < n; ++i) out[i] = gate[i] / (1.0f + std::exp(-gate[i])) * up[i];
}

void add_inplace(float* y, const float* x, int64_t n) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(y + i, _mm256_add_ps(_mm256_loadu_ps(y + i), _mm256_loadu_ps(x + i)));
  for (; i < n; ++i) y[i] += x[i];
}

void embedding_forward(float* out, const int32_t* ids, int64_t n, const void* table, DType dtype, int64_t dim) {
  for (int64_t i = 0; i < n; ++i) {
    const size_t offset = size_t(ids[i]) * size_t(dim);
    switch (dtype) {
      case DType::F16: widen_row(out + i * dim, static_cast<const F16*>(table) + offset, dim); break;
      case DType::BF16: widen_row(out + i * dim, static_cast<const BF16*>(table) + offset, dim); break;
      case DType::F32: widen_row(out + i * dim, static_cast<const float*>(table) + offset, dim); break;
      default:  // block-quantized: a row is a few hundred bytes, the scalar code is fast enough
        ref::dequantize_row(out + i * dim, static_cast<const char*>(table) + dtype_bytes(dtype, dim) * size_t(ids[i]), dtype, dim);
        break;
    }
  }
}

}  // namespace distill::avx2
