// matmul_forward: f32 / f16 / bf16 weights with 1..8 rows (decode of one or a few sequences) go to
// the row kernels, which stream the weights once (f16/bf16 converted in registers: half the
// bytes); with more rows (prefill, the training forward) to the panel GEMM
// (kernels/gemm_f32_panels.h); the scalar variant and DISTILL_F32_GEMM=blas use OpenBLAS.
#include "core/error.h"
#include "kernels/activation_reuse.h"
#include "core/threads.h"
#include "core/work_pool.h"
#include "kernels/kernels.h"

#include <omp.h>

#include <cblas.h>

#include <algorithm>
#include <cstdlib>
#include <string>
#include <vector>

namespace distill {

namespace {

// Many rows (prefill) against block-quantized weights: dequantize a chunk of weight rows to f32
// and let sgemm multiply it — the dequantization is paid once per weight for all M rows, and
// sgemm runs near the machine's peak, well above an int8 dot kernel on AVX2.
constexpr int64_t kDequantMinRows = 32;
constexpr int64_t kDequantChunk = 256;  // weight rows per chunk (scratch: 256 × K floats)
// With AVX-512 VNNI, int8 products on repacked weight panels beat both from this many rows.
constexpr int64_t kInt8GemmMinRows = 2;

// Weight rows n0..n0+nc of w [N, K] (any dtype) widened to f32 into dst [nc, K], rows in parallel.
void dequantize_rows(float* dst, const void* w, DType w_dtype, int64_t n0, int64_t nc, int64_t K) {
  const size_t row_bytes = dtype_bytes(w_dtype, K);
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < nc; ++r)
    dequantize_row(dst + r * K, static_cast<const char*>(w) + size_t(n0 + r) * row_bytes, w_dtype, K);
}

// A thread's buffer for kDequantChunk widened weight rows of length K (OpenMP workers have their own).
float* dequant_scratch(int64_t K) {
  static thread_local std::vector<float> scratch;
  if (int64_t(scratch.size()) < kDequantChunk * K) scratch.resize(size_t(kDequantChunk * K));
  return scratch.data();
}

void matmul_dequant_sgemm(float* out, const float* x, const void* w, DType w_dtype, const float* bias, int64_t M,
                          int64_t N, int64_t K) {
  float* const wf = dequant_scratch(K);
  for (int64_t n0 = 0; n0 < N; n0 += kDequantChunk) {
    const int64_t nc = std::min(kDequantChunk, N - n0);
    dequantize_rows(wf, w, w_dtype, n0, nc, K);
    float beta = 0.0f;
    if (bias) {
      for (int64_t m = 0; m < M; ++m) std::copy(bias + n0, bias + n0 + nc, out + m * N + n0);
      beta = 1.0f;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(M), int(nc), int(K), 1.0f, x, int(K), wf, int(K), beta,
                out + n0, int(N));
  }
}

// DISTILL_F32_GEMM=blas: f32 prefill through OpenBLAS's sgemm instead of the panel GEMM (to
// compare the two on a machine; read once).
bool f32_gemm_is_blas() {
  static const bool blas = [] {
    const char* e = std::getenv("DISTILL_F32_GEMM");
    return e && std::string(e) == "blas";
  }();
  return blas;
}

bool bf16_product(DType w_dtype) { return bf16_matmuls() && (w_dtype == DType::F32 || w_dtype == DType::BF16); }

}  // namespace

