// Scalar reference: RMSNorm and RoPE.
#include "kernels/kernels.h"

#include <cmath>

namespace distill::ref {

void rmsnorm_forward(float* out, const float* x, const float* w, int64_t n_rows, int64_t dim, float eps) {
  for (int64_t r = 0; r < n_rows; ++r) {
    const float* xr = x + r * dim;
    float* yr = out + r * dim;
    double ss = 0.0;
    for (int64_t i = 0; i < dim; ++i) ss += double(xr[i]) * xr[i];
    const float rstd = float(1.0 / std::sqrt(ss / double(dim) + eps));
    for (int64_t i = 0; i < dim; ++i) yr[i] = xr[i] * rstd * w[i];
  }
}

void rope_forward(float* x, int64_t n_tokens, int64_t n_head, int64_t head_dim, const int32_t* pos,
                  const float* inv_freq) {
  const int64_t half = head_dim / 2;
  for (int64_t t = 0; t < n_tokens; ++t) {
    for (int64_t i = 0; i < half; ++i) {
      const float angle = float(pos[t]) * inv_freq[i];
      const float c = std::cos(angle), s = std::sin(angle);
      for (int64_t h = 0; h < n_head; ++h) {
        float* v = x + (t * n_head + h) * head_dim;
        const float a = v[i], b = v[i + half];
        // rotate_half: (a, b) -> (a cos - b sin, b cos + a sin)
        v[i] = a * c - b * s;
        v[i + half] = b * c + a * s;
      }
    }
  }
}

}  // namespace distill::ref
