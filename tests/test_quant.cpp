// GGUF block formats: quantize -> dequantize within each format's error bound, ggml's exact
// rounding for Q8_0 / Q4_0 on hand-computed blocks, and every quantized matmul variant (AVX2 with
// on-the-fly Q8_0 activations; K-quants through dequantized rows) against the scalar reference
// (dequantize, then multiply in double) on odd sizes; quantized embedding rows.
#include "kernels/kernels.h"
#include "kernels/quant_blocks.h"
#include "kernels/ref/kquant.h"
#include "test_util.h"

#include <cmath>
#include <cstring>

namespace distill {

using test::random_vector;

namespace {

std::vector<uint8_t> quantized(DType t, const std::vector<float>& x) {
  std::vector<uint8_t> q(dtype_bytes(t, int64_t(x.size())));
  ref::quantize_row(q.data(), t, x.data(), int64_t(x.size()));
  return q;
}

const DType kAll[] = {DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::MXFP4};

}  // namespace

TEST(Quant, Q8_0AndQ4_0RoundLikeGgml) {
  std::vector<float> x(32);
  for (int j = 0; j < 32; ++j) x[size_t(j)] = float(j) / 10.0f;  // max 3.1
  const auto q8 = quantized(DType::Q8_0, x);
  const auto* b8 = reinterpret_cast<const BlockQ8_0*>(q8.data());
  EXPECT_EQ(b8->d, f32_to_f16(3.1f / 127.0f));
  EXPECT_EQ(b8->qs[0], 0);
  EXPECT_EQ(b8->qs[31], 127);
  EXPECT_EQ(b8->qs[5], int(std::lround(0.5f / (3.1f / 127.0f))));  // 20.48 -> 20
  // Q4_0: the value of largest magnitude (−2) becomes level 0 with d = −2 / −8 = 0.25
  for (int j = 0; j < 32; ++j) x[size_t(j)] = 0.0f;
  x[3] = -2.0f, x[4] = 1.0f, x[20] = 0.3f, x[21] = 2.0f;
  const auto q4 = quantized(DType::Q4_0, x);
  const auto* b4 = reinterpret_cast<const BlockQ4_0*>(q4.data());
  EXPECT_EQ(f16_to_f32(b4->d), 0.25f);
  EXPECT_EQ(b4->qs[3] & 0xF, 0);    // −2 → −8 + 8.5 → 0
  EXPECT_EQ(b4->qs[4] & 0xF, 12);   // 1 → 4 + 8.5 → 12
  EXPECT_EQ(b4->qs[4] >> 4, 9);     // x[20] = 0.3 → 1.2 + 8.5 → 9
  EXPECT_EQ(b4->qs[5] >> 4, 15);    // x[21] = 2 → 8 + 8.5 = 16.5 → clamped to 15
  EXPECT_EQ(b4->qs[0], 8 | (8 << 4));  // zeros sit at level 8
}

// MXFP4 by hand against the OCP definition: E2M1 codes (sign bit 3; magnitudes 0, 0.5, 1, 1.5, 2,
// 3, 4, 6), an E8M0 scale 2^(e − 127) (the two smallest e give subnormal f32 scales), and ggml's
// block layout: byte j holds value j (low nibble) and value j + 16 (high nibble).
TEST(Quant, Mxfp4ByHand) {
  const float e2m1[16] = {0, 0.5f, 1, 1.5f, 2, 3, 4, 6, -0.0f, -0.5f, -1, -1.5f, -2, -3, -4, -6};
  for (int e : {127, 130, 100, 1, 0, 200}) {
    BlockMxfp4 b{};
    b.e = uint8_t(e);
    for (int j = 0; j < 16; ++j) b.qs[j] = uint8_t(j | ((15 - j) << 4));  // value j: code j; value j+16: code 15-j
    float y[32];
    ref::dequantize_row(y, &b, DType::MXFP4, 32);
    const double scale = std::ldexp(1.0, e - 127);
    for (int j = 0; j < 16; ++j) {
      EXPECT_EQ(double(y[j]), double(e2m1[j]) * scale) << "e " << e << " value " << j;
      EXPECT_EQ(double(y[j + 16]), double(e2m1[15 - j]) * scale) << "e " << e << " value " << j + 16;
    }
  }
  // values on the grid come back exactly; the scale follows the largest magnitude
  float x[32];
  for (int j = 0; j < 32; ++j) x[j] = e2m1[j % 16] * 0.25f;  // amax 1.5 -> e = floor(log2 1.5) − 2 + 127 = 125
  BlockMxfp4 q{};
  ref::quantize_row(&q, DType::MXFP4, x, 32);
  EXPECT_EQ(q.e, 125);
  float y[32];
  ref::dequantize_row(y, &q, DType::MXFP4, 32);
  for (int j = 0; j < 32; ++j) EXPECT_EQ(y[j], x[j]) << j;
  x[3] = 7.9f * 0.25f;  // past 6·s: clamps to the largest code
  ref::quantize_row(&q, DType::MXFP4, x, 32);
  ref::dequantize_row(y, &q, DType::MXFP4, 32);
  EXPECT_EQ(y[3], 6.0f * 0.25f);
}

TEST(Quant, DequantizeErrorWithinEachFormatsBound) {
  const int64_t n = 1024;
  const std::vector<float> x = random_vector(size_t(n), 3, 1.0f);
  for (DType t : kAll) {
    std::vector<float> y(static_cast<size_t>(n));
    const auto q = quantized(t, x);
    ref::dequantize_row(y.data(), q.data(), t, n);
    const int64_t bs = t == DType::Q6_K ? 16 : 32;  // judge over the reach of one scale
    for (int64_t b = 0; b < n / bs; ++b) {
      float amax = 0, lo = 0, hi = 0;
      for (int64_t j = b * bs; j < (b + 1) * bs; ++j) amax = std::max(amax, std::fabs(x[size_t(j)])), lo = std::min(lo, x[size_t(j)]), hi = std::max(hi, x[size_t(j)]);
      // Half a quantization step, plus slack for the f16 / 6-bit scale rounding.
      float bound = 0;
      switch (t) {
        case DType::Q8_0: bound = 0.5f * amax / 127.0f * 1.13f + 1e-6f; break;  // d in f16: + 127 · d · 2^-11
        case DType::Q4_0: bound = amax / 8.0f * 1.01f + 1e-6f; break;  // levels −8..7: the far end clamps by a step
        // K-quants: half a step of the sub-block's range, plus as much again for the 6-bit
        // (8-bit for Q6_K) rounding of its scale and min against the super-block's
        case DType::Q4_K: bound = (std::max(hi, 0.0f) - std::min(lo, 0.0f)) / 15.0f; break;
        case DType::Q5_K: bound = (std::max(hi, 0.0f) - std::min(lo, 0.0f)) / 31.0f; break;
        case DType::Q6_K: bound = amax / 31.0f; break;
        // E2M1 with a power-of-two scale s ≤ amax / 4: steps up to 2s near the top, and values in
        // (6s, 8s) clamp to 6s
        case DType::MXFP4: bound = amax / 2.0f * 1.0001f; break;
        default: break;
      }
      for (int64_t j = b * bs; j < (b + 1) * bs; ++j)
        ASSERT_LE(std::fabs(y[size_t(j)] - x[size_t(j)]), bound) << dtype_name(t) << " element " << j;
    }
    double err = 0, ref = 0;
    for (int64_t j = 0; j < n; ++j) err += std::pow(y[size_t(j)] - x[size_t(j)], 2), ref += std::pow(x[size_t(j)], 2);
    const double rel = std::sqrt(err / ref);
    const double max_rel = t == DType::Q8_0 ? 0.01 : t == DType::Q6_K ? 0.03 : t == DType::Q5_K ? 0.05 : t == DType::MXFP4 ? 0.2 : 0.12;
    EXPECT_LT(rel, max_rel) << dtype_name(t);
  }
}

// The K-quant writers' scale search against min/max sub-block fits (Q4_K, Q5_K; through the
// same 6-bit encoding) or the max-magnitude scales (Q6_K), on Gaussian and heavy-tailed values: lower squared error, plain and weighted by
// |x|, over 64 super-blocks.
TEST(Quant, KQuantSearchBeatsMinMaxScales) {
  const int64_t n = 64 * kQKK;
  std::vector<float> gauss = random_vector(size_t(n), 5, 1.0f), heavy = random_vector(size_t(n), 6, 1.0f);
  for (float& v : heavy) v = v * v * v;  // cubes: kurtosis far above a Gaussian's, as trained weights have
  auto errors = [](const std::vector<float>& x, const std::vector<float>& y) {
    double plain = 0, weighted = 0;
    for (size_t i = 0; i < x.size(); ++i) plain += std::pow(y[i] - x[i], 2), weighted += std::fabs(x[i]) * std::pow(y[i] - x[i], 2);
    return std::pair{plain, weighted};
  };
  for (const auto* x : {&gauss, &heavy}) {
    for (DType t : {DType::Q4_K, DType::Q5_K, DType::Q6_K}) {
      std::vector<uint8_t> searched = quantized(t, *x), baseline(searched.size());
      for (int64_t b = 0; b < n / kQKK; ++b) {
        const float* xb = x->data() + b * kQKK;
        uint8_t L[kQKK];
        if (t == DType::Q6_K) {  // scales amax/31 per 16 values, d = their max / 127, levels rounded
          auto& y = reinterpret_cast<BlockQ6_K*>(baseline.data())[b];
          float sc[16], max_sc = 0;
          for (int s = 0; s < 16; ++s) {
            float amax = 0;
            for (int l = 0; l < 16; ++l) amax = std::max(amax, std::fabs(xb[16 * s + l]));
            sc[s] = amax / 31, max_sc = std::max(max_sc, sc[s]);
          }
          y.d = f32_to_f16(max_sc / 127);
          const float d = f16_to_f32(y.d);
          for (int s = 0; s < 16; ++s) {
            y.scales[s] = int8_t(std::min(127L, std::lround(sc[s] / d)));
            for (int l = 0; l < 16; ++l)
              L[16 * s + l] = uint8_t(std::clamp(std::lround(xb[16 * s + l] / (d * y.scales[s])), -32L, 31L) + 32);
          }
          for (int j = 0; j < kQKK; j += 128)  // ggml's bit layout (quant_blocks.h)
            for (int l = 0; l < 32; ++l) {
              y.ql[j / 2 + l] = uint8_t((L[j + l] & 0xF) | ((L[j + l + 64] & 0xF) << 4));
              y.ql[j / 2 + l + 32] = uint8_t((L[j + l + 32] & 0xF) | ((L[j + l + 96] & 0xF) << 4));
              y.qh[j / 4 + l] = uint8_t((L[j + l] >> 4) | ((L[j + l + 32] >> 4) << 2) | ((L[j + l + 64] >> 4) << 4) | ((L[j + l + 96] >> 4) << 6));
            }
        } else {
          // the same packing as quantize_row, from the min/max choice of scales
          const int qmax = t == DType::Q4_K ? 15 : 31;
          uint16_t d, dmin;
          uint8_t scales[12];
          ref::kquant_affine_block_minmax(xb, qmax, &d, &dmin, scales, L);
          std::vector<float> approx(kQKK);
          for (int j = 0; j < 8; ++j) {
            int sc, m;
            scale_min_k4(j, scales, &sc, &m);
            for (int l = 0; l < 32; ++l) approx[size_t(32 * j + l)] = f16_to_f32(d) * float(sc) * L[32 * j + l] - f16_to_f32(dmin) * float(m);
          }
          ref::quantize_row(baseline.data() + size_t(b) * dtype_bytes(t, kQKK), t, approx.data(), kQKK);  // exact: already on the grid
        }
      }
      std::vector<float> ys(static_cast<size_t>(n)), yb(static_cast<size_t>(n));
      ref::dequantize_row(ys.data(), searched.data(), t, n);
      ref::dequantize_row(yb.data(), baseline.data(), t, n);
      const auto [sp, sw] = errors(*x, ys);
      const auto [bp, bw] = errors(*x, yb);
      std::printf("%s %s: squared error %.4g (search) vs %.4g (min/max), |x|-weighted %.4g vs %.4g\n", dtype_name(t).data(),
                  x == &gauss ? "gaussian" : "heavy-tailed", sp, bp, sw, bw);
      // (Q4_K / Q5_K's baseline shares the search's 6-bit stage, so only the sub-block fits differ:
      // measured 3-5 % lower error on Gaussian values, 8-20 % on heavy-tailed ones)
      EXPECT_LT(sp, 0.98 * bp) << dtype_name(t);
      EXPECT_LT(sw, 0.98 * bw) << dtype_name(t);
    }
  }
}

// Rows a writer must not garble: zeros, one constant, one sign only, an outlier among tiny values.
TEST(Quant, KQuantEdgeRows) {
  for (DType t : {DType::Q4_K, DType::Q5_K, DType::Q6_K}) {
    const std::vector<std::pair<const char*, std::vector<float>>> rows = {
        {"zeros", std::vector<float>(kQKK, 0.0f)},
        {"constant", std::vector<float>(kQKK, 0.75f)},
        {"negative", std::vector<float>(kQKK, -0.5f)},
        {"outlier", [] {
           std::vector<float> v(kQKK, 1e-4f);
           v[77] = 30.0f;
           return v;
         }()}};
    for (const auto& [what, x] : rows) {
      std::vector<float> y(kQKK);
      ref::dequantize_row(y.data(), quantized(t, x).data(), t, kQKK);
      for (int i = 0; i < kQKK; ++i) {
        ASSERT_TRUE(std::isfinite(y[size_t(i)])) << dtype_name(t) << " " << what;
        ASSERT_NEAR(y[size_t(i)], x[size_t(i)], 0.02f * std::fabs(x[size_t(i)]) + (i == 77 ? 0.1f : 1e-3f)) << dtype_name(t) << " " << what << " " << i;
      }
    }
  }
}

TEST(Quant, MatmulEveryVariantAgainstDequantizedReference) {
  if (!cpu_has_avx2()) GTEST_SKIP() << "no AVX2 on this CPU";
  for (DType t : kAll) {
    const int64_t K = dtype_block(t) == 32 ? 96 : 512;  // 3 and 2 blocks per row
    for (int64_t N : {1, 7, 37}) {
      for (int64_t M : {1, 3, 5, 9, 33}) {  // 33: the dequantize + sgemm path of prefill
        const auto wf = random_vector(size_t(N * K), 10 + uint64_t(N), 0.5f);
        const auto x = random_vector(size_t(M * K), 20 + uint64_t(M), 1.0f);
        const auto bias = random_vector(size_t(N), 30, 0.1f);
        std::vector<uint8_t> w(dtype_bytes(t, N * K));
        for (int64_t n = 0; n < N; ++n) ref::quantize_row(w.data() + dtype_bytes(t, K) * size_t(n), t, wf.data() + n * K, K);
        std::vector<float> want(size_t(M * N)), got(size_t(M * N)), wdq(static_cast<size_t>(K));
        ref::matmul_forward(want.data(), x.data(), w.data(), t, bias.data(), M, N, K);
        if (M >= 32) matmul_forward(got.data(), x.data(), w.data(), t, bias.data(), M, N, K);  // dispatch: sgemm
        else avx2::matmul_forward(got.data(), x.data(), w.data(), t, bias.data(), M, N, K);
        for (int64_t m = 0; m < M; ++m)
          for (int64_t n = 0; n < N; ++n) {
            // Tolerance from the size of the terms: 8-bit activations add ~1/254 relative error per term.
            ref::dequantize_row(wdq.data(), w.data() + dtype_bytes(t, K) * size_t(n), t, K);
            double mag = 0;
            for (int64_t k = 0; k < K; ++k) mag += std::fabs(double(wdq[size_t(k)]) * x[size_t(m * K + k)]);
            // int8 activations: Q8_0/Q4_0 below the sgemm threshold, and K-quant decode (one row)
            // (and every M ≥ 2 the dispatch sends to the AVX-512 int8 GEMM)
            const bool int8_path = ((t == DType::Q8_0 || t == DType::Q4_0 || t == DType::MXFP4) && M < 32) ||
                                   ((t == DType::Q4_K || t == DType::Q5_K || t == DType::Q6_K) && M == 1) ||
                                   (M >= 32 && active_kernel_variant() == KernelVariant::Avx512 && avx512::gemm_int8_supports(t)) ||
                                   (M >= 32 && active_kernel_variant() == KernelVariant::Avx2 && avx2::gemm_int8_supports(t));
            const double tol = (int8_path ? 0.01 : 1e-5) * mag + 1e-5;
            ASSERT_NEAR(got[size_t(m * N + n)], want[size_t(m * N + n)], tol)
                << dtype_name(t) << " M=" << M << " N=" << N << " m=" << m << " n=" << n;
          }
      }
    }
  }
}

TEST(Quant, Avx2ActivationQuantizerMatchesReferenceBlocks) {
  if (!cpu_has_avx2()) GTEST_SKIP() << "no AVX2 on this CPU";
  const auto x = random_vector(32 * 8, 5, 2.0f);
  std::vector<BlockQ8_0> a(8), r(8);
  avx2::quantize_row(a.data(), DType::Q8_0, x.data(), 256);
  ref::quantize_row(r.data(), DType::Q8_0, x.data(), 256);
  for (int b = 0; b < 8; ++b) {
    EXPECT_EQ(a[size_t(b)].d, r[size_t(b)].d);
    for (int j = 0; j < 32; ++j) EXPECT_LE(std::abs(a[size_t(b)].qs[j] - r[size_t(b)].qs[j]), 1);  // ties may round differently
  }
}

// The AVX2 f32 -> f16 row (how the KV cache stores) is bit for bit the scalar conversion, on odd
// lengths and across f16's range: subnormal results, ties, values that overflow to infinity.
TEST(Quant, Avx2F16RowEqualsReference) {
  if (!cpu_has_avx2()) GTEST_SKIP() << "no AVX2 on this CPU";
  std::vector<float> x = test::random_vector(203, 12, 4.0f);
  for (size_t i = 0; i < x.size(); i += 7) x[i] *= 1e-6f;         // subnormal halves
  for (size_t i = 3; i < x.size(); i += 11) x[i] *= 3e4f;         // near and past 65504
  x[5] = 1.0f + 1.0f / 2048.0f;                                    // a tie: rounds to even
  x[6] = -0.0f;
  std::vector<uint16_t> a(x.size()), r(x.size());
  avx2::quantize_row(a.data(), DType::F16, x.data(), int64_t(x.size()));
  ref::quantize_row(r.data(), DType::F16, x.data(), int64_t(x.size()));
  for (size_t i = 0; i < x.size(); ++i) ASSERT_EQ(a[i], r[i]) << i << ": " << x[i];
}

TEST(Quant, Avx2DequantizeEqualsReference) {
  if (!cpu_has_avx2()) GTEST_SKIP() << "no AVX2 on this CPU";
  const auto x = test::random_vector(512, 9, 1.0f);
  for (DType t : {DType::F32, DType::F16, DType::BF16, DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q5_K, DType::Q6_K, DType::MXFP4}) {
    std::vector<uint8_t> q(dtype_bytes(t, 512));
    ref::quantize_row(q.data(), t, x.data(), 512);
    std::vector<float> a(512), r(512);
    avx2::dequantize_row(a.data(), q.data(), t, 512);
    ref::dequantize_row(r.data(), q.data(), t, 512);
    for (size_t i = 0; i < 512; ++i) ASSERT_NEAR(a[i], r[i], 1e-6f * (1.0f + std::fabs(r[i]))) << dtype_name(t) << " " << i;
  }
}

TEST(Quant, EmbeddingOfQuantizedTable) {
  const int64_t V = 5, D = 64;
  const auto table = random_vector(size_t(V * D), 8, 1.0f);
  const int32_t ids[3] = {4, 0, 2};
  for (DType t : {DType::Q8_0, DType::Q4_0}) {
    std::vector<uint8_t> q(dtype_bytes(t, V * D));
    ref::quantize_row(q.data(), t, table.data(), V * D);
    std::vector<float> got(size_t(3 * D)), want(static_cast<size_t>(D));
    embedding_forward(got.data(), ids, 3, q.data(), t, D);
    for (int i = 0; i < 3; ++i) {
      ref::dequantize_row(want.data(), q.data() + dtype_bytes(t, D) * size_t(ids[i]), t, D);
      for (int64_t d = 0; d < D; ++d) ASSERT_EQ(got[size_t(i * D + d)], want[size_t(d)]);
    }
  }
}

}  // namespace distill