void matmul_forward(float* out, const float* x, const void* w, DType w_dtype, const float* bias,
                    int64_t M, int64_t N, int64_t K) {
  if (bf16_product(w_dtype)) {
    // training under --precision bf16 (never a decode step): out = bias + x · wᵀ of bf16-rounded operands
    if (bias)
      for (int64_t m = 0; m < M; ++m) std::copy(bias, bias + N, out + m * N);
    return gemm_bf16({.c = out, .ldc = N, .a = x, .lda = K, .b = w, .ldb = K, .trans_b = true, .b_dtype = w_dtype,
                      .M = M, .N = N, .K = K, .accumulate = bias != nullptr});
  }
  const KernelVariant v = active_kernel_variant();
  if (v == KernelVariant::Avx512 && M >= kInt8GemmMinRows && avx512::gemm_int8_supports(w_dtype))
    return avx512::gemm_int8(out, x, w, w_dtype, bias, M, N, K);
  // AVX2 without VNNI: int8 panels beat dequantize + sgemm (134M pp512, q4_0 951-965 → 1234-1292
  // tok/s in one run; Q8_0 through signed weights, kernels/avx2/gemm_int8.cpp).
  if (v == KernelVariant::Avx2 && M >= kDequantMinRows && avx2::gemm_int8_supports(w_dtype))
    return avx2::gemm_int8(out, x, w, w_dtype, bias, M, N, K);
  const bool few_rows = M >= 1 && M <= 8;
  const bool float_w = w_dtype == DType::F32 || w_dtype == DType::F16 || w_dtype == DType::BF16;
  if (float_w && M > 8 && v != KernelVariant::Ref && !f32_gemm_is_blas())
    return gemm_f32({.out = out, .ldo = N, .x = x, .ldx = K, .w = w, .ldw = K, .w_dtype = w_dtype, .bias = bias, .M = M, .N = N, .K = K});
  if (w_dtype != DType::F32 && M >= kDequantMinRows) return matmul_dequant_sgemm(out, x, w, w_dtype, bias, M, N, K);
  if (w_dtype != DType::F32 || M == 0 || (few_rows && v != KernelVariant::Ref)) {
    if (v == KernelVariant::Avx512) return avx512::matmul_forward(out, x, w, w_dtype, bias, M, N, K);
    if (v == KernelVariant::Avx2) return avx2::matmul_forward(out, x, w, w_dtype, bias, M, N, K);
    return ref::matmul_forward(out, x, w, w_dtype, bias, M, N, K);
  }
  const float* wf = static_cast<const float*>(w);
  float beta = 0.0f;
  if (bias) {
    // Seed every output row with the bias and let BLAS accumulate onto it.
    for (int64_t m = 0; m < M; ++m)
      for (int64_t n = 0; n < N; ++n) out[m * N + n] = bias[n];
    beta = 1.0f;
  }
  if (M == 1) {
    cblas_sgemv(CblasRowMajor, CblasNoTrans, int(N), int(K), 1.0f, wf, int(K), x, 1, beta, out, 1);
  } else {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(M), int(N), int(K), 1.0f, x, int(K), wf,
                int(K), beta, out, int(N));
  }
}

void gemm_f32(const GemmF32Args& g) {
  const KernelVariant v = active_kernel_variant();
  if (v == KernelVariant::Avx512) return avx512::gemm_f32(g);
  if (v == KernelVariant::Avx2) return avx2::gemm_f32(g);
  // scalar variant: OpenBLAS, on f32 weights (what the scalar callers hold: matmul_forward keeps
  // f16/bf16 on the reference kernel there)
  DISTILL_ASSERT_MSG(g.w_dtype == DType::F32, "gemm_f32 of the scalar variant takes f32 weights, not {}", dtype_name(g.w_dtype));
  if (g.bias)
    for (int64_t m = 0; m < g.M; ++m) std::copy(g.bias, g.bias + g.N, g.out + m * g.ldo);
  cblas_sgemm(CblasRowMajor, CblasNoTrans, g.w_kn ? CblasNoTrans : CblasTrans, int(g.M), int(g.N), int(g.K), 1.0f, g.x,
              int(g.ldx), static_cast<const float*>(g.w), int(g.ldw), g.bias ? 1.0f : 0.0f, g.out, int(g.ldo));
}

namespace {
// Whether weights get a load-time form: AVX-512 active, and not DISTILL_REPACK=0 (no second copy
// of the weights; prefill then repacks each panel per call).
bool prepares_weights() {
  static const bool repack = [] {
    const char* e = std::getenv("DISTILL_REPACK");
    return !e || std::string(e) != "0";
  }();
  return repack && active_kernel_variant() == KernelVariant::Avx512;
}
}  // namespace

std::shared_ptr<const PreparedWeight> prepare_weight(const void* w, DType w_dtype, int64_t N, int64_t K) {
  return prepares_weights() ? avx512::pack_weight(w, w_dtype, N, K) : nullptr;
}

size_t prepared_bytes_for(DType w_dtype, int64_t N, int64_t K) {
  return prepares_weights() ? avx512::packed_bytes_for(w_dtype, N, K) : 0;
}

size_t prepared_bytes(const PreparedWeight& p) { return avx512::packed_bytes(p); }

void matmul_prepared(float* out, const float* x, const void* w, DType w_dtype, const PreparedWeight* prepared,
                     const float* bias, int64_t M, int64_t N, int64_t K) {
  // Decode (one row) stays on the row-at-a-time kernels: from DRAM they stream as fast as the
  // panels or faster (measured, 134M q4_0 at 2 threads: 213-233 tok/s on rows, 169-190 on
  // panels, where a 768×768 panel split per thread is too short for the prefetchers to ramp).
  // A variant forced after load (tests, benchmarks) reads the original weights.
  if (prepared && M >= kInt8GemmMinRows && active_kernel_variant() == KernelVariant::Avx512)
    return avx512::gemm_int8_packed(out, x, *prepared, bias, M);
  matmul_forward(out, x, w, w_dtype, bias, M, N, K);
}

