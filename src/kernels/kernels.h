// The kernel library: what the model and tools call. Each kernel exists as a plain scalar
// reference (distill::ref) and an AVX2+FMA+F16C / OpenMP variant (distill::avx2); the functions in
// namespace distill pick the fastest variant the CPU supports (f32 matmul goes to OpenBLAS).
// Tests check every variant against the reference.
#pragma once

#include "core/dtype.h"

#include <memory>

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
  DType kv_type = DType::F32;  // the cache's elements: F32 or F16 (half the bytes a decode step reads)
  // GPT-OSS's attention sinks: per query head a learned logit that joins the softmax's
  // denominator (it takes probability mass but adds no value), or null.
  const float* sinks = nullptr;  // [n_head]
  // A sliding-window layer's cache keeps only a slot's recent positions: row r of slot s holds
  // position first_pos[s] + r. Null: row p holds position p (the whole context).
  const int64_t* first_pos = nullptr;  // [n_slots]
};

// The row position 0 of cache slot `slot` would occupy (rows n_ctx per slot). Negative when the
// slot keeps only a window, so add a kept position before making a pointer of it.
inline int64_t slot_origin(const AttentionShape& s, int64_t slot) {
  return slot * s.n_ctx - (s.first_pos ? s.first_pos[slot] : 0);
}

// out[M, N] = x[M, K] · W (+ bias[N]); rows of out and x strided by ldo and ldx. W is w[N, K]ᵀ
// (nn.Linear's layout: w rows of stride ldw, F32 / F16 / BF16) or, with w_kn, w[K, N] itself
// (F32, rows of stride ldw). The many-row product of prefill and of attention over a prompt.
struct GemmF32Args {
  float* out;
  int64_t ldo;
  const float* x;
  int64_t ldx;
  const void* w;
  int64_t ldw;
  DType w_dtype = DType::F32;
  bool w_kn = false;
  const float* bias = nullptr;
  int64_t M = 0, N = 0, K = 0;
};
// The active variant's panel GEMM; OpenBLAS's sgemm for the scalar variant (F32 weights only).
void gemm_f32(const GemmF32Args& g);

// c[M, N] (= or +=) op(A)[M, K] · op(B)[K, N] with both operands rounded to bf16 (nearest even)
// and the products summed in f32: training's matmuls under --precision bf16, as mixed-precision
// autocast computes them. A is f32: A(m, k) = a[trans_a ? k·lda + m : m·lda + k]; B is f32 or
// bf16 (a weight): B(k, n) = b[trans_b ? n·ldb + k : k·ldb + n]. vdpbf16ps with AVX-512 BF16
// (twice an f32 FMA's multiply-adds per instruction), else rounded copies through sgemm.
struct GemmBf16Args {
  float* c;
  int64_t ldc;
  const float* a;
  int64_t lda;
  bool trans_a = false;
  const void* b;
  int64_t ldb;
  bool trans_b = false;
  DType b_dtype = DType::F32;
  int64_t M = 0, N = 0, K = 0;
  bool accumulate = false;  // c += rather than c =
};
void gemm_bf16(const GemmBf16Args& g);
// Whether gemm_bf16 runs on vdpbf16ps here; elsewhere it multiplies rounded f32 copies (the same
// values, slower than f32 products).
bool gemm_bf16_native();
bool cpu_has_avx512_bf16();  // AVX-512 (as cpu_has_avx512) + AVX512_BF16

// While one lives on a thread, matmul_forward and matmul_backward of f32 / bf16 weights on that
// thread multiply through gemm_bf16: training's --precision bf16 (the f32 master weights and
// everything outside the products stay f32; the scope is never open around a decode step).
class Bf16MatmulScope {
 public:
  explicit Bf16MatmulScope(bool on);
  ~Bf16MatmulScope();
  Bf16MatmulScope(const Bf16MatmulScope&) = delete;
  Bf16MatmulScope& operator=(const Bf16MatmulScope&) = delete;

 private:
  bool previous_;
};
bool bf16_matmuls();

