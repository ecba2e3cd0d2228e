// gemm_bf16's choice of kernel, its fallback, and the scope that turns training's products to bf16.
// With AVX-512 BF16: vdpbf16ps (kernels/avx512/gemm_bf16.cpp). Without: the same values — both
// operands rounded to bf16, products summed in f32 — by rounding copies and OpenBLAS's sgemm, so
// `--precision bf16` trains the same model on any CPU, up to the order of the f32 sums.
#include "core/dtype.h"
#include "kernels/kernels.h"

#include <cblas.h>

#include <vector>

namespace distill {

namespace {

thread_local bool t_bf16_matmuls = false;

// op(X) of an f32 or bf16 source, rounded to bf16 values, as a dense copy of the source's rows
// (the layout and strides stay the source's, so sgemm takes the same transpose flag).
const float* rounded_copy(std::vector<float>& dst, const void* src, DType dtype, int64_t rows, int64_t cols, int64_t ld) {
  dst.resize(size_t(rows * ld));
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) {
      const int64_t i = r * ld + c;
      const float v = dtype == DType::BF16 ? bf16_to_f32(static_cast<const uint16_t*>(src)[i]) : static_cast<const float*>(src)[i];
      dst[size_t(i)] = bf16_to_f32(f32_to_bf16(v));
    }
  return dst.data();
}

}  // namespace

void gemm_bf16(const GemmBf16Args& g) {
  if (gemm_bf16_native()) return avx512::gemm_bf16(g);
  if (g.M <= 0 || g.N <= 0) return;
  std::vector<float> a, b;
  // stored shapes: A is [M, K] (or [K, M] transposed), B is [K, N] (or [N, K])
  const float* ar = rounded_copy(a, g.a, DType::F32, g.trans_a ? g.K : g.M, g.trans_a ? g.M : g.K, g.lda);
  const float* br = rounded_copy(b, g.b, g.b_dtype, g.trans_b ? g.N : g.K, g.trans_b ? g.K : g.N, g.ldb);
  cblas_sgemm(CblasRowMajor, g.trans_a ? CblasTrans : CblasNoTrans, g.trans_b ? CblasTrans : CblasNoTrans, int(g.M),
              int(g.N), int(g.K), 1.0f, ar, int(g.lda), br, int(g.ldb), g.accumulate ? 1.0f : 0.0f, g.c, int(g.ldc));
}

Bf16MatmulScope::Bf16MatmulScope(bool on) : previous_(t_bf16_matmuls) { t_bf16_matmuls = on; }
Bf16MatmulScope::~Bf16MatmulScope() { t_bf16_matmuls = previous_; }
bool bf16_matmuls() { return t_bf16_matmuls; }
bool gemm_bf16_native() { return active_kernel_variant() == KernelVariant::Avx512 && cpu_has_avx512_bf16(); }

}  // namespace distill
