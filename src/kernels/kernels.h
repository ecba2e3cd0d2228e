// The kernel library: what the model and tools call. Each kernel exists as a plain scalar
// reference (distill::ref) and an AVX2+FMA+F16C / OpenMP variant (distill::avx2); the functions in
// namespace distill pick the fastest variant the CPU supports (f32 matmul goes to OpenBLAS).
// Tests check every variant against the reference.
#pragma once

#include "core/dtype.h"

#include <cstdint>

namespace distill {

struct AttentionShape {
  int64_t n_tokens = 0;
  int64_t n_head = 0;
  int64_t n_kv_head = 0;
  int64_t head_dim = 0;
  int64_t n_ctx = 0;      // positions per cache slot
  int64_t window = 0;     // sliding window (0 = none)
  float scale = 1.0f;     // usually 1/sqrt(head_dim)
};

namespace ref {
#include "kernels/kernel_api.inc"
}
namespace avx2 {
#include "kernels/kernel_api.inc"
}
#include "kernels/kernel_api.inc"

enum class KernelVariant { Ref, Avx2 };
bool cpu_has_avx2();                        // AVX2 + FMA + F16C
KernelVariant active_kernel_variant();
void force_kernel_variant(KernelVariant v);  // for tests and benchmarks
const char* kernel_variant_name(KernelVariant v);

}  // namespace distill
