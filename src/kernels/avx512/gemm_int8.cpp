// AVX-512 VNNI: many activation rows (prefill, batched decode) against block-quantized weights,
// in int8. Dequantizing to f32 for sgemm (what the other variants do) is bounded by the f32 FMA
// rate; vpdpbusd does 64 int8 multiply-adds per instruction, 4× an f32 FMA's 16.
//
// Shape of the computation. x is quantized to Q8_0 blocks of 32 (scale d_x per block, as the
// decode kernels do). A weight format is read as unsigned levels u (0..255) with a scale s per
// block (or per half block: Q6_K's scales cover 16 values), a constant integer centre c and, for
// Q4_K, an f32 offset o per block:  w = s·(u − c) + o. Per block of 32 values then
//   Σ w·x = s·d_x·(Σ u·x_q − c·Σ x_q) + o·(d_x·Σ x_q)
// with Σ u·x_q from vpdpbusd (u is its unsigned operand, x_q its signed one) and c·Σ x_q exact in
// int32, so the only rounding is the f32 scaling — the same arithmetic as the decode kernels.
//
//   format   u                          c    s               o
//   Q8_0     q + 128 (q int8)           128  d               —
//   Q4_0     nibble 0..15               8    d               —
//   Q4_K     nibble 0..15               0    d·sc_j          −dmin·m_j
//   Q6_K     6-bit level 0..63          32   d·sc (per 16)   —
//   MXFP4    doubled E2M1 + 12 (0..24)  12   2^(e − 128)     —
//
// Layout. Threads split the weight rows into panels of 16; a panel is repacked per call into a
// small buffer in VNNI order: per block, 8 steps × 16 rows × 4 consecutive values, so one 64-byte
// load feeds one vpdpbusd whose 16 int32 lanes are the panel's 16 rows and whose 4-byte broadcast
// is 4 values of one activation row. Q4_0 / Q4_K keep their nibbles packed (the low and high
// nibbles of a step's bytes serve two steps — Q4_0 — or two blocks — Q4_K) and unpack with an AND.
// A tile is 8 activation rows × the panel's 16 rows: 8 int32 accumulators per block (16 for Q6_K's
// two half-block scales), folded into 8 f32 accumulators at each block's end.
//
// Panels are built once at model load (pack_weight; Q8_0 1.06×, Q4_0 1.11×, Q4_K 1.33× the
// weights' bytes, shown by `distill info`) or, without that (Q6_K, DISTILL_REPACK=0, weights not
// loaded through Model::load), repacked per call into a per-thread buffer — paid once per weight
// and shared by all M rows. mmap'd weights are never written. Decode (M = 1) does not come here:
// the row kernels stream from DRAM at least as fast (kernels/matmul.cpp).
#include "core/tensor.h"
#include "kernels/int8_panels.h"

#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

