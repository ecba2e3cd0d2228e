// Run-time choice between the scalar reference kernels, the AVX2 ones and the AVX-512 ones.
#include "kernels/kernels.h"

#include <cpuid.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <string>

namespace distill {

// CPUID bits read directly where not every compiler's __builtin_cpu_supports knows the name:
// F16C (leaf 1, ECX bit 29) and AVX512_VNNI (leaf 7, ECX bit 11). The OS support for the AVX and
// AVX-512 register state is part of what __builtin_cpu_supports("avx2" / "avx512f") checks.
static bool cpuid_ecx_bit(unsigned leaf, unsigned bit) {
  unsigned a = 0, b = 0, c = 0, d = 0;
  return __get_cpuid_count(leaf, 0, &a, &b, &c, &d) && (c & (1u << bit)) != 0;
}

bool cpu_has_avx2() {
  static const bool has = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && cpuid_ecx_bit(1, 29);
  return has;
}

static bool cpu_has_vnni512() { return cpuid_ecx_bit(7, 11); }

bool cpu_has_avx512() {
  static const bool has = cpu_has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512vl") && cpu_has_vnni512();
  return has;
}

// AVX512_BF16: leaf 7 subleaf 1, EAX bit 5.
bool cpu_has_avx512_bf16() {
  static const bool has = [] {
    unsigned a = 0, b = 0, c = 0, d = 0;
    return cpu_has_avx512() && __get_cpuid_count(7, 1, &a, &b, &c, &d) && (a & (1u << 5)) != 0;
  }();
  return has;
}

bool cpu_supports(KernelVariant v) {
  return v == KernelVariant::Ref || (v == KernelVariant::Avx2 && cpu_has_avx2()) ||
         (v == KernelVariant::Avx512 && cpu_has_avx512());
}

KernelVariant best_kernel_variant() {
  return cpu_has_avx512() ? KernelVariant::Avx512 : cpu_has_avx2() ? KernelVariant::Avx2 : KernelVariant::Ref;
}

const char* kernel_variant_name(KernelVariant v) {
  return v == KernelVariant::Avx512 ? "avx512" : v == KernelVariant::Avx2 ? "avx2" : "scalar";
}

namespace {

std::atomic<int> g_variant{-1};

// DISTILL_ISA, or the best the CPU runs.
KernelVariant initial_variant() {
  const char* env = std::getenv("DISTILL_ISA");
  if (!env || !*env) return best_kernel_variant();
  const std::string want = env;
  KernelVariant v;
  if (want == "scalar" || want == "ref") v = KernelVariant::Ref;
  else if (want == "avx2") v = KernelVariant::Avx2;
  else if (want == "avx512") v = KernelVariant::Avx512;
  else {
    std::fprintf(stderr, "distill: DISTILL_ISA='%s' is not one of scalar, avx2, avx512; using %s\n", env,
                 kernel_variant_name(best_kernel_variant()));
    return best_kernel_variant();
  }
  if (!cpu_supports(v)) {
    std::fprintf(stderr, "distill: DISTILL_ISA=%s: this CPU lacks it; using %s\n", env, kernel_variant_name(best_kernel_variant()));
    return best_kernel_variant();
  }
  return v;
}

}  // namespace

KernelVariant active_kernel_variant() {
  int v = g_variant.load(std::memory_order_relaxed);
  if (v < 0) {
    v = int(initial_variant());
    g_variant.store(v, std::memory_order_relaxed);
  }
  return KernelVariant(v);
}

void force_kernel_variant(KernelVariant v) {
  while (!cpu_supports(v)) v = KernelVariant(int(v) - 1);  // the next best it has
  g_variant.store(int(v), std::memory_order_relaxed);
}

// Every kernel but the decode matvec runs its AVX2 variant under AVX-512 too.
static bool use_avx2() { return active_kernel_variant() != KernelVariant::Ref; }

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

void attention_forward(float* out, const float* q, const void* k_cache, const void* v_cache,
                       const AttentionShape& shape, const int32_t* pos, const int32_t* seq) {
  // The scalar variant stays the plain specification; the others take prompt runs blocked.
  if (!use_avx2()) return ref::attention_forward(out, q, k_cache, v_cache, shape, pos, seq);
  attention_forward_runs(out, q, k_cache, v_cache, shape, pos, seq, avx2::attention_forward);
}

}  // namespace distill
