// Scalar reference: out = x · w^T + bias for f32/f16/bf16 and block-quantized weights.
#include "kernels/kernels.h"

#include <vector>

namespace distill::ref {

void matmul_forward(float* out, const float* x, const void* w, DType w_dtype, const float* bias,
                    int64_t M, int64_t N, int64_t K) {
  const size_t row_bytes = dtype_bytes(w_dtype, K);
  std::vector<float> wrow(static_cast<size_t>(K));
  for (int64_t n = 0; n < N; ++n) {
    ref::dequantize_row(wrow.data(), static_cast<const char*>(w) + size_t(n) * row_bytes, w_dtype, K);
    for (int64_t m = 0; m < M; ++m) {
      const float* xm = x + m * K;
      double acc = 0.0;  // double: the reference should be the most accurate, not the fastest
      for (int64_t k = 0; k < K; ++k) acc += double(xm[k]) * wrow[k];
      out[m * N + n] = float(acc) + (bias ? bias[n] : 0.0f);
    }
  }
}

}  // namespace distill::ref
