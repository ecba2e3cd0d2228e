// Run-time choice between the scalar reference kernels and the AVX2 ones.
#include "kernels/kernels.h"

#include <atomic>

namespace distill {

bool cpu_has_avx2() {
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                          __builtin_cpu_supports("f16c");
  return has;
}

static std::atomic<int> g_variant{-1};

KernelVariant active_kernel_variant() {
  int v = g_variant.load(std::memory_order_relaxed);
  if (v < 0) {
    v = int(cpu_has_avx2() ? KernelVariant::Avx2 : KernelVariant::Ref);
    g_variant.store(v, std::memory_order_relaxed);
  }
  return KernelVariant(v);
}

void force_kernel_variant(KernelVariant v) {
  if (v == KernelVariant::Avx2 && !cpu_has_avx2()) v = KernelVariant::Ref;
  g_variant.store(int(v), std::memory_order_relaxed);
}

const char* kernel_variant_name(KernelVariant v) { return v == KernelVariant::Avx2 ? "avx2" : "ref"; }

static bool use_avx2() { return active_kernel_variant() == KernelVariant::Avx2; }

// Forwards a call to the active variant with the same arguments.
#define DISTILL_DISPATCH(fn, ...) (use_avx2() ? avx2::fn(__VA_ARGS__) : ref::fn(__VA_ARGS__))

void quantize_row(void* dst, DType type, const float* src, int64_t n) { DISTILL_DISPATCH(quantize_row, dst, type, src, n); }

void dequantize_row(float* dst, const void* src, DType type, int64_t n) { DISTILL_DISPATCH(dequantize_row, dst, src, type, n); }

void rmsnorm_forward(float* out, const float* x, const float* w, int64_t n_rows, int64_t dim, float eps) {
  DISTILL_DISPATCH(rmsnorm_forward, out, x, w, n_rows, dim, eps);
}

void rope_forward(float* x, int64_t n_tokens, int64_t n_head, int64_t head_dim, const int32_t* pos,
                  const float* inv_freq) {
  DISTILL_DISPATCH(rope_forward, x, n_tokens, n_head, head_dim, pos, inv_freq);
}

void softmax_forward(float* x, int64_t n_rows, int64_t n_cols) {
  DISTILL_DISPATCH(softmax_forward, x, n_rows, n_cols);
}

void swiglu_forward(float* out, const float* gate, const float* up, int64_t n) {
  DISTILL_DISPATCH(swiglu_forward, out, gate, up, n);
}

void add_inplace(float* y, const float* x, int64_t n) { DISTILL_DISPATCH(add_inplace, y, x, n); }

void embedding_forward(float* out, const int32_t* ids, int64_t n, const void* table, DType dtype, int64_t dim) {
  DISTILL_DISPATCH(embedding_forward, out, ids, n, table, dtype, dim);
}

void attention_forward(float* out, const float* q, const float* k_cache, const float* v_cache,
                       const AttentionShape& shape, const int32_t* pos, const int32_t* seq) {
  DISTILL_DISPATCH(attention_forward, out, q, k_cache, v_cache, shape, pos, seq);
}

}  // namespace distill