void matvec_batch(const MatvecJob* jobs, int n_jobs) {
  // Each job's rows as one range of a byte line: job j occupies [begin[j], begin[j] + N·row_bytes).
  static thread_local std::vector<int64_t> begin;  // (no allocation per decode step)
  begin.assign(size_t(n_jobs) + 1, 0);
  double work = 0;
  for (int j = 0; j < n_jobs; ++j) {
    begin[size_t(j) + 1] = begin[size_t(j)] + jobs[j].N * int64_t(dtype_bytes(jobs[j].w_dtype, jobs[j].K));
    work += double(jobs[j].N) * double(jobs[j].K);
  }
  const bool parallel = active_kernel_variant() != KernelVariant::Ref && !omp_in_parallel() && !in_work_pool() &&
                        num_threads() > 1 && work > 100000;
  if (!parallel) {
    for (int j = 0; j < n_jobs; ++j) {
      const MatvecJob& b = jobs[j];
      matmul_forward(b.out, b.x, b.w, b.w_dtype, b.bias, 1, b.N, b.K);
    }
    return;
  }
  // The byte line cut into chunks the work pool's threads claim in order (core/work_pool.h).
  const int64_t total = begin[size_t(n_jobs)];
  const int64_t* const starts = begin.data();  // this thread's buffer, read by the chunks below
  const uint64_t scope = ActivationScope::new_id();
  const int64_t n_chunks = chunks_for(total);
  run_chunks(n_chunks, [&](int64_t c) {
    const ActivationScope inside(scope);
    const int64_t lo = total * c / n_chunks, hi = total * (c + 1) / n_chunks;  // this chunk's bytes
    for (int j = 0; j < n_jobs; ++j) {
      const MatvecJob& b = jobs[j];
      const int64_t row_bytes = int64_t(dtype_bytes(b.w_dtype, b.K));
      // the rows whose first byte falls in [lo, hi): neighbouring chunks' ranges meet exactly
      auto first_row_at = [&](int64_t byte) {
        return std::clamp((byte - starts[j] + row_bytes - 1) / row_bytes, int64_t(0), b.N);
      };
      const int64_t n0 = first_row_at(lo), n1 = first_row_at(hi);
      if (n0 < n1)
        matmul_forward(b.out + n0, b.x, static_cast<const char*>(b.w) + n0 * row_bytes, b.w_dtype,
                       b.bias ? b.bias + n0 : nullptr, 1, n1 - n0, b.K);
    }
  });
}

// Backward (training): beside the forward it differentiates. d_x reads the weights in their own
// dtype — a frozen quantized base (QLoRA) is widened a chunk of rows at a time, never whole.
void matmul_backward(float* d_x, float* d_w, float* d_b, const float* d_y, const float* x, const void* w, DType w_dtype,
                     int64_t M, int64_t N, int64_t K, bool accumulate_dx) {
  const bool bf16 = bf16_product(w_dtype);
  if (d_x && bf16) {
    // d_x[M, K] (+)= d_y[M, N] · w[N, K], operands rounded to bf16
    gemm_bf16({.c = d_x, .ldc = K, .a = d_y, .lda = N, .b = w, .ldb = K, .b_dtype = w_dtype, .M = M, .N = K, .K = N,
               .accumulate = accumulate_dx});
  } else if (d_x && w_dtype == DType::F32) {
    // d_x[M, K] = d_y[M, N] · w[N, K]
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(M), int(K), int(N), 1.0f, d_y, int(N),
                static_cast<const float*>(w), int(K), accumulate_dx ? 1.0f : 0.0f, d_x, int(K));
  } else if (d_x) {
    // the same product over chunks of weight rows: d_x (+)= Σ_chunks d_y[:, chunk] · w[chunk, :]
    float* const wf = dequant_scratch(K);
    for (int64_t n0 = 0; n0 < N; n0 += kDequantChunk) {
      const int64_t nc = std::min(kDequantChunk, N - n0);
      dequantize_rows(wf, w, w_dtype, n0, nc, K);
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(M), int(K), int(nc), 1.0f, d_y + n0, int(N), wf, int(K),
                  n0 > 0 || accumulate_dx ? 1.0f : 0.0f, d_x, int(K));
    }
  }
  // d_w[N, K] += d_y^T[N, M] · x[M, K]   (none for a frozen weight)
  if (d_w && bf16)
    gemm_bf16({.c = d_w, .ldc = K, .a = d_y, .lda = N, .trans_a = true, .b = x, .ldb = K, .M = N, .N = K, .K = M,
               .accumulate = true});
  else if (d_w)
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

}  // namespace distill
