// Eight consecutive 32-value blocks' scales as one f32 vector, for the decode kernels of the AVX2
// and AVX-512 files: converting each block's f16 or E8M0 scale on its own (a scalar conversion,
// multiply and broadcast per block) kept those loops compute-bound. The kernels multiply the
// vector by the activation's eight d_x and give each block its lane by a permutation.
//
// Included by sources compiled with different instruction sets: internal linkage (as
// int8_panels.h), so no copy compiled for AVX-512 can be linked into the AVX2 file.
#pragma once

#include "kernels/quant_blocks.h"

#include <immintrin.h>

#include <array>

namespace distill {
namespace {

template <typename Block>
inline __m256 f16_scales8(const Block* w) {
  return _mm256_cvtph_ps(_mm_setr_epi16(short(w[0].d), short(w[1].d), short(w[2].d), short(w[3].d), short(w[4].d),
                                        short(w[5].d), short(w[6].d), short(w[7].d)));
}
inline __m256 scales8(const BlockQ4_0* w) { return f16_scales8(w); }
inline __m256 scales8(const BlockQ8_0* w) { return f16_scales8(w); }
// 2^(e − 128) for eight E8M0 bytes, as mxfp4_half_scale: (e − 1) << 23 from e = 2, else the subnormals.
inline __m256 scales8(const BlockMxfp4* w) {
  const __m256i e = _mm256_setr_epi32(w[0].e, w[1].e, w[2].e, w[3].e, w[4].e, w[5].e, w[6].e, w[7].e);
  const __m256i normal = _mm256_slli_epi32(_mm256_sub_epi32(e, _mm256_set1_epi32(1)), 23);
  const __m256i subnormal = _mm256_sllv_epi32(_mm256_set1_epi32(0x00200000), e);  // e = 0 or 1
  return _mm256_castsi256_ps(_mm256_blendv_epi8(subnormal, normal, _mm256_cmpgt_epi32(e, _mm256_set1_epi32(1))));
}

// The two 4-bit formats as unsigned levels u with value = scale · (u − kOffset), for the decode
// kernels that feed u straight to an unsigned-by-signed int8 product: Q4_0 stores u itself (offset
// 8); MXFP4's nibble is an E2M1 code, looked up in kLevels as its doubled value + 12 (0..24; the
// scale is halved to match, as in kernels/quant_blocks.h). Each ISA looks the levels up per
// 128-bit lane from kLevels (null: the nibble is the level).
template <typename Block> struct U4Format;
template <> struct U4Format<BlockQ4_0> {
  static constexpr int kOffset = 8;
  static constexpr const int8_t* kLevels = nullptr;
  static float scale(const BlockQ4_0& b) { return _cvtsh_ss(b.d); }
};
inline constexpr std::array<int8_t, 16> kMxfp4Levels = [] {
  std::array<int8_t, 16> u{};
  for (int i = 0; i < 16; ++i) u[size_t(i)] = int8_t(kMxfp4Doubled[i] + 12);
  return u;
}();
template <> struct U4Format<BlockMxfp4> {
  static constexpr int kOffset = 12;
  static constexpr const int8_t* kLevels = kMxfp4Levels.data();
  static float scale(const BlockMxfp4& b) { return mxfp4_half_scale(b.e); }
};

}  // namespace
}  // namespace distill
