// AVX2: the Q4_0 and MXFP4 decode matvecs (one input row), two blocks per 256-bit vector — the
// AVX-512 kernel's layout at half the width (kernels/avx512/matvec.cpp). Each block's 16 bytes sit
// in one 128-bit lane, so the low nibbles of a pair (values 0-15 of each block) are one vector of
// unsigned levels and the high nibbles (16-31) another, with no shuffle but the load's insert; x is
// stored once per call in that order. maddubs(u, x) pairs the levels with x in int16 (two vectors
// added: |sum| ≤ 4·24·127 < 2^15), madd widens to int32 lanes (0-3 the first block, 4-7 the second),
// and Σ offset·x (precomputed per pair) is subtracted there: value = scale · (u − offset), with
// u = the Q4_0 nibble (offset 8) or MXFP4's doubled E2M1 level + 12 looked up per nibble (offset
// 12, scale halved). One vpmaddubsw per 16 values, where unpacking each block on its own took two.
#include "kernels/activation_reuse.h"
#include "kernels/avx2/simd.h"
#include "kernels/block_scales8.h"
#include "kernels/kernels.h"
#include "kernels/parallel.h"
#include "kernels/prefetch.h"
#include "kernels/quant_blocks.h"

#include <immintrin.h>

#include <algorithm>
#include <cstring>
#include <vector>

namespace distill::avx2 {

namespace {

// The unsigned levels of 32 nibbles (one block per 128-bit lane).
template <typename Block>
inline __m256i levels(__m256i nibbles) {
  if constexpr (U4Format<Block>::kLevels == nullptr) return nibbles;
  else return _mm256_shuffle_epi8(_mm256_broadcastsi128_si256(_mm_loadu_si128(reinterpret_cast<const __m128i*>(U4Format<Block>::kLevels))), nibbles);
}
struct ActivationPairs {
  const __m256i* lo;   // per pair of blocks: values 0-15 of each, one block per 128-bit lane
  const __m256i* hi;   // values 16-31
  const __m256i* off;  // Σ offset·x_q per int32 lane of the pair's dot
  const float* d;      // per block
};

// Σ (u − offset)·x_q of blocks w[0..r) (r = 1 or 2) in int32 lanes 0-3 (first) and 4-7 (second).
template <typename Block>
inline __m256i pair_dot(const Block* w, int r, const ActivationPairs& a, int64_t p) {
  const __m128i b0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w[0].qs));
  const __m256i v = r == 2 ? _mm256_inserti128_si256(_mm256_castsi128_si256(b0), _mm_loadu_si128(reinterpret_cast<const __m128i*>(w[1].qs)), 1)
                           : _mm256_zextsi128_si256(b0);  // a lone last block: x is zero in lane 1
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  const __m256i lo = levels<Block>(_mm256_and_si256(v, low4));
  const __m256i hi = levels<Block>(_mm256_and_si256(_mm256_srli_epi16(v, 4), low4));
  const __m256i p16 = _mm256_add_epi16(_mm256_maddubs_epi16(lo, a.lo[p]), _mm256_maddubs_epi16(hi, a.hi[p]));
  return _mm256_sub_epi32(_mm256_madd_epi16(p16, _mm256_set1_epi16(1)), a.off[p]);
}


