// Kernel micro-benchmarks (Google Benchmark): matmul by weight dtype and batch rows, against
// OpenBLAS for f32. Bytes/s counts weight bytes, the limit for decode (M = 1).
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
  const void* wp = w.data();
  if (dt != DType::F32) {
    convert_from_f32(w16.data(), dt, w.data(), w.size());
    wp = w16.data();
  }
  for (auto _ : state) {
    if (use_avx2_kernel) avx2::matmul_forward(out.data(), x.data(), wp, dt, nullptr, M, N, K);
    else matmul_forward(out.data(), x.data(), wp, dt, nullptr, M, N, K);
    benchmark::DoNotOptimize(out.data());
  }
  state.SetBytesProcessed(int64_t(state.iterations()) * N * K * int64_t(dtype_size(dt)));
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
    ->UseRealTime();

int main(int argc, char** argv) {
  set_num_threads(0);
  benchmark::Initialize(&argc, argv);
  benchmark::RunSpecifiedBenchmarks();
  return 0;
}
