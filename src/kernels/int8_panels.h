// The int8 weight panels of the quantized GEMMs (kernels/avx512/gemm_int8.cpp, and the AVX2 one
// in kernels/avx2/gemm_int8.cpp): the formats as unsigned levels with a scale, an integer centre
// and an optional offset (w = s·(u − c) + o), the panel layout and its repacking, and the
// activation rows quantized to Q8_0 with the per-block terms the tiles read. The layout and the
// arithmetic are described in kernels/avx512/gemm_int8.cpp.
//
// Included by sources compiled with different instruction sets: everything here has internal
// linkage (an anonymous namespace), so each includes its own copy and no function compiled for
// AVX-512 can be picked by the linker for the AVX2 file.
#pragma once

#include "kernels/kernels.h"
#include "kernels/quant_blocks.h"

#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

namespace distill::int8_panels {

namespace {

constexpr int kNR = 16;  // weight rows per panel: the 16 int32 lanes of a zmm
constexpr int kStepBytes = 64;               // one step: 16 rows × 4 values
constexpr int kBlockBytes = 8 * kStepBytes;   // a block of 32 values, unpacked (one byte per value)

enum class Fmt { Q8_0, Q4_0, Q4_K, Q6_K, MXFP4 };

constexpr bool has_half_scales(Fmt f) { return f == Fmt::Q6_K; }
constexpr bool has_offset(Fmt f) { return f == Fmt::Q4_K; }
constexpr int centre(Fmt f) { return f == Fmt::Q8_0 ? 128 : f == Fmt::Q4_0 ? 8 : f == Fmt::Q6_K ? 32 : f == Fmt::MXFP4 ? 12 : 0; }

// Bytes of repacked levels per block: Q4_0 packs 32 nibbles in 4 steps; Q4_K packs a pair of
// blocks (64 nibbles) in 8 steps, i.e. 4 steps' worth per block.
constexpr int64_t panel_block_bytes(Fmt f) { return f == Fmt::Q4_0 || f == Fmt::Q4_K ? kBlockBytes / 2 : kBlockBytes; }

// One panel: the levels, and per block the scales (16, or 32 for half-block scales: values 0..15
// then 16..31) and the offsets (16), all f32.
struct Panel {
  uint8_t* q;
  float* scale;
  float* offset;
};
constexpr int scales_per_block(Fmt f) { return has_half_scales(f) ? 2 * kNR : kNR; }
// Bytes of one panel of K columns: levels, then scales, then offsets (64-byte multiples each).
constexpr int64_t panel_bytes(Fmt f, int64_t K) {
  const int64_t nb = K / kQK;
  return nb * panel_block_bytes(f) + nb * scales_per_block(f) * 4 + (has_offset(f) ? nb * kNR * 4 : 0);
}
Panel panel_at(uint8_t* base, Fmt f, int64_t K) {
  const int64_t nb = K / kQK;
  float* scale = reinterpret_cast<float*>(base + nb * panel_block_bytes(f));
  return {base, scale, has_offset(f) ? scale + nb * scales_per_block(f) : nullptr};
}

// The activation rows: Q8_0 blocks, d_x per block, c·Σ x_q per block (or per half block), and
// d_x·Σ x_q per block (for the offset).
struct Activation {
  const BlockQ8_0* q;
  const float* d;
  const int32_t* csum;
  const float* dsum;
  int64_t nb;
};

inline void copy4(uint8_t* dst, const void* src) { std::memcpy(dst, src, 4); }

// Repacks weight rows n0 .. n0+nr−1 (nr ≤ 16; the rest of the panel is zero) of a [N, K] matrix.
template <Fmt F>
void repack_panel(const Panel& p, const void* w, int64_t n0, int nr, int64_t K) {
  const int64_t nb = K / kQK;
  const int64_t pbb = panel_block_bytes(F);
  std::memset(p.q, 0, size_t(nb * pbb));
  std::fill(p.scale, p.scale + nb * scales_per_block(F), 0.0f);
  if (has_offset(F)) std::fill(p.offset, p.offset + nb * kNR, 0.0f);
  for (int r = 0; r < nr; ++r) {
    const int64_t n = n0 + r;
    if constexpr (F == Fmt::Q8_0) {
      const BlockQ8_0* row = static_cast<const BlockQ8_0*>(w) + n * nb;
      for (int64_t b = 0; b < nb; ++b) {
        for (int s = 0; s < 8; ++s) {
          uint32_t v;
          std::memcpy(&v, row[b].qs + 4 * s, 4);
          v ^= 0x80808080u;  // int8 q -> unsigned q + 128
          std::memcpy(p.q + b * pbb + s * kStepBytes + 4 * r, &v, 4);
        }
        p.scale[b * kNR + r] = _cvtsh_ss(row[b].d);
      }
    } else if constexpr (F == Fmt::Q4_0) {
      const BlockQ4_0* row = static_cast<const BlockQ4_0*>(w) + n * nb;
      for (int64_t b = 0; b < nb; ++b) {
        // byte i holds values i (low nibble) and i + 16 (high): steps s and s + 4 share bytes 4s..4s+3
        for (int s = 0; s < 4; ++s) copy4(p.q + b * pbb + s * kStepBytes + 4 * r, row[b].qs + 4 * s);
        p.scale[b * kNR + r] = _cvtsh_ss(row[b].d);
      }
    } else if constexpr (F == Fmt::Q4_K) {
      const BlockQ4_K* row = static_cast<const BlockQ4_K*>(w) + n * (K / kQKK);
      for (int64_t sb = 0; sb < K / kQKK; ++sb) {
        const BlockQ4_K& blk = row[sb];
        const float d = _cvtsh_ss(blk.d), dmin = _cvtsh_ss(blk.dmin);
        for (int j = 0; j < 4; ++j) {  // bytes qs[32j..32j+31]: sub-block 2j low nibbles, 2j+1 high
          const int64_t pair = sb * 4 + j;
          for (int s = 0; s < 8; ++s) copy4(p.q + pair * 2 * pbb + s * kStepBytes + 4 * r, blk.qs + 32 * j + 4 * s);
          for (int h = 0; h < 2; ++h) {
            int sc, m;
            scale_min_k4(2 * j + h, blk.scales, &sc, &m);
            const int64_t b = sb * 8 + 2 * j + h;
            p.scale[b * kNR + r] = d * float(sc);
            p.offset[b * kNR + r] = -dmin * float(m);
          }
        }
      }
    } else if constexpr (F == Fmt::MXFP4) {
      const BlockMxfp4* row = static_cast<const BlockMxfp4*>(w) + n * nb;
      for (int64_t b = 0; b < nb; ++b) {
        uint8_t lv[kQK];  // value j from the low nibble of byte j, value j + 16 from its high nibble
        for (int j = 0; j < kQK / 2; ++j)
          lv[j] = uint8_t(kMxfp4Doubled[row[b].qs[j] & 0xF] + 12), lv[j + 16] = uint8_t(kMxfp4Doubled[row[b].qs[j] >> 4] + 12);
        for (int s = 0; s < 8; ++s) copy4(p.q + b * pbb + s * kStepBytes + 4 * r, lv + 4 * s);
        p.scale[b * kNR + r] = mxfp4_half_scale(row[b].e);
      }
    } else {  // Q6_K: levels unpacked to one byte each
      const BlockQ6_K* row = static_cast<const BlockQ6_K*>(w) + n * (K / kQKK);
      for (int64_t sb = 0; sb < K / kQKK; ++sb) {
        const BlockQ6_K& blk = row[sb];
        alignas(32) uint8_t lv[kQKK];
        const __m256i low4 = _mm256_set1_epi8(0x0F), low2 = _mm256_set1_epi8(0x03);
        for (int half = 0; half < 2; ++half) {
          // values 128·half + 32g + l: low 4 bits from ql (nibble g / 2 of byte l + 32·(g % 2)),
          // high 2 bits from bits 2g of qh[l]
          const __m256i l0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk.ql + 64 * half));
          const __m256i l1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk.ql + 64 * half + 32));
          const __m256i hb = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(blk.qh + 32 * half));
          auto high = [&](int shift) { return _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, shift), low2), 4); };
          const __m256i g[4] = {_mm256_or_si256(_mm256_and_si256(l0, low4), high(0)),
                                _mm256_or_si256(_mm256_and_si256(l1, low4), high(2)),
                                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), low4), high(4)),
                                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), low4), high(6))};
          for (int k = 0; k < 4; ++k) _mm256_store_si256(reinterpret_cast<__m256i*>(lv + 128 * half + 32 * k), g[k]);
        }
        const float d = _cvtsh_ss(blk.d);
        for (int j = 0; j < 8; ++j) {
          const int64_t b = sb * 8 + j;
          for (int s = 0; s < 8; ++s) copy4(p.q + b * pbb + s * kStepBytes + 4 * r, lv + 32 * j + 4 * s);
          p.scale[b * 2 * kNR + r] = d * float(blk.scales[2 * j]);
          p.scale[b * 2 * kNR + kNR + r] = d * float(blk.scales[2 * j + 1]);
        }
      }
    }
  }
}

