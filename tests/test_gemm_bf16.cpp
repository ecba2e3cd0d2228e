// gemm_bf16 (training's --precision bf16 products) on every variant the CPU has, against a plain
// reference: both operands rounded to bf16, products summed in double.
#include "core/dtype.h"
#include "kernels/kernels.h"
#include "test_util.h"

#include <gtest/gtest.h>

#include <omp.h>

#include <cmath>
#include <cstdio>
#include <vector>

namespace distill {
namespace {

float round_bf16(float v) { return bf16_to_f32(f32_to_bf16(v)); }

struct Case {
  int64_t M, N, K;
  bool trans_a, trans_b, bf16_b, accumulate;
};

// Runs one case with the active variant and checks every element against the reference, within
// the f32 summation's rounding: 4·K·2⁻²⁴ of Σ|a·b| (plus what c held).
void check(const Case& t, const char* variant) {
  const int64_t lda = (t.trans_a ? t.M : t.K) + 3, ldb = (t.trans_b ? t.K : t.N) + 5, ldc = t.N + 2;
  const auto a = test::random_vector(size_t((t.trans_a ? t.K : t.M) * lda), 11 + uint64_t(t.M));
  const auto bf = test::random_vector(size_t((t.trans_b ? t.N : t.K) * ldb), 12 + uint64_t(t.N));
  std::vector<uint16_t> bh(bf.size());
  for (size_t i = 0; i < bf.size(); ++i) bh[i] = f32_to_bf16(bf[i]);
  auto c = test::random_vector(size_t(t.M * ldc), 13);
  const std::vector<float> c0 = c;
  const auto A = [&](int64_t m, int64_t k) { return round_bf16(a[size_t(t.trans_a ? k * lda + m : m * lda + k)]); };
  const auto B = [&](int64_t k, int64_t n) {
    const size_t i = size_t(t.trans_b ? n * ldb + k : k * ldb + n);
    return t.bf16_b ? bf16_to_f32(bh[i]) : round_bf16(bf[i]);
  };
  gemm_bf16({.c = c.data(), .ldc = ldc, .a = a.data(), .lda = lda, .trans_a = t.trans_a,
             .b = t.bf16_b ? static_cast<const void*>(bh.data()) : bf.data(), .ldb = ldb, .trans_b = t.trans_b,
             .b_dtype = t.bf16_b ? DType::BF16 : DType::F32, .M = t.M, .N = t.N, .K = t.K, .accumulate = t.accumulate});
  int bad = 0;
  for (int64_t m = 0; m < t.M; ++m) {
    for (int64_t n = 0; n < t.N; ++n) {
      double want = t.accumulate ? c0[size_t(m * ldc + n)] : 0.0, mag = std::fabs(want);
      for (int64_t k = 0; k < t.K; ++k) want += double(A(m, k)) * B(k, n), mag += std::fabs(double(A(m, k)) * B(k, n));
      const double got = c[size_t(m * ldc + n)];
      if (std::fabs(got - want) > 4.0 * double(t.K + 1) * 0x1p-24 * mag + 1e-30 && bad++ < 5)
        ADD_FAILURE() << variant << " M " << t.M << " N " << t.N << " K " << t.K << " trans " << t.trans_a << t.trans_b
                      << " bf16 B " << t.bf16_b << ": c[" << m << "][" << n << "] = " << got << ", want " << want;
    }
    // the row's padding past N is not written
    for (int64_t n = t.N; n < ldc; ++n) EXPECT_EQ(c[size_t(m * ldc + n)], c0[size_t(m * ldc + n)]);
  }
}

const Case kCases[] = {
    {1, 1, 1, false, true, false, false},    {13, 37, 19, false, true, false, false},  // odd everything
    {12, 32, 600, false, true, true, true},  {50, 70, 515, false, false, false, true},  // k blocks, a tail pair
    {29, 45, 33, true, false, false, true},  {7, 100, 64, true, true, true, false},
    {130, 96, 72, false, false, true, false},
};

void check_all(const char* variant) {
  for (int threads : {1, 2}) {
    omp_set_num_threads(threads);
    for (const Case& t : kCases) check(t, variant);
  }
}

TEST(GemmBf16, Avx512Bf16AgainstTheReference) {
  if (!cpu_has_avx512_bf16()) GTEST_SKIP() << "this CPU has no AVX512_BF16: vdpbf16ps not testable here";
  force_kernel_variant(KernelVariant::Avx512);
  check_all("avx512-bf16");
  force_kernel_variant(best_kernel_variant());
}

TEST(GemmBf16, RoundedCopiesThroughSgemmAgainstTheReference) {
  force_kernel_variant(KernelVariant::Ref);  // (the fallback every CPU without AVX512_BF16 runs)
  check_all("fallback");
  force_kernel_variant(best_kernel_variant());
}

// Both operands are rounded to nearest even before they multiply: 1 + 2⁻⁸ lies halfway between
// bf16's 1 and 1 + 2⁻⁷ and rounds to 1 (even); 1 + 3·2⁻⁸ rounds up to 1 + 2⁻⁶.
TEST(GemmBf16, RoundsBothOperandsToNearestEven) {
  for (KernelVariant v : {KernelVariant::Ref, KernelVariant::Avx512}) {
    if (v == KernelVariant::Avx512 && !cpu_has_avx512_bf16()) continue;
    force_kernel_variant(v);
    const float a[2] = {1.0f + 0x1p-8f, 1.0f + 3 * 0x1p-8f}, b[2] = {3.0f, 1.0f + 0x1p-8f};
    float c = -1.0f;
    gemm_bf16({.c = &c, .ldc = 1, .a = a, .lda = 2, .b = b, .ldb = 1, .M = 1, .N = 1, .K = 2});
    EXPECT_EQ(c, 3.0f * 1.0f + (1.0f + 0x1p-6f) * 1.0f) << kernel_variant_name(v);
  }
  force_kernel_variant(best_kernel_variant());
}

// Under the scope, matmul_forward and matmul_backward of f32 weights give gemm_bf16's values;
// outside it, f32 products (which differ from them by far more than rounding of the sums).
TEST(GemmBf16, TheScopeTurnsTrainingMatmulsToBf16) {
  const int64_t M = 24, N = 40, K = 56;
  const auto x = test::random_vector(size_t(M * K), 1), w = test::random_vector(size_t(N * K), 2);
  const auto bias = test::random_vector(size_t(N), 3), dy = test::random_vector(size_t(M * N), 4);
  std::vector<float> want(size_t(M * N)), got(size_t(M * N)), plain(size_t(M * N));
  for (int64_t m = 0; m < M; ++m) std::copy(bias.begin(), bias.end(), want.begin() + m * N);
  gemm_bf16({.c = want.data(), .ldc = N, .a = x.data(), .lda = K, .b = w.data(), .ldb = K, .trans_b = true, .M = M, .N = N,
             .K = K, .accumulate = true});
  matmul_forward(plain.data(), x.data(), w.data(), DType::F32, bias.data(), M, N, K);
  std::vector<float> dx(size_t(M * K)), dw(size_t(N * K), 0.5f), dx_want(size_t(M * K)), dw_want(size_t(N * K), 0.5f);
  {
    const Bf16MatmulScope bf16(true);
    EXPECT_TRUE(bf16_matmuls());
    matmul_forward(got.data(), x.data(), w.data(), DType::F32, bias.data(), M, N, K);
    matmul_backward(dx.data(), dw.data(), nullptr, dy.data(), x.data(), w.data(), DType::F32, M, N, K, false);
  }
  EXPECT_FALSE(bf16_matmuls());
  gemm_bf16({.c = dx_want.data(), .ldc = K, .a = dy.data(), .lda = N, .b = w.data(), .ldb = K, .M = M, .N = K, .K = N});
  gemm_bf16({.c = dw_want.data(), .ldc = K, .a = dy.data(), .lda = N, .trans_a = true, .b = x.data(), .ldb = K, .M = N,
             .N = K, .K = M, .accumulate = true});
  double max_vs_f32 = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    EXPECT_EQ(got[i], want[i]) << i;
    max_vs_f32 = std::max(max_vs_f32, std::fabs(double(plain[i]) - want[i]));
  }
  EXPECT_GT(max_vs_f32, 1e-3);  // bf16 operands (8 bits of mantissa) move sums of 56 products visibly
  for (size_t i = 0; i < dx.size(); ++i) EXPECT_EQ(dx[i], dx_want[i]) << i;
  for (size_t i = 0; i < dw.size(); ++i) EXPECT_EQ(dw[i], dw_want[i]) << i;
}

}  // namespace
}  // namespace distill
