// Every kernel variant against the scalar reference on odd sizes, and the reference against
// values worked out by hand.
#include "kernels/kernels.h"
#include "kernels/quant_blocks.h"
#include "test_util.h"

#include <omp.h>

#include <cmath>
#include <climits>
#include <cstring>

namespace distill {
using test::max_abs_diff;
using test::random_vector;

class Avx2Kernels : public ::testing::Test {
protected:
  void SetUp() override {
    if (!cpu_has_avx2()) GTEST_SKIP() << "this CPU has no AVX2+FMA+F16C: AVX2 kernels not testable here";
  }
};

TEST(RefKernels, RmsnormByHand) {
  const float x[4] = {1, 2, 3, 4}, w[4] = {1, 1, 2, 0.5f};
  float y[4];
  ref::rmsnorm_forward(y, x, w, 1, 4, 0.0f);
  const float rms = std::sqrt((1 + 4 + 9 + 16) / 4.0f);
  EXPECT_NEAR(y[0], 1 / rms, 1e-6);
  EXPECT_NEAR(y[2], 3 / rms * 2, 1e-6);
  EXPECT_NEAR(y[3], 4 / rms * 0.5f, 1e-6);
}

TEST(RefKernels, RopeRotatesPairsHalfApart) {
  // head_dim 4: pairs (0, 2) and (1, 3); inv_freq {1, 0.5}; position 2 rotates by 2 and 1 rad.
  float x[4] = {1, 1, 0, 0};
  const float inv_freq[2] = {1.0f, 0.5f};
  const int32_t pos = 2;
  ref::rope_forward(x, 1, 1, 4, &pos, inv_freq);
  EXPECT_NEAR(x[0], std::cos(2.0f), 1e-6);
  EXPECT_NEAR(x[2], std::sin(2.0f), 1e-6);
  EXPECT_NEAR(x[1], std::cos(1.0f), 1e-6);
  EXPECT_NEAR(x[3], std::sin(1.0f), 1e-6);
  const int32_t zero = 0;
  float y[4] = {1, 2, 3, 4};
  ref::rope_forward(y, 1, 1, 4, &zero, inv_freq);  // position 0 is the identity
  EXPECT_EQ(y[1], 2.0f);
  EXPECT_EQ(y[3], 4.0f);
}

TEST(RefKernels, SoftmaxSwigluMatmulByHand) {
  float x[3] = {0.0f, std::log(2.0f), std::log(5.0f)};
  ref::softmax_forward(x, 1, 3);
  EXPECT_NEAR(x[0], 0.125f, 1e-6);
  EXPECT_NEAR(x[2], 0.625f, 1e-6);
  const float g[2] = {0.0f, 2.0f}, u[2] = {3.0f, 0.5f};
  float s[2];
  ref::swiglu_forward(s, g, u, 2);
  EXPECT_NEAR(s[0], 0.0f, 1e-7);
  EXPECT_NEAR(s[1], 2.0f / (1.0f + std::exp(-2.0f)) * 0.5f, 1e-6);
  // [1,2] · [[1,0],[0,1],[1,1]]^T + [0, 0, 10] = [1, 2, 13]
  const float in[2] = {1, 2}, w[6] = {1, 0, 0, 1, 1, 1}, b[3] = {0, 0, 10};
  float out[3];
  ref::matmul_forward(out, in, w, DType::F32, b, 1, 3, 2);
  EXPECT_EQ(out[0], 1.0f);
  EXPECT_EQ(out[1], 2.0f);
  EXPECT_EQ(out[2], 13.0f);
}

TEST(RefKernels, AttentionSingleKeyCopiesValue) {
  // With one visible position the softmax weight is 1: the output is that value vector.
  AttentionShape s{1, 2, 1, 2, 4, 0, 1.0f};
  const float q[4] = {1, 2, 3, 4};
  float k[8] = {0.5f, -1, 0, 0, 0, 0, 0, 0}, v[8] = {7, 8, 0, 0, 0, 0, 0, 0};
  const int32_t pos = 0, seq = 0;
  float out[4];
  ref::attention_forward(out, q, k, v, s, &pos, &seq);
  EXPECT_EQ(out[0], 7.0f);
  EXPECT_EQ(out[1], 8.0f);
  EXPECT_EQ(out[2], 7.0f);
  EXPECT_EQ(out[3], 8.0f);
}

TEST_F(Avx2Kernels, Rmsnorm) {
  for (int64_t dim : {1, 7, 8, 33, 288}) {
    const int64_t rows = 5;
    auto x = random_vector(size_t(rows * dim), 1), w = random_vector(size_t(dim), 2);
    std::vector<float> a(x.size()), b(x.size());
    ref::rmsnorm_forward(a.data(), x.data(), w.data(), rows, dim, 1e-5f);
    avx2::rmsnorm_forward(b.data(), x.data(), w.data(), rows, dim, 1e-5f);
    EXPECT_LT(max_abs_diff(a.data(), b.data(), a.size()), 1e-5f) << "dim " << dim;
  }
}

TEST_F(Avx2Kernels, Rope) {
  for (int64_t hd : {2, 6, 16, 34, 128}) {
    const int64_t T = 5, H = 3;
    auto x = random_vector(size_t(T * H * hd), 3);
    std::vector<float> inv(static_cast<size_t>(hd / 2));
    for (int64_t i = 0; i < hd / 2; ++i) inv[size_t(i)] = std::pow(10000.0f, -2.0f * float(i) / float(hd));
    const int32_t pos[T] = {0, 1, 17, 300, 4095};
    auto a = x, b = x;
    ref::rope_forward(a.data(), T, H, hd, pos, inv.data());
    avx2::rope_forward(b.data(), T, H, hd, pos, inv.data());
    EXPECT_LT(max_abs_diff(a.data(), b.data(), a.size()), 1e-5f) << "head_dim " << hd;
  }
}

TEST_F(Avx2Kernels, SoftmaxAndSwiglu) {
  for (int64_t n : {1, 7, 9, 100, 1001}) {
    auto x = random_vector(size_t(3 * n), 4, 8.0f);
    auto a = x, b = x;
    ref::softmax_forward(a.data(), 3, n);
    avx2::softmax_forward(b.data(), 3, n);
    EXPECT_LT(max_abs_diff(a.data(), b.data(), a.size()), 1e-6f) << "n " << n;
    auto g = random_vector(size_t(n), 5, 6.0f), u = random_vector(size_t(n), 6);
    std::vector<float> sa(static_cast<size_t>(n)), sb(static_cast<size_t>(n));
    ref::swiglu_forward(sa.data(), g.data(), u.data(), n);
    avx2::swiglu_forward(sb.data(), g.data(), u.data(), n);
    for (int64_t i = 0; i < n; ++i) EXPECT_NEAR(sa[size_t(i)], sb[size_t(i)], 1e-5f * (1 + std::fabs(sa[size_t(i)])));
  }
}

TEST_F(Avx2Kernels, ExpIsAccurateOverItsRange) {
  // softmax of [0, x] = [1/(1+e^x), e^x/(1+e^x)]: compares exp indirectly over [-80, 80].
  for (float xv = -80.0f; xv <= 80.0f; xv += 0.37f) {
    float a[9] = {0, xv, 0, 0, 0, 0, 0, 0, 0};
    float b[9] = {0, xv, 0, 0, 0, 0, 0, 0, 0};
    ref::softmax_forward(a, 1, 9);
    avx2::softmax_forward(b, 1, 9);
    for (int i = 0; i < 9; ++i) ASSERT_NEAR(a[i], b[i], 2e-6f * std::max(1e-30f, a[i]) + 1e-37f) << xv;
  }
}

TEST_F(Avx2Kernels, AddAndEmbedding) {
  auto x = random_vector(37, 7), y = random_vector(37, 8);
  auto a = y, b = y;
  ref::add_inplace(a.data(), x.data(), 37);
  avx2::add_inplace(b.data(), x.data(), 37);
  EXPECT_EQ(max_abs_diff(a.data(), b.data(), 37), 0.0f);
  const int64_t vocab = 11, dim = 13;
  auto table = random_vector(size_t(vocab * dim), 9);
  const int32_t ids[4] = {10, 0, 3, 3};
  for (DType dt : {DType::F32, DType::F16, DType::BF16}) {
    std::vector<uint16_t> bits(table.size());
    const void* t = table.data();
    if (dt != DType::F32) {
      convert_from_f32(bits.data(), dt, table.data(), table.size());
      t = bits.data();
    }
    std::vector<float> ea(static_cast<size_t>(4 * dim)), eb(static_cast<size_t>(4 * dim));
    ref::embedding_forward(ea.data(), ids, 4, t, dt, dim);
    avx2::embedding_forward(eb.data(), ids, 4, t, dt, dim);
    EXPECT_EQ(max_abs_diff(ea.data(), eb.data(), ea.size()), 0.0f) << dtype_name(dt);
    EXPECT_LT(max_abs_diff(ea.data(), table.data() + 10 * dim, size_t(dim)), 1e-2f);
  }
}

// Matmul: every weight dtype, odd M/N/K (tails of every loop), with and without bias; the
// AVX2 kernel and the dispatcher (OpenBLAS for f32) against the reference.
TEST_F(Avx2Kernels, MatmulAllDtypes) {
  struct Size { int64_t M, N, K; };
  for (Size sz : {Size{1, 1, 1}, Size{1, 37, 19}, Size{3, 5, 8}, Size{2, 64, 64}, Size{67, 33, 129}, Size{130, 20, 7}}) {
    auto x = random_vector(size_t(sz.M * sz.K), 10);
    auto wf = random_vector(size_t(sz.N * sz.K), 11);
    auto bias = random_vector(size_t(sz.N), 12);
    for (DType dt : {DType::F32, DType::F16, DType::BF16}) {
      std::vector<uint16_t> bits(wf.size());
      const void* w = wf.data();
      if (dt != DType::F32) {
        convert_from_f32(bits.data(), dt, wf.data(), wf.size());
        w = bits.data();
      }
      for (const float* b : {static_cast<const float*>(nullptr), static_cast<const float*>(bias.data())}) {
        std::vector<float> r(static_cast<size_t>(sz.M * sz.N)), a(r.size()), d(r.size());
        ref::matmul_forward(r.data(), x.data(), w, dt, b, sz.M, sz.N, sz.K);
        avx2::matmul_forward(a.data(), x.data(), w, dt, b, sz.M, sz.N, sz.K);
        matmul_forward(d.data(), x.data(), w, dt, b, sz.M, sz.N, sz.K);
        const float tol = 1e-5f * float(sz.K);
        EXPECT_LT(max_abs_diff(r.data(), a.data(), r.size()), tol) << dtype_name(dt) << " M" << sz.M << " N" << sz.N << " K" << sz.K;
        EXPECT_LT(max_abs_diff(r.data(), d.data(), r.size()), tol) << dtype_name(dt) << " dispatch M" << sz.M;
      }
    }
  }
}

// A KV cache's bytes holding `values` as `type` (F32, or F16 rounded once).
std::vector<uint8_t> cache_of(const std::vector<float>& values, DType type) {
  std::vector<uint8_t> bytes(dtype_bytes(type, int64_t(values.size())));
  convert_from_f32(bytes.data(), type, values.data(), values.size());
  return bytes;
}

// The values an F16 cache holds, as f32.
std::vector<float> f16_rounded(const std::vector<float>& values) {
  const std::vector<uint8_t> h = cache_of(values, DType::F16);
  std::vector<float> out(values.size());
  convert_to_f32(out.data(), h.data(), DType::F16, values.size());
  return out;
}

TEST_F(Avx2Kernels, AttentionGqaWindowsAndSlots) {
  // 2 slots, 5 tokens at assorted positions, GQA 6 query heads over 2 KV heads, odd head_dim,
  // more than one online-softmax block (positions past 64); head_dim 18 (tail only), 40 (32 in
  // registers + a tail), 64 (registers only); f32 and f16 caches (the reference on an f16 cache
  // equals the reference on its rounded values).
  const auto sinks = random_vector(6, 19, 2.0f);
  for (DType kv : {DType::F32, DType::F16})
  for (bool with_sinks : {false, true})
  for (int64_t hd : {18, 40, 64})
  for (int64_t window : {0, 3, 70}) {
    AttentionShape s{5, 6, 2, hd, 150, window, 1.0f / std::sqrt(float(hd))};
    s.kv_type = kv;
    if (with_sinks) s.sinks = sinks.data();
    auto q = random_vector(size_t(s.n_tokens * s.n_head * s.head_dim), 13);
    const size_t cache_n = size_t(2 * s.n_ctx * s.n_kv_head * s.head_dim);
    const auto kf = random_vector(cache_n, 14, 2.0f), vf = random_vector(cache_n, 15);
    const auto k = cache_of(kf, kv), v = cache_of(vf, kv);
    const int32_t pos[5] = {0, 1, 64, 65, 149}, seq[5] = {0, 1, 1, 0, 1};
    std::vector<float> a(q.size()), b(q.size());
    ref::attention_forward(a.data(), q.data(), k.data(), v.data(), s, pos, seq);
    avx2::attention_forward(b.data(), q.data(), k.data(), v.data(), s, pos, seq);
    EXPECT_LT(max_abs_diff(a.data(), b.data(), a.size()), 2e-5f)
        << dtype_name(kv) << " window " << window << " head_dim " << hd << " sinks " << with_sinks;
    if (kv == DType::F16) {
      AttentionShape s32 = s;
      s32.kv_type = DType::F32;
      const auto kr = f16_rounded(kf), vr = f16_rounded(vf);
      std::vector<float> c(q.size());
      ref::attention_forward(c.data(), q.data(), kr.data(), vr.data(), s32, pos, seq);
      EXPECT_LT(max_abs_diff(a.data(), c.data(), a.size()), 1e-6f) << "f16 cache read as its values";
    }
  }
}

// A sink by hand: one visible key with score z and a sink logit σ give the value times
// e^z / (e^z + e^σ) — the sink takes its share of the mass and adds nothing.
TEST(RefKernels, AttentionSinkByHand) {
  AttentionShape s{1, 1, 1, 2, 4, 0, 1.0f};
  const float q[2] = {1.0f, 0.5f}, k[8] = {2.0f, 2.0f}, v[8] = {3.0f, -1.0f}, sink = 1.5f;  // z = 3
  s.sinks = &sink;
  const int32_t pos = 0, seq = 0;
  float out[2];
  ref::attention_forward(out, q, k, v, s, &pos, &seq);
  const double share = std::exp(3.0) / (std::exp(3.0) + std::exp(1.5));
  EXPECT_NEAR(out[0], 3.0 * share, 1e-6);
  EXPECT_NEAR(out[1], -share, 1e-6);
}

// The dispatcher's prompt-run path (blocked products for ≥ 16 consecutive positions of a slot)
// beside the per-query kernel: a batch with two long runs in different slots (one starting past 0,
// one longer than a 64-query chunk), a short run and lone decode tokens between them, with and
// without sliding windows, against the scalar reference on every token.
TEST_F(Avx2Kernels, AttentionPromptRunsMatchReference) {
  const auto sinks = random_vector(6, 20, 2.0f);
  for (DType kv : {DType::F32, DType::F16})
  for (bool with_sinks : {false, true})
  for (int64_t window : {0, 5, 40}) {
    std::vector<int32_t> pos, seq;
    auto run = [&](int32_t slot, int32_t p0, int32_t n) {
      for (int32_t i = 0; i < n; ++i) pos.push_back(p0 + i), seq.push_back(slot);
    };
    run(1, 7, 3);     // short: per-query
    run(0, 0, 150);   // long, three chunks
    run(1, 30, 1);    // a decode token
    run(1, 10, 20);   // long, starting at 10
    run(2, 99, 1);
    const int64_t hd = 40;
    AttentionShape s{int64_t(pos.size()), 6, 2, hd, 200, window, 1.0f / std::sqrt(float(hd))};
    s.kv_type = kv;
    if (with_sinks) s.sinks = sinks.data();
    auto q = random_vector(size_t(s.n_tokens * s.n_head * s.head_dim), 16);
    const size_t cache_n = size_t(3 * s.n_ctx * s.n_kv_head * s.head_dim);
    const auto k = cache_of(random_vector(cache_n, 17, 2.0f), kv), v = cache_of(random_vector(cache_n, 18), kv);
    std::vector<float> a(q.size()), b(q.size(), -7.0f);
    ref::attention_forward(a.data(), q.data(), k.data(), v.data(), s, pos.data(), seq.data());
    attention_forward(b.data(), q.data(), k.data(), v.data(), s, pos.data(), seq.data());
    EXPECT_LT(max_abs_diff(a.data(), b.data(), a.size()), 2e-5f) << dtype_name(kv) << " window " << window << " sinks " << with_sinks;
    if (window == 0) continue;
    // A sliding layer's cache (model/kv_cache.h): each slot's rows start at the first position
    // its tokens' windows reach (first_pos), the rest of the slot unwritten. Same answers.
    std::vector<int64_t> first(3, INT64_MAX);
    for (size_t t = 0; t < pos.size(); ++t) first[size_t(seq[t])] = std::min<int64_t>(first[size_t(seq[t])], std::max<int64_t>(0, pos[t] - window + 1));
    const size_t row = dtype_bytes(kv, 2 * hd), slot = size_t(s.n_ctx) * row;
    std::vector<uint8_t> kc(k.size(), 0xff), vc(v.size(), 0xff);  // 0xffff: f16 NaN, f32 NaN
    for (size_t sl = 0; sl < 3; ++sl) {
      std::memcpy(kc.data() + sl * slot, k.data() + sl * slot + size_t(first[sl]) * row, slot - size_t(first[sl]) * row);
      std::memcpy(vc.data() + sl * slot, v.data() + sl * slot + size_t(first[sl]) * row, slot - size_t(first[sl]) * row);
    }
    AttentionShape sc = s;
    sc.first_pos = first.data();
    std::vector<float> c(q.size(), -7.0f), d(q.size(), -7.0f);
    ref::attention_forward(c.data(), q.data(), kc.data(), vc.data(), sc, pos.data(), seq.data());
    attention_forward(d.data(), q.data(), kc.data(), vc.data(), sc, pos.data(), seq.data());
    EXPECT_EQ(max_abs_diff(a.data(), c.data(), a.size()), 0.0f) << "reference, rows from first_pos";
    EXPECT_LT(max_abs_diff(a.data(), d.data(), a.size()), 2e-5f) << "rows from first_pos, window " << window;
  }
}

TEST(KernelDispatch, ForceVariant) {
  force_kernel_variant(KernelVariant::Ref);
  EXPECT_EQ(active_kernel_variant(), KernelVariant::Ref);
  force_kernel_variant(KernelVariant::Avx2);
  EXPECT_EQ(active_kernel_variant(), cpu_has_avx2() ? KernelVariant::Avx2 : KernelVariant::Ref);
  force_kernel_variant(KernelVariant::Avx512);
  EXPECT_EQ(active_kernel_variant(), cpu_has_avx512() ? KernelVariant::Avx512 : best_kernel_variant());
  EXPECT_TRUE(cpu_supports(active_kernel_variant()));
  force_kernel_variant(best_kernel_variant());
}

// The AVX-512 decode matvecs (one input row), every weight dtype they take (Q4_K, Q6_K: K of 1 and
// 3 super-blocks; MXFP4 with every kind of scale), on odd sizes (row tails,
// an odd number of blocks, fewer rows than a tile): against the AVX2 kernel, which quantizes the
// activation identically (so only the summation order differs), and against the reference.
TEST(Avx512Kernels, DecodeMatvecEveryDtype) {
  if (!cpu_has_avx512()) GTEST_SKIP() << "this CPU has no AVX-512 F/BW/VL/VNNI: AVX-512 kernels not testable here";
  for (DType t : {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q6_K, DType::MXFP4}) {
    const bool quant = dtype_is_quantized(t);
    for (int64_t K : {32, 96, 288, 800, 17, 256, 768}) {
      if (quant && K % dtype_block(t) != 0) continue;
      for (int64_t N : {1, 7, 37, 64}) {
        const auto wf = random_vector(size_t(N * K), 40 + uint64_t(K), 0.5f);
        const auto x = random_vector(size_t(K), 50 + uint64_t(N));
        const auto bias = random_vector(size_t(N), 60, 0.1f);
        std::vector<uint8_t> w(dtype_bytes(t, N * K));
        if (quant) {
          for (int64_t n = 0; n < N; ++n) ref::quantize_row(w.data() + dtype_bytes(t, K) * size_t(n), t, wf.data() + n * K, K);
          const uint8_t scales[6] = {0, 1, 2, 127, 140, 3};  // E8M0: the two subnormal powers, 2^-127.., large
          if (t == DType::MXFP4)
            for (size_t b = 0; b < w.size() / sizeof(BlockMxfp4); ++b) reinterpret_cast<BlockMxfp4*>(w.data())[b].e = scales[b % 6];
        } else if (t == DType::F32) {
          std::memcpy(w.data(), wf.data(), w.size());
        } else {
          convert_from_f32(w.data(), t, wf.data(), wf.size());
        }
        std::vector<float> want(static_cast<size_t>(N)), a2(want.size()), a5(want.size());
        ref::matmul_forward(want.data(), x.data(), w.data(), t, bias.data(), 1, N, K);
        avx2::matmul_forward(a2.data(), x.data(), w.data(), t, bias.data(), 1, N, K);
        avx512::matmul_forward(a5.data(), x.data(), w.data(), t, bias.data(), 1, N, K);
        std::vector<float> wd(wf.size());  // the weights as stored
        ref::dequantize_row(wd.data(), w.data(), t, int64_t(wd.size()));
        for (int64_t n = 0; n < N; ++n) {
          double mag = 0;  // Σ|w·x|: the scale of the sum's rounding
          for (int64_t k = 0; k < K; ++k) mag += std::fabs(double(wd[size_t(n * K + k)]) * x[size_t(k)]);
          EXPECT_NEAR(a5[size_t(n)], a2[size_t(n)], 1e-5 * mag + 1e-6) << dtype_name(t) << " K" << K << " N" << N << " n" << n;
          EXPECT_NEAR(a5[size_t(n)], want[size_t(n)], (quant ? 0.01 : 1e-5) * mag + 1e-5) << dtype_name(t) << " vs reference";
        }
      }
    }
  }
}

}  // namespace distill