namespace distill::avx512 {

namespace {

using namespace int8_panels;

constexpr int kMR = 8;   // activation rows per tile

// The unsigned levels of step s (0..7) of block b: 16 rows × 4 values.
template <Fmt F>
inline __m512i step_levels(const uint8_t* q, int64_t b, int s) {
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  if constexpr (F == Fmt::Q4_0) {
    const __m512i v = _mm512_loadu_si512(q + b * (kBlockBytes / 2) + (s & 3) * kStepBytes);
    return s < 4 ? _mm512_and_si512(v, low4) : _mm512_and_si512(_mm512_srli_epi16(v, 4), low4);
  } else if constexpr (F == Fmt::Q4_K) {
    const __m512i v = _mm512_loadu_si512(q + (b >> 1) * kBlockBytes + s * kStepBytes);
    return (b & 1) == 0 ? _mm512_and_si512(v, low4) : _mm512_and_si512(_mm512_srli_epi16(v, 4), low4);
  } else {
    return _mm512_loadu_si512(q + b * kBlockBytes + s * kStepBytes);
  }
}

// 4 activation values (one dword) of row m, block b, step s, broadcast to every lane.
inline __m512i x_step(const Activation& a, int64_t m, int64_t b, int s) {
  int32_t v;
  std::memcpy(&v, a.q[m * a.nb + b].qs + 4 * s, 4);
  return _mm512_set1_epi32(v);
}

// out rows m0 .. m0+MR−1, columns n0 .. n0+ncols−1 (ncols ≤ 16).
template <Fmt F, int MR>
void tile(float* out, int64_t ldo, const Panel& p, const Activation& a, int64_t m0, int64_t n0, int ncols, const float* bias) {
  constexpr bool kHalf = has_half_scales(F);
  __m512 acc[MR];
  for (int i = 0; i < MR; ++i) acc[i] = _mm512_setzero_ps();
  const uint8_t* q = p.q;
  for (int64_t b = 0; b < a.nb; ++b) {
    __m512i lo[MR], hi[MR];  // int32 sums over steps 0..3 and 4..7 (one sum unless kHalf)
    for (int i = 0; i < MR; ++i) lo[i] = _mm512_setzero_si512(), hi[i] = _mm512_setzero_si512();
    for (int s = 0; s < 8; ++s) {
      const __m512i u = step_levels<F>(q, b, s);
      for (int i = 0; i < MR; ++i) {
        __m512i& sum = kHalf && s >= 4 ? hi[i] : lo[i];
        sum = _mm512_dpbusd_epi32(sum, u, x_step(a, m0 + i, b, s));
      }
    }
    if constexpr (kHalf) {
      const __m512 s_lo = _mm512_loadu_ps(p.scale + b * 2 * kNR), s_hi = _mm512_loadu_ps(p.scale + b * 2 * kNR + kNR);
      for (int i = 0; i < MR; ++i) {
        const int64_t mb = (m0 + i) * a.nb + b;
        const __m512 dx = _mm512_set1_ps(a.d[mb]);
        const __m512 v_lo = _mm512_cvtepi32_ps(_mm512_sub_epi32(lo[i], _mm512_set1_epi32(a.csum[2 * mb])));
        const __m512 v_hi = _mm512_cvtepi32_ps(_mm512_sub_epi32(hi[i], _mm512_set1_epi32(a.csum[2 * mb + 1])));
        acc[i] = _mm512_fmadd_ps(_mm512_fmadd_ps(v_lo, s_lo, _mm512_mul_ps(v_hi, s_hi)), dx, acc[i]);
      }
    } else {
      const __m512 sw = _mm512_loadu_ps(p.scale + b * kNR);
      for (int i = 0; i < MR; ++i) {
        const int64_t mb = (m0 + i) * a.nb + b;
        __m512i v = lo[i];
        if constexpr (centre(F) != 0) v = _mm512_sub_epi32(v, _mm512_set1_epi32(a.csum[mb]));
        acc[i] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(v), _mm512_mul_ps(sw, _mm512_set1_ps(a.d[mb])), acc[i]);
        if constexpr (has_offset(F))
          acc[i] = _mm512_fmadd_ps(_mm512_loadu_ps(p.offset + b * kNR), _mm512_set1_ps(a.dsum[mb]), acc[i]);
      }
    }
  }
  const __mmask16 mask = __mmask16((1u << ncols) - 1);
  const __m512 bv = bias ? _mm512_maskz_loadu_ps(mask, bias + n0) : _mm512_setzero_ps();
  for (int i = 0; i < MR; ++i) _mm512_mask_storeu_ps(out + (m0 + i) * ldo + n0, mask, _mm512_add_ps(acc[i], bv));
}

template <Fmt F, int... R>
void tile_rows(int mr, float* out, int64_t ldo, const Panel& p, const Activation& a, int64_t m0, int64_t n0, int ncols,
               const float* bias, std::integer_sequence<int, R...>) {
  // the instantiation for mr rows (1..kMR)
  ((mr == R + 1 ? tile<F, R + 1>(out, ldo, p, a, m0, n0, ncols, bias) : void()), ...);
}

// packed: the weights' panels prepared at load (pack_weight), or null to repack each panel here.
template <Fmt F>
void gemm(float* out, const Activation& a, const void* w, const uint8_t* packed, const float* bias, int64_t M, int64_t N,
          int64_t K) {
  for_each_panel<F>(w, packed, M, N, K, [&](const Panel& p, int64_t n0, int nr) {
    for (int64_t m0 = 0; m0 < M; m0 += kMR) {
      const int mr = int(std::min<int64_t>(kMR, M - m0));
      if (mr == kMR) tile<F, kMR>(out, N, p, a, m0, n0, nr, bias);
      else tile_rows<F>(mr, out, N, p, a, m0, n0, nr, bias, std::make_integer_sequence<int, kMR - 1>());
    }
  });
}

template <Fmt F>
void run(float* out, const float* x, const void* w, const uint8_t* packed, const float* bias, int64_t M, int64_t N, int64_t K) {
  gemm<F>(out, prepare_activation(x, F, M, K), w, packed, bias, M, N, K);
}

void dispatch(float* out, const float* x, const void* w, Fmt f, const uint8_t* packed, const float* bias, int64_t M,
              int64_t N, int64_t K) {
  switch (f) {
    case Fmt::Q8_0: return run<Fmt::Q8_0>(out, x, w, packed, bias, M, N, K);
    case Fmt::Q4_0: return run<Fmt::Q4_0>(out, x, w, packed, bias, M, N, K);
    case Fmt::Q4_K: return run<Fmt::Q4_K>(out, x, w, packed, bias, M, N, K);
    case Fmt::Q6_K: return run<Fmt::Q6_K>(out, x, w, packed, bias, M, N, K);
    case Fmt::MXFP4: return run<Fmt::MXFP4>(out, x, w, packed, bias, M, N, K);
  }
}

}  // namespace

