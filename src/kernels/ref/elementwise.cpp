// Scalar reference: softmax, swiglu, add, embedding lookup.
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