namespace distill {

// The panel GEMM for f32 / f16 / bf16 weights, each compiled variant against the reference on
// sizes that exercise every tail: M not a whole tile (1..MR−1 rows left) nor a whole block of
// tiles, N not a whole panel (and fewer columns than one vector), K odd; with and without bias.
// Each output is one f32 sum in k order: within rounding of the double-precision reference.
// Then the strided forms attention uses: x, w and out inside wider rows, and w given as [K, N].
void check_gemm_f32(void (*gemm)(const GemmF32Args&), const char* name) {
  struct Size { int64_t M, N, K; };
  for (Size sz : {Size{9, 5, 3}, Size{13, 33, 17}, Size{50, 70, 64}, Size{100, 48, 129}, Size{61, 290, 40}}) {
    const auto x = random_vector(size_t(sz.M * sz.K), 70 + uint64_t(sz.M));
    const auto wf = random_vector(size_t(sz.N * sz.K), 71 + uint64_t(sz.N));
    const auto bias = random_vector(size_t(sz.N), 72);
    for (DType dt : {DType::F32, DType::F16, DType::BF16}) {
      std::vector<uint8_t> w(dtype_bytes(dt, sz.N * sz.K));
      convert_from_f32(w.data(), dt, wf.data(), wf.size());
      for (const float* b : {static_cast<const float*>(nullptr), bias.data()}) {
        std::vector<float> want(size_t(sz.M * sz.N)), got(want.size(), -7.0f);
        ref::matmul_forward(want.data(), x.data(), w.data(), dt, b, sz.M, sz.N, sz.K);
        gemm({.out = got.data(), .ldo = sz.N, .x = x.data(), .ldx = sz.K, .w = w.data(), .ldw = sz.K, .w_dtype = dt,
              .bias = b, .M = sz.M, .N = sz.N, .K = sz.K});
        // the reference in double; f32 sums of K products of values in [-1, 1]
        EXPECT_LT(max_abs_diff(want.data(), got.data(), want.size()), 2e-6f * float(sz.K) + 1e-6f)
            << name << " " << dtype_name(dt) << " M" << sz.M << " N" << sz.N << " K" << sz.K << (b ? " bias" : "");
      }
    }
    // strided: x rows of K + 3, w rows of K + 5 ([N, K]) or N + 2 ([K, N]), out rows of N + 4;
    // what lies between the rows must be neither read into the sums nor written
    const int64_t ldx = sz.K + 3, ldo = sz.N + 4;
    std::vector<float> xs(size_t(sz.M * ldx), 1e9f), out_ref(size_t(sz.M * sz.N));
    for (int64_t m = 0; m < sz.M; ++m) std::copy_n(x.begin() + m * sz.K, sz.K, xs.begin() + m * ldx);
    ref::matmul_forward(out_ref.data(), x.data(), wf.data(), DType::F32, nullptr, sz.M, sz.N, sz.K);
    for (bool kn : {false, true}) {
      const int64_t ldw = kn ? sz.N + 2 : sz.K + 5;
      std::vector<float> ws(size_t((kn ? sz.K : sz.N) * ldw), 1e9f), got(size_t(sz.M * ldo), -7.0f);
      for (int64_t n = 0; n < sz.N; ++n)
        for (int64_t k = 0; k < sz.K; ++k) ws[size_t(kn ? k * ldw + n : n * ldw + k)] = wf[size_t(n * sz.K + k)];
      gemm({.out = got.data(), .ldo = ldo, .x = xs.data(), .ldx = ldx, .w = ws.data(), .ldw = ldw, .w_kn = kn,
            .M = sz.M, .N = sz.N, .K = sz.K});
      float worst = 0.0f;
      for (int64_t m = 0; m < sz.M; ++m) {
        for (int64_t n = 0; n < sz.N; ++n)
          worst = std::max(worst, std::fabs(got[size_t(m * ldo + n)] - out_ref[size_t(m * sz.N + n)]));
        for (int64_t n = sz.N; n < ldo; ++n) EXPECT_EQ(got[size_t(m * ldo + n)], -7.0f) << name << " wrote between rows";
      }
      EXPECT_LT(worst, 2e-6f * float(sz.K) + 1e-6f) << name << (kn ? " w[K, N]" : " w[N, K]") << " strided M" << sz.M;
    }
  }
}

TEST_F(Avx2Kernels, GemmF32PanelsAgainstReference) { check_gemm_f32(avx2::gemm_f32, "avx2"); }

TEST(Avx512Kernels, GemmF32PanelsAgainstReference) {
  if (!cpu_has_avx512()) GTEST_SKIP() << "this CPU has no AVX-512 F/BW/VL/VNNI: AVX-512 kernels not testable here";
  check_gemm_f32(avx512::gemm_f32, "avx512");
}

}  // namespace distill

