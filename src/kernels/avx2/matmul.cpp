// AVX2: out[M, N] = x[M, K] · w[N, K]^T + bias, weights f32/f16/bf16 widened in registers.
//
// Work is split over blocks of weight rows (threads never share an output element). Inside a
// block, tiles of 4 weight rows × 2 input rows keep 8 accumulators in registers: each widened
// weight vector is used twice and each input vector four times; a lone input row (decode) reads
// one weight row at a time. Input rows are visited in chunks that stay in L2 while the block's
// weight rows stay in L1/L2.
#include "kernels/avx2/simd.h"
#include "kernels/kernels.h"
#include "kernels/parallel.h"

#include <algorithm>

namespace distill::avx2 {

namespace {

constexpr int64_t kRowsPerBlock = 16;  // weight rows per parallel work item
constexpr int64_t kInputChunk = 64;    // input rows per pass over a weight block
constexpr int64_t kPrefetchEvery = 32;  // elements: one prefetch per row per 64 bytes of bf16
constexpr int64_t kPrefetchAhead = 512; // elements ahead of the current one

template <typename W, int NR, int MR>
inline void tile(float* out, const float* x, const W* w, const float* bias, int64_t n0, int64_t m0,
                 int64_t N, int64_t K) {
  __m256 acc[NR][MR];
  for (int r = 0; r < NR; ++r)
    for (int c = 0; c < MR; ++c) acc[r][c] = _mm256_setzero_ps();
  int64_t k = 0;
  for (; k + 8 <= K; k += 8) {
    if (MR > 1 && k % kPrefetchEvery == 0) {
      // Streaming weights from DRAM is latency-bound without this: the hardware prefetcher
      // alone keeps too few lines in flight per core.
      for (int r = 0; r < NR; ++r) _mm_prefetch(reinterpret_cast<const char*>(w + (n0 + r) * K + k + kPrefetchAhead), _MM_HINT_T0);
    }
    __m256 xv[MR];
    for (int c = 0; c < MR; ++c) xv[c] = _mm256_loadu_ps(x + (m0 + c) * K + k);
    for (int r = 0; r < NR; ++r) {
      const __m256 wv = load8(w + (n0 + r) * K + k);
      for (int c = 0; c < MR; ++c) acc[r][c] = _mm256_fmadd_ps(wv, xv[c], acc[r][c]);
    }
  }
  for (int r = 0; r < NR; ++r) {
    for (int c = 0; c < MR; ++c) {
      float s = hsum(acc[r][c]);
      for (int64_t kk = k; kk < K; ++kk) s += load1(w + (n0 + r) * K + kk) * x[(m0 + c) * K + kk];
      out[(m0 + c) * N + n0 + r] = s + (bias ? bias[n0 + r] : 0.0f);
    }
  }
}

template <typename W>
void matmul(float* out, const float* x, const W* w, const float* bias, int64_t M, int64_t N, int64_t K) {
  const int64_t n_blocks = (N + kRowsPerBlock - 1) / kRowsPerBlock;
  auto block = [&](int64_t b) {
    const int64_t n_begin = b * kRowsPerBlock, n_end = std::min(N, n_begin + kRowsPerBlock);
    for (int64_t mc = 0; mc < M; mc += kInputChunk) {
      const int64_t m_end = std::min(M, mc + kInputChunk);
      int64_t m = mc;
      // Pairs of input rows: 4 weight rows × 2 input rows = 8 independent FMA chains.
      for (; m + 2 <= m_end; m += 2) {
        int64_t n = n_begin;
        for (; n + 4 <= n_end; n += 4) tile<W, 4, 2>(out, x, w, bias, n, m, N, K);
        for (; n < n_end; ++n) tile<W, 1, 2>(out, x, w, bias, n, m, N, K);
      }
      // A single input row (decode): one weight row at a time, so each thread reads one linear
      // stream, which the hardware prefetcher follows at full bandwidth; several rows side by
      // side are several streams and stall on DRAM (measured, 134M f32 at 2 threads: 95 tok/s at
      // 1 row, 56 at 2, 63 at 8 with software prefetch).
      for (; m < m_end; ++m)
        for (int64_t n = n_begin; n < n_end; ++n) tile<W, 1, 1>(out, x, w, bias, n, m, N, K);
    }
  };
  const bool worth = n_blocks > 1 && M * N * K > 100000;
  if (M == 1) return pool_for(n_blocks, worth, block);  // a one-token step (kernels/parallel.h)
  parallel_for(n_blocks, worth, block);
}

}  // namespace

void matmul_forward(float* out, const float* x, const void* w, DType w_dtype, const float* bias,
                    int64_t M, int64_t N, int64_t K) {
  switch (w_dtype) {
    case DType::F16: matmul(out, x, static_cast<const F16*>(w), bias, M, N, K); break;
    case DType::BF16: matmul(out, x, static_cast<const BF16*>(w), bias, M, N, K); break;
    case DType::F32: matmul(out, x, static_cast<const float*>(w), bias, M, N, K); break;
    default: matmul_quantized(out, x, w, w_dtype, bias, M, N, K); break;
  }
}

}  // namespace distill::avx2
