// Kernel micro-benchmarks (Google Benchmark): matmul by weight dtype and batch rows (the
// dispatcher: the panel GEMM from 9 rows; DISTILL_F32_GEMM=blas sends f32 to OpenBLAS to compare),
// and attention over a prompt. Bytes/s counts weight bytes, the limit for decode (M = 1).
#include "core/rng.h"
#include "core/threads.h"
#include "kernels/kernels.h"

#include <benchmark/benchmark.h>

#include <vector>

using namespace distill;

static void BM_Matmul(benchmark::State& state) {
  const int64_t M = state.range(0), N = state.range(1), K = state.range(2);
  const DType dt = DType(state.range(3));
  const bool use_avx2_kernel = state.range(4) != 0;
  Rng rng(1);
  std::vector<float> x(size_t(M * K)), w(size_t(N * K)), out(size_t(M * N));
  for (float& v : x) v = rng.normal();
  for (float& v : w) v = rng.normal();
  std::vector<uint16_t> w16(w.size());
  std::vector<char> wq(dtype_bytes(dt, N * K));
  const void* wp = w.data();
  if (dt == DType::F16 || dt == DType::BF16) {
    convert_from_f32(w16.data(), dt, w.data(), w.size());
    wp = w16.data();
  } else if (dt != DType::F32) {  // block-quantized rows (decode of a downloaded GGUF)
    for (int64_t n = 0; n < N; ++n) quantize_row(wq.data() + dtype_bytes(dt, K) * size_t(n), dt, w.data() + n * K, K);
    wp = wq.data();
  }
  for (auto _ : state) {
    if (use_avx2_kernel) avx2::matmul_forward(out.data(), x.data(), wp, dt, nullptr, M, N, K);
    else matmul_forward(out.data(), x.data(), wp, dt, nullptr, M, N, K);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * int64_t(dtype_bytes(dt, N * K)));
  state.counters["GFLOP/s"] = benchmark::Counter(double(2 * M * N * K), benchmark::Counter::kIsIterationInvariantRate);
}

// args: M, N, K, dtype, 1 = our AVX2 kernel / 0 = dispatcher (OpenBLAS for f32)
BENCHMARK(BM_Matmul)
    ->ArgNames({"M", "N", "K", "dtype", "avx2"})
    ->Args({1, 2048, 768, int(DType::F32), 0})
    ->Args({1, 2048, 768, int(DType::F32), 1})
    ->Args({1, 2048, 768, int(DType::BF16), 1})
    ->Args({1, 2048, 768, int(DType::F16), 1})
    ->Args({1, 32000, 288, int(DType::F32), 0})
    ->Args({1, 32000, 288, int(DType::BF16), 1})
    ->Args({512, 2048, 768, int(DType::F32), 0})
    ->Args({512, 2048, 768, int(DType::F32), 1})
    ->Args({512, 2048, 768, int(DType::BF16), 1})
    // decode of the output matrix of a 134M model in each type a download holds (Q4_K_M: Q6_K there)
    ->Args({1, 32000, 768, int(DType::Q8_0), 0})
    ->Args({1, 32000, 768, int(DType::Q4_0), 0})
    ->Args({1, 32000, 768, int(DType::Q4_K), 0})
    ->Args({1, 32000, 768, int(DType::Q6_K), 0})
    ->UseRealTime();

// The three products of one training linear (forward x·Wᵀ, d_x = d_y·W, d_w += d_yᵀ·x) at
// training's row counts, in f32 (panel GEMM + sgemm) or under --precision bf16 (gemm_bf16).
// args: M (tokens), N, K, 1 = bf16.
static void BM_TrainLinear(benchmark::State& state) {
  const int64_t M = state.range(0), N = state.range(1), K = state.range(2);
  const Bf16MatmulScope precision(state.range(3) != 0);
  Rng rng(2);
  std::vector<float> x(size_t(M * K)), w(size_t(N * K)), y(size_t(M * N)), dy(size_t(M * N)), dx(size_t(M * K)), dw(size_t(N * K));
  for (float& v : x) v = rng.normal();
  for (float& v : w) v = rng.normal();
  for (float& v : dy) v = rng.normal();
  for (auto _ : state) {
    matmul_forward(y.data(), x.data(), w.data(), DType::F32, nullptr, M, N, K);
    matmul_backward(dx.data(), dw.data(), nullptr, dy.data(), x.data(), w.data(), DType::F32, M, N, K, false);
    benchmark::DoNotOptimize(dw.data());
  }
  state.counters["GFLOP/s"] = benchmark::Counter(double(6 * M * N * K), benchmark::Counter::kIsIterationInvariantRate);
}
// 2048 tokens (batch 8 × 256) through Qwen2.5-0.5B's q and gate projections, and the 134M's
BENCHMARK(BM_TrainLinear)
    ->ArgNames({"M", "N", "K", "bf16"})
    ->Args({2048, 896, 896, 0})->Args({2048, 896, 896, 1})
    ->Args({2048, 4864, 896, 0})->Args({2048, 4864, 896, 1})
    ->Args({2048, 2048, 768, 0})->Args({2048, 2048, 768, 1})
    ->UseRealTime();

// Attention of a whole prompt of T tokens (prefill) over an f16 KV cache: 134M's shape (12 heads of
// 64, no GQA) by default. args: T, n_head, n_kv_head.
static void BM_AttentionPrefill(benchmark::State& state) {
  AttentionShape s;
  s.n_tokens = state.range(0), s.n_head = state.range(1), s.n_kv_head = state.range(2), s.head_dim = 64;
  s.n_ctx = s.n_tokens, s.scale = 0.125f, s.kv_type = DType::F16;
  Rng rng(2);
  std::vector<float> q(size_t(s.n_tokens * s.n_head * s.head_dim)), out(q.size()), kv(size_t(s.n_tokens * s.n_kv_head * s.head_dim));
  for (float& v : q) v = rng.normal();
  for (float& v : kv) v = rng.normal();
  std::vector<uint16_t> k(kv.size()), v(kv.size());
  convert_from_f32(k.data(), DType::F16, kv.data(), kv.size());
  for (float& x : kv) x = rng.normal();
  convert_from_f32(v.data(), DType::F16, kv.data(), kv.size());
  std::vector<int32_t> pos(size_t(s.n_tokens)), seq(size_t(s.n_tokens), 0);
  for (int64_t i = 0; i < s.n_tokens; ++i) pos[size_t(i)] = int32_t(i);
  for (auto _ : state) {
    attention_forward(out.data(), q.data(), k.data(), v.data(), s, pos.data(), seq.data());
    benchmark::DoNotOptimize(out.data());
  }
  // the causal products: Q·Kᵀ and P·V over the T·(T+1)/2 visible pairs, per head
  state.counters["GFLOP/s"] = benchmark::Counter(double(4 * s.head_dim * s.n_head) * double(s.n_tokens * (s.n_tokens + 1) / 2),
                                                 benchmark::Counter::kIsIterationInvariantRate);
}
BENCHMARK(BM_AttentionPrefill)->ArgNames({"T", "heads", "kv_heads"})->Args({512, 12, 12})->Args({2048, 12, 2})->UseRealTime();

int main(int argc, char** argv) {
  set_num_threads(0);
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  return 0;
}