namespace ref {
#include "kernels/kernel_api.inc"
}
namespace avx2 {
#include "kernels/kernel_api.inc"
// matmul_forward for block-quantized weights (kernels/avx2/quant.cpp).
void matmul_quantized(float* out, const float* x, const void* w, DType type, const float* bias, int64_t M, int64_t N, int64_t K);
// Many rows against Q8_0 / Q4_0 / Q4_K / Q6_K / MXFP4 weights as int8 products on repacked panels
// (kernels/avx2/gemm_int8.cpp); other dtypes go to matmul_forward.
bool gemm_int8_supports(DType w_dtype);
void gemm_int8(float* out, const float* x, const void* w, DType w_dtype, const float* bias, int64_t M, int64_t N, int64_t K);
// Many rows against F32 / F16 / BF16 weights: the panel GEMM of kernels/gemm_f32_panels.h.
void gemm_f32(const GemmF32Args& g);
}
// AVX-512 F/BW/VL + VNNI: the Q8_0 and Q4_0 decode matvecs (one input row, vpdpbusd); every
// other kernel and shape runs the AVX2 variant (kernels/avx512/matvec.cpp).
namespace avx512 {
void matmul_forward(float* out, const float* x, const void* w, DType w_dtype, const float* bias, int64_t M, int64_t N, int64_t K);
// Many rows against Q8_0 / Q4_0 / Q4_K / Q6_K weights as int8 VNNI products on repacked panels
// (kernels/avx512/gemm_int8.cpp); other dtypes go to the AVX2 variant.
bool gemm_int8_supports(DType w_dtype);
void gemm_int8(float* out, const float* x, const void* w, DType w_dtype, const float* bias, int64_t M, int64_t N, int64_t K);
// The same panels built once (at model load) for a whole [N, K] weight, so no call repacks:
// null for a dtype without int8 panels. Memory the caller keeps beside the (untouched) weights.
struct PackedWeight;
std::shared_ptr<const PackedWeight> pack_weight(const void* w, DType w_dtype, int64_t N, int64_t K);
size_t packed_bytes(const PackedWeight& p);
// What pack_weight would allocate for such a weight (0: it packs none), without packing.
size_t packed_bytes_for(DType w_dtype, int64_t N, int64_t K);
void gemm_int8_packed(float* out, const float* x, const PackedWeight& p, const float* bias, int64_t M);
// Many rows against F32 / F16 / BF16 weights (kernels/gemm_f32_panels.h, 16-lane vectors).
void gemm_f32(const GemmF32Args& g);
// Decode (one input row) against Q4_K / Q6_K weights, K a multiple of 256 (kernels/avx512/matvec_kquant.cpp).
void matvec_q4_k(float* out, const float* x, const void* w, const float* bias, int64_t N, int64_t K);
void matvec_q6_k(float* out, const float* x, const void* w, const float* bias, int64_t N, int64_t K);
// gemm_bf16 on vdpbf16ps (kernels/avx512/gemm_bf16.cpp; AVX512_BF16 required).
void gemm_bf16(const GemmBf16Args& g);
}
#include "kernels/kernel_api.inc"

// A weight prepared once, at model load, for the active kernels: int8 panels for the AVX-512 GEMM
// and decode (Q8_0/Q4_0/Q4_K/Q6_K); null where the active variant has nothing to prepare.
using PreparedWeight = avx512::PackedWeight;
std::shared_ptr<const PreparedWeight> prepare_weight(const void* w, DType w_dtype, int64_t N, int64_t K);
size_t prepared_bytes(const PreparedWeight& p);
// The bytes prepare_weight would take for a weight of this dtype and shape (0 when none), for
// memory plans made before loading.
size_t prepared_bytes_for(DType w_dtype, int64_t N, int64_t K);
// matmul_forward reading the prepared form when there is one and the active variant uses it.
void matmul_prepared(float* out, const float* x, const void* w, DType w_dtype, const PreparedWeight* prepared,
                     const float* bias, int64_t M, int64_t N, int64_t K);

// One decode matvec of a batch: out[N] = W[N, K] · x (+ bias), W of any weight dtype.
struct MatvecJob {
  float* out;
  const float* x;
  const void* w;
  DType w_dtype;
  const float* bias;  // or null
  int64_t N, K;
};
// Decode matvecs run as one parallel region (q/k/v and gate/up read one input, a mixture's chosen
// experts several): each thread takes an equal share of the weight bytes of all of them, and
// quantizes each input once for its share (kernels/activation_reuse.h), where one region per
// matrix paid a fork, a barrier and a quantization of x each. Every out[n] is the value
// matmul_forward(…, M = 1, …) gives: the same row kernel computes it, whichever thread runs it.
void matvec_batch(const MatvecJob* jobs, int n_jobs);

// attention_forward's splitter (kernels/attention_prefill.cpp): runs of ≥ 16 tokens of one slot at
// consecutive positions go through blocked matrix products, every other token to `per_query`.
using AttentionKernel = void (*)(float*, const float*, const void*, const void*, const AttentionShape&,
                                 const int32_t*, const int32_t*);
void attention_forward_runs(float* out, const float* q, const void* k_cache, const void* v_cache,
                            const AttentionShape& shape, const int32_t* pos, const int32_t* seq, AttentionKernel per_query);