bool gemm_int8_supports(DType t) {
  return t == DType::Q8_0 || t == DType::Q4_0 || t == DType::Q4_K || t == DType::Q6_K || t == DType::MXFP4;
}

void gemm_int8(float* out, const float* x, const void* w, DType w_dtype, const float* bias, int64_t M, int64_t N, int64_t K) {
  if (!gemm_int8_supports(w_dtype)) return avx2::matmul_forward(out, x, w, w_dtype, bias, M, N, K);
  dispatch(out, x, w, format_of(w_dtype), nullptr, bias, M, N, K);
}

struct PackedWeight {
  DType dtype;
  int64_t N, K;
  std::shared_ptr<void> data;  // 64-byte aligned panels, panel_bytes each
  size_t bytes;
};

size_t packed_bytes_for(DType w_dtype, int64_t N, int64_t K) {
  // Q6_K's and MXFP4's panels hold a byte per level (1.5× and 2.1× the weights): they are repacked
  // per call instead — MXFP4 is what large mixtures of experts are stored in.
  if (!gemm_int8_supports(w_dtype) || w_dtype == DType::Q6_K || w_dtype == DType::MXFP4 || K % dtype_block(w_dtype) != 0)
    return 0;
  return size_t((N + kNR - 1) / kNR * panel_bytes(format_of(w_dtype), K));
}

std::shared_ptr<const PackedWeight> pack_weight(const void* w, DType w_dtype, int64_t N, int64_t K) {
  const size_t bytes = packed_bytes_for(w_dtype, N, K);
  if (bytes == 0) return nullptr;
  const Fmt f = format_of(w_dtype);
  const int64_t n_panels = (N + kNR - 1) / kNR, pb = panel_bytes(f, K);
  auto p = std::make_shared<PackedWeight>(PackedWeight{w_dtype, N, K, aligned_alloc_shared(bytes), bytes});
  uint8_t* const base = static_cast<uint8_t*>(p->data.get());
#pragma omp parallel for schedule(static)
  for (int64_t t = 0; t < n_panels; ++t) {
    const Panel panel = panel_at(base + t * pb, f, K);
    const int nr = int(std::min<int64_t>(kNR, N - t * kNR));
    switch (f) {
      case Fmt::Q8_0: repack_panel<Fmt::Q8_0>(panel, w, t * kNR, nr, K); break;
      case Fmt::Q4_0: repack_panel<Fmt::Q4_0>(panel, w, t * kNR, nr, K); break;
      case Fmt::Q4_K: repack_panel<Fmt::Q4_K>(panel, w, t * kNR, nr, K); break;
      case Fmt::Q6_K: repack_panel<Fmt::Q6_K>(panel, w, t * kNR, nr, K); break;
      case Fmt::MXFP4: break;  // never packed (see above)
    }
  }
  return p;
}

size_t packed_bytes(const PackedWeight& p) { return p.bytes; }

void gemm_int8_packed(float* out, const float* x, const PackedWeight& p, const float* bias, int64_t M) {
  dispatch(out, x, nullptr, format_of(p.dtype), static_cast<const uint8_t*>(p.data.get()), bias, M, p.N, p.K);
}

}  // namespace distill::avx512
