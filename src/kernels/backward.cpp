// Backward passes of the pointwise and normalisation layers, and matmul's (OpenBLAS).
#include "core/error.h"
#include "kernels/kernels.h"

#include <cblas.h>

#include <cmath>
#include <vector>

namespace distill {

void matmul_backward(float* d_x, float* d_w, float* d_b, const float* d_y, const float* x, const float* w,
                     int64_t M, int64_t N, int64_t K, bool accumulate_dx) {
  if (d_x) {
    // d_x[M, K] = d_y[M, N] · w[N, K]
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(M), int(K), int(N), 1.0f, d_y, int(N), w, int(K),
                accumulate_dx ? 1.0f : 0.0f, d_x, int(K));
  }
  // d_w[N, K] += d_y^T[N, M] · x[M, K]
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, int(N), int(K), int(M), 1.0f, d_y, int(N), x, int(K), 1.0f,
              d_w, int(K));
  if (d_b) {
#pragma omp parallel for schedule(static) if (M * N > 65536)
    for (int64_t n = 0; n < N; ++n) {
      float s = 0.0f;
      for (int64_t m = 0; m < M; ++m) s += d_y[m * N + n];
      d_b[n] += s;
    }
  }
}

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
        local[size_t(i)] += dyr[i] * xr[i] * rstd;
        dxr[i] = rstd * dyr[i] * w[i] - c * xr[i];  // reads d_y[i] before writing d_x[i]: may alias
      }
    }
#pragma omp critical
    for (int64_t i = 0; i < dim; ++i) d_w[i] += local[size_t(i)];
  }
}


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