template <typename Block>
float row_dot(const Block* wr, const ActivationPairs& a, int64_t nb) {
  // pair i of eight blocks: lanes 0-3 take scale 2i, lanes 4-7 scale 2i + 1
  const __m256i spread[4] = {_mm256_setr_epi32(0, 0, 0, 0, 1, 1, 1, 1), _mm256_setr_epi32(2, 2, 2, 2, 3, 3, 3, 3),
                             _mm256_setr_epi32(4, 4, 4, 4, 5, 5, 5, 5), _mm256_setr_epi32(6, 6, 6, 6, 7, 7, 7, 7)};
  __m256 acc[2] = {_mm256_setzero_ps(), _mm256_setzero_ps()};
  const int64_t ahead = decode_prefetch_bytes();
  int64_t b = 0;
  for (; b + 8 <= nb; b += 8) {
    prefetch_ahead(wr + b, ahead, int64_t(8 * sizeof(Block)));
    const __m256 s8 = _mm256_mul_ps(scales8(wr + b), _mm256_loadu_ps(a.d + b));
    for (int i = 0; i < 4; ++i)
      acc[i & 1] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(pair_dot(wr + b + 2 * i, 2, a, b / 2 + i)),
                                   _mm256_permutevar8x32_ps(s8, spread[i]), acc[i & 1]);
  }
  for (; b < nb; b += 2) {  // up to three pairs left, the last maybe a lone block
    const int r = int(std::min<int64_t>(2, nb - b));
    const float s0 = U4Format<Block>::scale(wr[b]) * a.d[b], s1 = r == 2 ? U4Format<Block>::scale(wr[b + 1]) * a.d[b + 1] : 0.0f;
    const __m256 s = _mm256_setr_ps(s0, s0, s0, s0, s1, s1, s1, s1);
    acc[0] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(pair_dot(wr + b, r, a, b / 2)), s, acc[0]);
  }
  return hsum(_mm256_add_ps(acc[0], acc[1]));
}

}  // namespace

// Declared in kernels/avx2/quant.cpp's caller: x already quantized to Q8_0 blocks (xq, nb of them)
// by the caller's rounding, so this kernel and the others see the same int8 activation.
template <typename Block>
void matvec_u4(float* out, const float* x, const BlockQ8_0* xq, const void* w, const float* bias, int64_t N, int64_t K) {
  const int64_t nb = K / kQK, np = (nb + 1) / 2;
  static thread_local std::vector<float> xd;
  static thread_local std::vector<__m256i> lo, hi, off;
  static thread_local PreparedActivationKey key;
  if (int64_t(xd.size()) < nb) xd.resize(size_t(nb)), lo.resize(size_t(np)), hi.resize(size_t(np)), off.resize(size_t(np));
  if (!activation_prepared(key, x, K)) {
    for (int64_t b = 0; b < nb; ++b) xd[size_t(b)] = _cvtsh_ss(xq[b].d);
    const __m256i offset = _mm256_set1_epi8(U4Format<Block>::kOffset), ones = _mm256_set1_epi16(1);
    for (int64_t p = 0; p < np; ++p) {
      alignas(32) int8_t l[32] = {}, h[32] = {};
      for (int j = 0; j < 2 && 2 * p + j < nb; ++j) {
        std::memcpy(l + 16 * j, xq[2 * p + j].qs, 16);
        std::memcpy(h + 16 * j, xq[2 * p + j].qs + 16, 16);
      }
      lo[size_t(p)] = _mm256_load_si256(reinterpret_cast<const __m256i*>(l));
      hi[size_t(p)] = _mm256_load_si256(reinterpret_cast<const __m256i*>(h));
      off[size_t(p)] = _mm256_madd_epi16(
          _mm256_add_epi16(_mm256_maddubs_epi16(offset, lo[size_t(p)]), _mm256_maddubs_epi16(offset, hi[size_t(p)])), ones);
    }
  }
  const ActivationPairs a{lo.data(), hi.data(), off.data(), xd.data()};  // this thread's buffers, read by the team below
  const Block* const wb = static_cast<const Block*>(w);
  parallel_rows(out, bias, N, K, [&](int64_t n) { return row_dot(wb + n * nb, a, nb); });
}

template void matvec_u4<BlockQ4_0>(float*, const float*, const BlockQ8_0*, const void*, const float*, int64_t, int64_t);
template void matvec_u4<BlockMxfp4>(float*, const float*, const BlockQ8_0*, const void*, const float*, int64_t, int64_t);

}  // namespace distill::avx2
