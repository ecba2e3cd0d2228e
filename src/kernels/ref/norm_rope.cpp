// Scalar reference: RMSNorm and RoPE; and, side by side, the backward of RMSNorm.
#include "kernels/kernels.h"

#include <cmath>
#include <vector>

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

// Backward of rmsnorm (training; one OpenMP implementation, checked against finite differences).
// RoPE needs none: its backward is rope_forward at negated positions.
namespace distill {

void rmsnorm_backward(float* d_x, float* d_w, const float* d_y, const float* x, const float* w, int64_t n_rows,
                      int64_t dim, float eps) {
  // y = x r w with r = (mean(x²) + eps)^-1/2.
  // d_x = r (d_y w) - x r³ / dim · Σ (d_y w x);  d_w += d_y x r
  // d_w is reduced per thread first so rows can run in parallel; the per-thread buffer is kept
  // between calls, so steady-state training allocates nothing here.
#pragma omp parallel if (n_rows * dim > 65536)
  {
    static thread_local std::vector<float> local;
    local.assign(size_t(dim), 0.0f);
#pragma omp for schedule(static)
    for (int64_t r = 0; r < n_rows; ++r) {
      const float* xr = x + r * dim;
      const float* dyr = d_y + r * dim;
      float* dxr = d_x + r * dim;
      double ss = 0.0, dot = 0.0;
      for (int64_t i = 0; i < dim; ++i) {
        ss += double(xr[i]) * xr[i];
        dot += double(dyr[i]) * w[i] * xr[i];
      }
      const float rstd = float(1.0 / std::sqrt(ss / double(dim) + eps));
      const float c = float(dot) * rstd * rstd * rstd / float(dim);
      for (int64_t i = 0; i < dim; ++i) {
        if (d_w) local[size_t(i)] += dyr[i] * xr[i] * rstd;
        dxr[i] = rstd * dyr[i] * w[i] - c * xr[i];  // reads d_y[i] before writing d_x[i]: may alias
      }
    }
    if (d_w) {
#pragma omp critical
      for (int64_t i = 0; i < dim; ++i) d_w[i] += local[size_t(i)];
    }
  }
}

}  // namespace distill
