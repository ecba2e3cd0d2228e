// LoRA's low-rank branch of a linear and its backward (kernels.h). Two thin products each way,
// through the rank-r bottleneck: never the [N, K] matrix B A, whose product would cost as much as
// the frozen linear itself and its storage as much as the weight.
#include "kernels/kernels.h"

#include <cblas.h>

#include <vector>

namespace distill {

namespace {

// A [M, r] scratch of the calling thread, kept between calls (steady-state steps allocate nothing).
float* rank_scratch(std::vector<float>& v, int64_t M, int64_t r) {
  if (int64_t(v.size()) < M * r) v.resize(size_t(M * r));
  return v.data();
}

}  // namespace

void lora_forward(float* y, const float* x, const float* a, const float* b, float scale, int64_t M, int64_t N, int64_t K,
                  int64_t r) {
  static thread_local std::vector<float> u_buf;
  float* u = rank_scratch(u_buf, M, r);
  // u[M, r] = x[M, K] · Aᵀ
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(M), int(r), int(K), 1.0f, x, int(K), a, int(K), 0.0f, u, int(r));
  // y[M, N] += scale · u · Bᵀ
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(M), int(N), int(r), scale, u, int(r), b, int(r), 1.0f, y, int(N));
}

void lora_backward(float* d_x, float* d_a, float* d_b, const float* d_y, const float* x, const float* a, const float* b,
                   float scale, int64_t M, int64_t N, int64_t K, int64_t r) {
  static thread_local std::vector<float> u_buf, v_buf;
  float* u = rank_scratch(u_buf, M, r);
  float* v = rank_scratch(v_buf, M, r);
  // u = x Aᵀ again (cheaper to recompute than to keep: M·K·r), v = d_y B: the gradient at u
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(M), int(r), int(K), 1.0f, x, int(K), a, int(K), 0.0f, u, int(r));
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(M), int(r), int(N), 1.0f, d_y, int(N), b, int(r), 0.0f, v, int(r));
  // d_b[N, r] += scale · d_yᵀ[N, M] · u[M, r]
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, int(N), int(r), int(M), scale, d_y, int(N), u, int(r), 1.0f, d_b, int(r));
  // d_a[r, K] += scale · vᵀ[r, M] · x[M, K]
  cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, int(r), int(K), int(M), scale, v, int(r), x, int(K), 1.0f, d_a, int(K));
  // d_x[M, K] += scale · v[M, r] · A[r, K]
  if (d_x)
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(M), int(K), int(r), scale, v, int(r), a, int(K), 1.0f, d_x, int(K));
}

}  // namespace distill