namespace distill {

// An int8 GEMM (many rows, repacked weight panels) on odd shapes — partial panels (N not a multiple
// of 16), partial row tiles, one and several blocks — against the same arithmetic in double:
// activations quantized to Q8_0 as the kernel does, weights dequantized by the reference. Only the
// f32 rounding of the per-block scaling may differ.
using GemmFn = void (*)(float*, const float*, const void*, DType, const float*, int64_t, int64_t, int64_t);
void check_int8_gemm(GemmFn gemm, std::initializer_list<DType> types, bool packs) {
  for (DType t : types) {
    for (int64_t K : dtype_block(t) == 32 ? std::vector<int64_t>{32, 96, 800} : std::vector<int64_t>{256, 768}) {
      for (int64_t N : {1, 7, 16, 37}) {
        for (int64_t M : {2, 3, 8, 9, 33}) {
          const auto wf = random_vector(size_t(N * K), 70 + uint64_t(N + K), 0.5f);
          const auto x = random_vector(size_t(M * K), 80 + uint64_t(M), 1.0f);
          const auto bias = random_vector(size_t(N), 90, 0.1f);
          const size_t row = dtype_bytes(t, K);
          std::vector<uint8_t> w(row * size_t(N));
          for (int64_t n = 0; n < N; ++n) ref::quantize_row(w.data() + row * size_t(n), t, wf.data() + n * K, K);
          std::vector<float> got(size_t(M * N), -1.0f), wdq(static_cast<size_t>(K));
          gemm(got.data(), x.data(), w.data(), t, bias.data(), M, N, K);
          if (packs) {  // panels packed once (at load) give the same bits as panels repacked per call
            const auto pw = avx512::pack_weight(w.data(), t, N, K);
            ASSERT_EQ(pw == nullptr, t == DType::Q6_K || t == DType::MXFP4);  // repacked per call only
            if (pw) {
              std::vector<float> packed(got.size(), -2.0f);
              avx512::gemm_int8_packed(packed.data(), x.data(), *pw, bias.data(), M);
              ASSERT_EQ(0, std::memcmp(packed.data(), got.data(), got.size() * sizeof(float))) << dtype_name(t) << " packed";
            }
          }
          std::vector<BlockQ8_0> xq(size_t(K / 32));
          for (int64_t m = 0; m < M; ++m) {
            avx2::quantize_row(xq.data(), DType::Q8_0, x.data() + m * K, K);
            for (int64_t n = 0; n < N; ++n) {
              ref::dequantize_row(wdq.data(), w.data() + row * size_t(n), t, K);
              double want = bias[size_t(n)], mag = 0;
              for (int64_t k = 0; k < K; ++k) {
                const double xv = double(f16_to_f32(xq[size_t(k / 32)].d)) * xq[size_t(k / 32)].qs[k % 32];
                want += double(wdq[size_t(k)]) * xv, mag += std::fabs(double(wdq[size_t(k)]) * xv);
              }
              ASSERT_NEAR(got[size_t(m * N + n)], want, 2e-6 * mag + 1e-6)
                  << dtype_name(t) << " K=" << K << " N=" << N << " M=" << M << " m=" << m << " n=" << n;
            }
          }
        }
      }
    }
  }
}

TEST(Avx512Kernels, Int8GemmEveryFormatAgainstExactProducts) {
  if (!cpu_has_avx512()) GTEST_SKIP() << "this CPU has no AVX-512 F/BW/VL/VNNI: the int8 GEMM is not testable here";
  for (DType t : {DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q6_K, DType::MXFP4}) ASSERT_TRUE(avx512::gemm_int8_supports(t));
  check_int8_gemm(avx512::gemm_int8, {DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q6_K, DType::MXFP4}, true);
}

TEST(Quant, Avx2Int8GemmEveryFormatAgainstExactProducts) {
  if (!cpu_has_avx2()) GTEST_SKIP() << "no AVX2 on this CPU";
  for (DType t : {DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q6_K, DType::MXFP4}) ASSERT_TRUE(avx2::gemm_int8_supports(t));
  check_int8_gemm(avx2::gemm_int8, {DType::Q8_0, DType::Q4_0, DType::Q4_K, DType::Q6_K, DType::MXFP4}, false);
}

}  // namespace distill