Fmt format_of(DType t) {
  return t == DType::Q8_0 ? Fmt::Q8_0 : t == DType::Q4_0 ? Fmt::Q4_0 : t == DType::Q4_K ? Fmt::Q4_K : t == DType::Q6_K ? Fmt::Q6_K : Fmt::MXFP4;
}

// The activation rows quantized to Q8_0 with the per-block terms the tiles read, in this thread's
// buffers (valid until the next call on this thread).
Activation prepare_activation(const float* x, Fmt f, int64_t M, int64_t K) {
  const int64_t nb = K / kQK;
  const int32_t c = centre(f);
  const bool half = has_half_scales(f);
  static thread_local std::vector<BlockQ8_0> xq;
  static thread_local std::vector<float> xd, xds;
  static thread_local std::vector<int32_t> xcs;
  if (int64_t(xq.size()) < M * nb) xq.resize(size_t(M * nb)), xd.resize(size_t(M * nb)), xds.resize(size_t(M * nb)), xcs.resize(size_t(2 * M * nb));
  BlockQ8_0* const xqp = xq.data();
  float* const xdp = xd.data();
  float* const xdsp = xds.data();
  int32_t* const xcsp = xcs.data();
#pragma omp parallel for schedule(static) if (M > 8)
  for (int64_t m = 0; m < M; ++m) {
    avx2::quantize_row(xqp + m * nb, DType::Q8_0, x + m * K, K);
    for (int64_t b = 0; b < nb; ++b) {
      const int64_t mb = m * nb + b;
      int s_lo = 0, s_hi = 0;  // Σ x_q over values 0..15 and 16..31
      for (int j = 0; j < 16; ++j) s_lo += xqp[mb].qs[j], s_hi += xqp[mb].qs[16 + j];
      xdp[mb] = _cvtsh_ss(xqp[mb].d);
      xdsp[mb] = xdp[mb] * float(s_lo + s_hi);
      if (half) xcsp[2 * mb] = c * s_lo, xcsp[2 * mb + 1] = c * s_hi;
      else xcsp[mb] = c * (s_lo + s_hi);
    }
  }
  return {xqp, xdp, xcsp, xdsp, nb};
}

