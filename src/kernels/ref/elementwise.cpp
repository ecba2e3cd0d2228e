// Scalar reference: softmax, swiglu, add, embedding lookup; and, side by side, the backwards of
// swiglu and the embedding.
#include "kernels/kernels.h"

#include <cmath>
#include <cstring>

namespace distill::ref {

void softmax_forward(float* x, int64_t n_rows, int64_t n_cols) {
  for (int64_t r = 0; r < n_rows; ++r) {
    float* row = x + r * n_cols;
    float max = -INFINITY;
    for (int64_t i = 0; i < n_cols; ++i) max = std::max(max, row[i]);
    double sum = 0.0;
    for (int64_t i = 0; i < n_cols; ++i) {
      row[i] = std::exp(row[i] - max);  // shift by the max: exp never overflows
      sum += row[i];
    }
    const float inv = float(1.0 / sum);
    for (int64_t i = 0; i < n_cols; ++i) row[i] *= inv;
  }
}

void swiglu_forward(float* out, const float* gate, const float* up, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = gate[i];
    out[i] = g / (1.0f + std::exp(-g)) * up[i];
  }
}

void add_inplace(float* y, const float* x, int64_t n) {
  for (int64_t i = 0; i < n; ++i) y[i] += x[i];
}

void embedding_forward(float* out, const int32_t* ids, int64_t n, const void* table, DType dtype, int64_t dim) {
  const size_t row_bytes = dtype_bytes(dtype, dim);
  for (int64_t i = 0; i < n; ++i) {
    const char* row = static_cast<const char*>(table) + size_t(ids[i]) * row_bytes;
    ref::dequantize_row(out + i * dim, row, dtype, dim);
  }
}

}  // namespace distill::ref

// Backwards of swiglu and the embedding (training; checked against finite differences).
namespace distill {

void swiglu_backward(float* d_g, float* d_u, const float* d_h, const float* g, const float* u, int64_t n) {
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t i = 0; i < n; ++i) {
    const float sig = 1.0f / (1.0f + std::exp(-g[i]));
    const float silu = g[i] * sig;
    const float dh = d_h[i];
    d_u[i] = dh * silu;
    d_g[i] = dh * u[i] * sig * (1.0f + g[i] * (1.0f - sig));  // silu'(g) = σ(g) (1 + g (1 - σ(g)))
  }
}

void embedding_backward(float* d_table, const float* d_out, const int32_t* ids, int64_t n, int64_t dim) {
  for (int64_t i = 0; i < n; ++i) {
    float* row = d_table + int64_t(ids[i]) * dim;
    const float* d = d_out + i * dim;
    for (int64_t j = 0; j < dim; ++j) row[j] += d[j];
  }
}

}  // namespace distill