// The variants, chosen once at start from CPUID (the best the CPU runs), or by the environment:
// DISTILL_ISA=scalar|avx2|avx512 (a variant the CPU lacks falls back, with a message).
enum class KernelVariant { Ref, Avx2, Avx512 };
bool cpu_has_avx2();                        // AVX2 + FMA + F16C
bool cpu_has_avx512();                      // AVX-512 F + BW + VL + VNNI (and AVX2)
bool cpu_supports(KernelVariant v);
KernelVariant best_kernel_variant();        // the best this CPU runs
KernelVariant active_kernel_variant();
void force_kernel_variant(KernelVariant v);  // for tests and benchmarks (falls back if unsupported)
const char* kernel_variant_name(KernelVariant v);  // "scalar", "avx2", "avx512"

}  // namespace distill

// ---------------------------------------------------------------------------------------------
// Training: backward passes and the attention variant that keeps its
// probabilities for the backward. One implementation each (OpenMP, compiler-vectorised loops and
// OpenBLAS); every one is checked against finite differences in tests/test_backward_ops.cpp.
// Gradients named d_<x> are accumulated (+=) into weight gradients and overwritten for inputs
// unless the argument says otherwise.
namespace distill {

// y = x W^T + b  ->  d_x (= or += if accumulate_dx) d_y W;  d_w += d_y^T x;  d_b += Σ_rows d_y.
// d_x, d_w, d_b may be null (d_w null: a frozen weight). x [M, K], w [N, K] of any weight dtype
// (d_x widens it a chunk of rows at a time), d_y [M, N].
void matmul_backward(float* d_x, float* d_w, float* d_b, const float* d_y, const float* x, const void* w, DType w_dtype,
                     int64_t M, int64_t N, int64_t K, bool accumulate_dx);

// LoRA's low-rank branch beside a frozen linear (model/lora.h): y[M, N] += scale · (x Aᵀ) Bᵀ with
// x [M, K], A [r, K], B [N, r]. Its backward, with u = x Aᵀ and v = d_y B (both [M, r]):
// d_x[M, K] += scale · v A;  d_a[r, K] += scale · vᵀ x;  d_b[N, r] += scale · d_yᵀ u.
void lora_forward(float* y, const float* x, const float* a, const float* b, float scale, int64_t M, int64_t N, int64_t K,
                  int64_t r);
void lora_backward(float* d_x, float* d_a, float* d_b, const float* d_y, const float* x, const float* a, const float* b,
                   float scale, int64_t M, int64_t N, int64_t K, int64_t r);

// RMSNorm: d_x (overwritten; may alias d_y), d_w += Σ_rows d_y * x * rstd (d_w may be null: frozen).
// x [n_rows, dim].
void rmsnorm_backward(float* d_x, float* d_w, const float* d_y, const float* x, const float* w, int64_t n_rows,
                      int64_t dim, float eps);

// RoPE has no backward kernel of its own: it is a rotation, so its backward is rope_forward at
// the negated positions (the transpose of a rotation by θ is the rotation by −θ).

// h = silu(g) * u  ->  d_g, d_u (overwritten; d_g may alias d_h).
void swiglu_backward(float* d_g, float* d_u, const float* d_h, const float* g, const float* u, int64_t n);

// d_table[ids[i]] += d_out[i]. table f32 [vocab, dim].
void embedding_backward(float* d_table, const float* d_out, const int32_t* ids, int64_t n, int64_t dim);

// Causal GQA attention over n_seq sequences of seq_len tokens each (positions 0..seq_len-1):
// q [n_seq*seq_len, n_head*head_dim], k, v [n_seq*seq_len, n_kv_head*head_dim],
// out like q. Memory-lean: nothing of size seq_len² outlives a call (see attention_train.cpp).
struct TrainAttentionShape {
  int64_t n_seq, seq_len, n_head, n_kv_head, head_dim;
  float scale;
  int64_t window = 0;  // sliding window: position i attends to max(0, i-window+1)..i (0 = none)
};
// out [n_seq·T, n_head·head_dim]; lse [n_seq, n_head, T]: log Σ exp of each row's masked
// scores, all the backward needs to recompute the probabilities (memory O(T), not O(T²)).
// scratch: attention_train_scratch_floats(s) floats (a few query blocks per OpenMP thread).
size_t attention_train_scratch_floats(const TrainAttentionShape& s);
void attention_train_forward(float* out, float* lse, const float* q, const float* k, const float* v,
                             const TrainAttentionShape& s, float* scratch);
// d_q, d_k, d_v overwritten; the same scratch as the forward.
void attention_backward(float* d_q, float* d_k, float* d_v, const float* d_out, const float* lse, const float* q,
                        const float* k, const float* v, const TrainAttentionShape& s, float* scratch);

}  // namespace distill