// Threads split the weight rows into panels; each panel (prepared at load when `packed`, else
// repacked here into this thread's buffer) goes to run(panel, first row, rows in it).
template <Fmt F, typename RunTiles>
void for_each_panel(const void* w, const uint8_t* packed, int64_t M, int64_t N, int64_t K, const RunTiles& run) {
  const int64_t n_panels = (N + kNR - 1) / kNR;
  const int64_t pb = panel_bytes(F, K);
#pragma omp parallel if (n_panels > 1 && M * N * K > 100000)
  {
    static thread_local std::vector<uint8_t> buf;  // this thread's panel when repacking here
    if (!packed && int64_t(buf.size()) < pb + 64) buf.resize(size_t(pb + 64));
    uint8_t* const own = buf.data() + (64 - reinterpret_cast<uintptr_t>(buf.data()) % 64) % 64;  // 64-byte aligned
#pragma omp for schedule(static)
    for (int64_t t = 0; t < n_panels; ++t) {
      const int64_t n0 = t * kNR;
      const int nr = int(std::min<int64_t>(kNR, N - n0));
      Panel p;
      if (packed) {
        p = panel_at(const_cast<uint8_t*>(packed) + t * pb, F, K);  // read only
      } else {
        p = panel_at(own, F, K);
        repack_panel<F>(p, w, n0, nr, K);
      }
      run(p, n0, nr);
    }
  }
}

}  // namespace

}  // namespace distill::int8_panels