namespace distill {

// matvec_batch (one parallel region for several decode matvecs, each input quantized once per
// thread) gives every output bit for bit what one matmul_forward per matrix gives, on every
// variant this CPU has: mixed dtypes (a Q4_K_M layer's Q4_K q/k and Q6_K v; Q4_0, Q8_0, MXFP4,
// f32, f16), jobs sharing an input and jobs with their own (a mixture's down products), odd row
// counts so the threads' shares cut matrices mid-way, with and without bias. Then the inputs are
// rewritten in place and batched again: a quantization kept from the earlier batch would show.
TEST(KernelDispatch, MatvecBatchEqualsOneCallEach) {
  struct Spec { DType t; int64_t N; int input; bool bias; };
  const Spec specs[] = {{DType::Q4_K, 301, 0, false}, {DType::Q4_K, 77, 0, true}, {DType::Q6_K, 77, 0, false},
                        {DType::Q4_0, 513, 1, true},  {DType::Q8_0, 129, 1, false}, {DType::MXFP4, 65, 2, true},
                        {DType::F32, 97, 1, false},   {DType::F16, 33, 2, true}};
  const int64_t K = 512;
  std::vector<std::vector<uint8_t>> weights;
  for (const Spec& s : specs) {
    const auto wf = random_vector(size_t(s.N * K), 80 + uint64_t(s.N), 0.5f);
    auto& w = weights.emplace_back(dtype_bytes(s.t, s.N * K));
    if (s.t == DType::F32) std::memcpy(w.data(), wf.data(), w.size());
    else if (dtype_is_quantized(s.t))
      for (int64_t n = 0; n < s.N; ++n) ref::quantize_row(w.data() + dtype_bytes(s.t, K) * size_t(n), s.t, wf.data() + n * K, K);
    else convert_from_f32(w.data(), s.t, wf.data(), wf.size());
  }
  const auto bias = random_vector(600, 81, 0.1f);
  std::vector<std::vector<float>> inputs(3);
  omp_set_num_threads(2);  // the region splits the work (one thread would run the jobs in turn)
  for (KernelVariant v : {KernelVariant::Ref, KernelVariant::Avx2, KernelVariant::Avx512}) {
    if (!cpu_supports(v)) {
      std::printf("[ SKIPPED  ] matvec_batch on %s: this CPU does not have it\n", kernel_variant_name(v));
      continue;
    }
    force_kernel_variant(v);
    for (uint64_t round = 0; round < 2; ++round) {
      for (size_t i = 0; i < inputs.size(); ++i) {  // same buffers, new values
        const auto fresh = random_vector(size_t(K), 90 + 10 * round + i);
        inputs[i].assign(fresh.begin(), fresh.end());
      }
      std::vector<MatvecJob> jobs;
      std::vector<std::vector<float>> want, got;
      for (size_t j = 0; j < std::size(specs); ++j) {
        const Spec& s = specs[j];
        want.emplace_back(size_t(s.N));
        got.emplace_back(size_t(s.N), -7.0f);
        matmul_forward(want.back().data(), inputs[size_t(s.input)].data(), weights[j].data(), s.t, s.bias ? bias.data() : nullptr, 1, s.N, K);
      }
      for (size_t j = 0; j < std::size(specs); ++j) {
        const Spec& s = specs[j];
        jobs.push_back({got[j].data(), inputs[size_t(s.input)].data(), weights[j].data(), s.t, s.bias ? bias.data() : nullptr, s.N, K});
      }
      matvec_batch(jobs.data(), int(jobs.size()));
      for (size_t j = 0; j < std::size(specs); ++j)
        EXPECT_EQ(0, std::memcmp(want[j].data(), got[j].data(), want[j].size() * sizeof(float)))
            << kernel_variant_name(v) << " job " << j << " (" << dtype_name(specs[j].t) << ") round " << round;
    }
  }
  force_kernel_variant(best_kernel_variant());
}

}  // namespace distill
