// AVX2: quantized matmul. Q8_0 / Q4_0 weights: x is quantized to Q8_0 blocks on the fly and each
// block product is an int8 dot (maddubs: |w| · sign-adjusted x, pairs summed in int16, then int32),
// scaled by d_w · d_x into f32 accumulators — the weights are read once, in their 8.5 / 4.5 bits
// per value. K-quants: each weight row is dequantized to f32 (scalar, per thread) and dotted.
// Work splits over blocks of weight rows; a weight row is reused for up to 4 input rows.
#include "kernels/activation_reuse.h"
#include "kernels/avx2/simd.h"
#include "kernels/block_scales8.h"
#include "kernels/kernels.h"
#include "kernels/parallel.h"
#include "kernels/prefetch.h"
#include "kernels/quant_blocks.h"

#include <algorithm>
#include <type_traits>
#include <cmath>
#include <vector>

#ifndef Q8ROWS
#define Q8ROWS 2
#endif
#ifndef Q4ROWS
#define Q4ROWS 2
#endif
namespace distill::avx2 {

namespace {

constexpr int64_t kRowsPerTask = 16;
constexpr int kInputTile = 4;

// Q8_0 of 32 floats (round to nearest even, as ggml's AVX2 quantizer).
inline void quantize_block_q8_0(BlockQ8_0* y, const float* x) {
  __m256 v[4];
  __m256 amax = _mm256_setzero_ps();
  const __m256 sign = _mm256_set1_ps(-0.0f);
  for (int i = 0; i < 4; ++i) {
    v[i] = _mm256_loadu_ps(x + 8 * i);
    amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign, v[i]));
  }
  const float d = hmax(amax) / 127.0f;
  y->d = _cvtss_sh(d, 0);
  const __m256 id = _mm256_set1_ps(d != 0 ? 1.0f / d : 0.0f);
  __m256i q[4];
  for (int i = 0; i < 4; ++i) q[i] = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(v[i], id), _MM_FROUND_TO_NEAREST_INT));
  // pack 32 int32 -> 32 int8; packs work per 128-bit lane, so fix the order with a permute
  __m256i a = _mm256_packs_epi32(q[0], q[1]);
  __m256i b = _mm256_packs_epi32(q[2], q[3]);
  __m256i c = _mm256_packs_epi16(a, b);
  c = _mm256_permutevar8x32_epi32(c, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
  _mm256_storeu_si256(reinterpret_cast<__m256i*>(y->qs), c);
}

// 32 int8 weights of a block.
inline __m256i weights_q8_0(const BlockQ8_0& b) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b.qs)); }
// The nibbles of a Q4_0 block, unsigned 0..15: values 0..15 (returned) and 16..31 (*hi).
inline __m128i nibbles_lo_hi(const BlockQ4_0& b, __m128i* hi) {
  const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b.qs));
  const __m128i mask = _mm_set1_epi8(0x0F);
  *hi = _mm_and_si128(_mm_srli_epi16(packed, 4), mask);
  return _mm_and_si128(packed, mask);
}
inline __m256i weights_q4_0(const BlockQ4_0& b) {
  __m128i hi;
  const __m128i lo = nibbles_lo_hi(b, &hi);
  return _mm256_sub_epi8(_mm256_set_m128i(hi, lo), _mm256_set1_epi8(8));
}
// The 32 values of an MXFP4 block as int8 (E2M1 doubled: −12..12), by a table lookup per nibble.
inline __m256i weights_mxfp4(const BlockMxfp4& b) {
  const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b.qs));
  const __m128i mask = _mm_set1_epi8(0x0F);
  const __m128i table = _mm_loadu_si128(reinterpret_cast<const __m128i*>(kMxfp4Doubled));
  const __m128i lo = _mm_shuffle_epi8(table, _mm_and_si128(packed, mask));
  const __m128i hi = _mm_shuffle_epi8(table, _mm_and_si128(_mm_srli_epi16(packed, 4), mask));
  return _mm256_set_m128i(hi, lo);
}
// Each 32-value format's block as int8 values and its scale in f32: value = scale · int8.
inline __m256i block_values(const BlockQ8_0& b) { return weights_q8_0(b); }
inline __m256i block_values(const BlockQ4_0& b) { return weights_q4_0(b); }
inline __m256i block_values(const BlockMxfp4& b) { return weights_mxfp4(b); }
inline float block_scale(const BlockQ8_0& b) { return _cvtsh_ss(b.d); }
inline float block_scale(const BlockQ4_0& b) { return _cvtsh_ss(b.d); }
inline float block_scale(const BlockMxfp4& b) { return mxfp4_half_scale(b.e); }

// Σ w·x over 32 int8 pairs as 8 int32 sums converted to f32.
inline __m256 dot_i8(__m256i w, __m256i x) {
  const __m256i aw = _mm256_sign_epi8(w, w);  // |w|, unsigned for maddubs
  const __m256i sx = _mm256_sign_epi8(x, w);  // x with w's sign (0 where w is 0)
  const __m256i p16 = _mm256_maddubs_epi16(aw, sx);
  return _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, _mm256_set1_epi16(1)));
}

template <typename Block>
void matmul_q(float* out, const BlockQ8_0* xq, const void* w, const float* bias, int64_t M, int64_t N, int64_t K) {
  const int64_t nb = K / kQK;
  const int64_t n_tasks = (N + kRowsPerTask - 1) / kRowsPerTask;
#pragma omp parallel for schedule(static) if (n_tasks > 1 && M * N * K > 100000)
  for (int64_t t = 0; t < n_tasks; ++t) {
    const int64_t n_end = std::min(N, (t + 1) * kRowsPerTask);
    for (int64_t n = t * kRowsPerTask; n < n_end; ++n) {
      const Block* wr = static_cast<const Block*>(w) + n * nb;
      for (int64_t m0 = 0; m0 < M; m0 += kInputTile) {
        const int mt = int(std::min<int64_t>(kInputTile, M - m0));
        __m256 acc[kInputTile] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
        for (int64_t b = 0; b < nb; ++b) {
          _mm_prefetch(reinterpret_cast<const char*>(wr + b + 8), _MM_HINT_T0);
          const __m256i wv = block_values(wr[b]);  // unpacked once, used for every input row of the tile
          const float dw = block_scale(wr[b]);
          for (int i = 0; i < mt; ++i) {
            const BlockQ8_0& xb = xq[(m0 + i) * nb + b];
            const __m256 s = _mm256_set1_ps(dw * _cvtsh_ss(xb.d));
            acc[i] = _mm256_fmadd_ps(s, dot_i8(wv, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb.qs))), acc[i]);
          }
        }
        for (int i = 0; i < mt; ++i) out[(m0 + i) * N + n] = hsum(acc[i]) + (bias ? bias[n] : 0.0f);
      }
    }
  }
}

// What the Q8_0 decode matvec needs of the activation's Q8_0 blocks, computed once per call into
// this thread's buffers: each block's scale d_x in f32 and |x_q| (maddubs' unsigned operand).
struct ActivationBlocks {
  const float* d;
  const BlockQ8_0* abs;
};
ActivationBlocks prepare_activation(const BlockQ8_0* xq, int64_t nb) {
  static thread_local std::vector<float> xd;
  static thread_local std::vector<BlockQ8_0> xa;
  if (int64_t(xd.size()) < nb) xd.resize(size_t(nb)), xa.resize(size_t(nb));
  for (int64_t b = 0; b < nb; ++b) {
    xd[size_t(b)] = _cvtsh_ss(xq[b].d);
    const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq[b].qs));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(xa[size_t(b)].qs), _mm256_sign_epi8(xv, xv));
  }
  return {xd.data(), xa.data()};
}

// Q8_0 decode (one input row): one weight row at a time, so each thread reads one linear stream
// that the hardware prefetcher follows at full bandwidth (measured, 134M at 2 threads: 237 tok/s
// at one row vs 135 at two side by side), with |x| computed once per call and w given x's sign.
// Q4_0 and MXFP4 decode in kernels/avx2/matvec_u4.cpp.
void matvec_q8_0(float* out, const BlockQ8_0* xq, const ActivationBlocks& act, const void* w, const float* bias, int64_t N, int64_t K) {
  using Block = BlockQ8_0;
  const int64_t nb = K / kQK;
  const float* const xdp = act.d;
  const BlockQ8_0* const xap = act.abs;
  const __m256i ones = _mm256_set1_epi16(1);
  const int64_t ahead = decode_prefetch_bytes();
  const int64_t n_tasks = (N + kRowsPerTask - 1) / kRowsPerTask;
  pool_for(n_tasks, n_tasks > 1 && N * K > 100000, [&](int64_t t) {
    const int64_t n_end = std::min(N, (t + 1) * kRowsPerTask);
    for (int64_t n = t * kRowsPerTask; n < n_end; ++n) {
      __m256 acc = _mm256_setzero_ps();
      const Block* wr = static_cast<const Block*>(w) + n * nb;
      // Σ_j d_w·d_x · Σ w·x of block j, the block's products as 8 int32 lanes
      auto block_dot = [&](int64_t b) {
        const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq[b].qs));
        const __m256i ax = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xap[b].qs));
        const __m256i sw = _mm256_sign_epi8(block_values(wr[b]), xv);  // w with x's sign
        return _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(ax, sw), ones));
      };
      int64_t b = 0;
      for (; b + 8 <= nb; b += 8) {
        // eight blocks' d_w·d_x as one vector (kernels/block_scales8.h), each block's spread by a
        // permutation: one scalar conversion, multiply and broadcast per block kept this loop
        // compute-bound below the read bandwidth (26 GB/s from L3)
        const __m256 s8 = _mm256_mul_ps(scales8(wr + b), _mm256_loadu_ps(xdp + b));
        for (int j = 0; j < 8; ++j) {
          if (j % 2 == 0) prefetch_ahead(wr + b + j, ahead, 64);  // (68 bytes a pair: the hardware prefetcher covers the rest)
          acc = _mm256_fmadd_ps(_mm256_permutevar8x32_ps(s8, _mm256_set1_epi32(j)), block_dot(b + j), acc);
        }
      }
      for (; b < nb; ++b) {
        if (b % 2 == 0) prefetch_ahead(wr + b, ahead, 64);
        acc = _mm256_fmadd_ps(_mm256_set1_ps(block_scale(wr[b]) * xdp[b]), block_dot(b), acc);
      }
      out[n] = hsum(acc) + (bias ? bias[n] : 0.0f);
    }
  });
}

// The activation of a K-quant decode: one f32 scale per 256 values (a super-block, as llama.cpp's
// Q8_K), so a super-block's products add up in int32 and are scaled once — with a scale per 32
// (Q8_0) each sub-block needed its own int→float conversion and multiply. Also |x_q| (maddubs'
// unsigned operand, for Q6_K's signed levels) and Σ x_q per 32 values (for Q4_K's minimums).
struct ActivationK {
  const int8_t* q;
  const int8_t* abs;
  const float* d;      // per super-block
  const int32_t* sum;  // per 32 values
};
ActivationK prepare_activation_k(const float* x, int64_t K) {
  static thread_local std::vector<int8_t> q, aq;
  static thread_local std::vector<float> d;
  static thread_local std::vector<int32_t> sum;
  static thread_local PreparedActivationKey key;
  if (int64_t(q.size()) < K) q.resize(size_t(K)), aq.resize(size_t(K)), d.resize(size_t(K / kQKK)), sum.resize(size_t(K / kQK));
  if (activation_prepared(key, x, K)) return {q.data(), aq.data(), d.data(), sum.data()};
  const __m256 sign = _mm256_set1_ps(-0.0f);
  for (int64_t sb = 0; sb < K / kQKK; ++sb) {
    const float* xs = x + sb * kQKK;
    __m256 amax = _mm256_setzero_ps();
    for (int i = 0; i < kQKK; i += 8) amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign, _mm256_loadu_ps(xs + i)));
    const float dd = hmax(amax) / 127.0f;
    d[size_t(sb)] = dd;
    const __m256 id = _mm256_set1_ps(dd != 0 ? 1.0f / dd : 0.0f);
    for (int g = 0; g < kQKK / kQK; ++g) {
      __m256i v[4];
      for (int i = 0; i < 4; ++i)
        v[i] = _mm256_cvtps_epi32(_mm256_round_ps(_mm256_mul_ps(_mm256_loadu_ps(xs + 32 * g + 8 * i), id), _MM_FROUND_TO_NEAREST_INT));
      // 32 int32 -> 32 int8 in order (packs work per 128-bit lane: fix with a permute)
      __m256i c = _mm256_packs_epi16(_mm256_packs_epi32(v[0], v[1]), _mm256_packs_epi32(v[2], v[3]));
      c = _mm256_permutevar8x32_epi32(c, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
      int8_t* dst = q.data() + sb * kQKK + 32 * g;
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(dst), c);
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(aq.data() + (dst - q.data())), _mm256_sign_epi8(c, c));
      int s = 0;
      for (int j = 0; j < kQK; ++j) s += dst[j];
      sum[size_t(sb * 8 + g)] = s;
    }
  }
  return {q.data(), aq.data(), d.data(), sum.data()};
}

// K-quant decode (one input row) in int8, one weight row at a time (one linear stream per thread).
//   Q4_K super-block: Σ_j (d·sc_j·q − dmin·m_j)·x = d·d_x·Σ_j sc_j·Σ q·x_q − dmin·d_x·Σ_j m_j·Σ x_q
//     Σ q·x_q by maddubs (q 0..15 unsigned, x_q signed; pairs ≤ 3810 in int16), times sc_j and summed
//     in int32 by madd with sc_j as the multiplier: |total| ≤ 8·63·61 000 < 2³¹.
//   Q5_K: as Q4_K with a fifth bit per value from qh (q 0..31; pairs ≤ 7874, total ≤ 8·63·126 000).
//   Q6_K super-block: Σ_s d·sc_s·Σ (q − 32)·x = d·d_x·Σ_s sc_s·Σ (q − 32)·x_q, by maddubs(|x_q|,
//     (q − 32) with x's sign) and madd with the two 16-value scales of each 32: ≤ 16·2·127·8128.
template <int kBits>
void matvec_k(float* out, const float* x, const void* w, const float* bias, int64_t N, int64_t K) {
  const int64_t nsb = K / kQKK;
  const ActivationK act = prepare_activation_k(x, K);
  const __m256i low4 = _mm256_set1_epi8(0x0F), low2 = _mm256_set1_epi8(0x03);
  __m256i pick[8];  // byte shuffles that broadcast int16 lane j of a 128-bit lane
  for (int j = 0; j < 8; ++j) pick[j] = _mm256_set1_epi16(int16_t((2 * j + 1) << 8 | 2 * j));
  __m256i pick6[4];  // Q6_K: int16 lane 2g of a 128-bit lane in the low lane, 2g + 1 in the high
  for (int g = 0; g < 4; ++g) pick6[g] = _mm256_set_m128i(_mm256_castsi256_si128(pick[2 * g + 1]), _mm256_castsi256_si128(pick[2 * g]));
  auto load = [](const void* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); };
  const int64_t ahead = decode_prefetch_bytes();
  const int64_t n_tasks = (N + kRowsPerTask - 1) / kRowsPerTask;
  pool_for(n_tasks, n_tasks > 1 && N * K > 100000, [&](int64_t t) {
    const int64_t n_end = std::min(N, (t + 1) * kRowsPerTask);
    for (int64_t n = t * kRowsPerTask; n < n_end; ++n) {
      __m256 acc = _mm256_setzero_ps(), corr = _mm256_setzero_ps();
      for (int64_t sb = 0; sb < nsb; ++sb) {
        const int8_t* xq = act.q + sb * kQKK;
        const float dx = act.d[sb];
        __m256i isum = _mm256_setzero_si256();
        if constexpr (kBits != 6) {
          using Block = std::conditional_t<kBits == 5, BlockQ5_K, BlockQ4_K>;
          const Block& blk = static_cast<const Block*>(w)[n * nsb + sb];
          prefetch_ahead(&blk, ahead, int64_t(sizeof(Block)));
          // the eight scales unpacked at once, as int16 in both 128-bit lanes; sub-block j's
          // broadcast by a byte shuffle (scale_min_k4 and a broadcast per sub-block kept it compute-bound)
          uint64_t sc8, mn8;
          scales_mins_k4(blk.scales, &sc8, &mn8);
          const __m256i sc16 = _mm256_broadcastsi128_si256(_mm_cvtepu8_epi16(_mm_cvtsi64_si128(int64_t(sc8))));
          for (int pair = 0; pair < 4; ++pair) {
            const __m256i v = load(blk.qs + 32 * pair);
            __m256i q0 = _mm256_and_si256(v, low4), q1 = _mm256_and_si256(_mm256_srli_epi16(v, 4), low4);
            if constexpr (kBits == 5) {  // bit 2·pair of qh[l] is value l's fifth bit in sub-block 2·pair, the next bit in 2·pair + 1
              const __m256i hb = _mm256_srli_epi16(load(blk.qh), 2 * pair), one = _mm256_set1_epi8(1);
              q0 = _mm256_or_si256(q0, _mm256_slli_epi16(_mm256_and_si256(hb, one), 4));
              q1 = _mm256_or_si256(q1, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 1), one), 4));
            }
            const __m256i p0 = _mm256_maddubs_epi16(q0, load(xq + 64 * pair));
            const __m256i p1 = _mm256_maddubs_epi16(q1, load(xq + 64 * pair + 32));
            isum = _mm256_add_epi32(isum, _mm256_add_epi32(_mm256_madd_epi16(p0, _mm256_shuffle_epi8(sc16, pick[2 * pair])),
                                                           _mm256_madd_epi16(p1, _mm256_shuffle_epi8(sc16, pick[2 * pair + 1]))));
          }
          acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_set1_ps(_cvtsh_ss(blk.d) * dx), acc);
          // Σ_j m_j·Σ x_q over sub-block j: the eight minimums against the eight sums, in lanes
          const __m256i ms = _mm256_mullo_epi32(_mm256_cvtepu8_epi32(_mm_cvtsi64_si128(int64_t(mn8))), load(act.sum + sb * 8));
          corr = _mm256_fmadd_ps(_mm256_cvtepi32_ps(ms), _mm256_set1_ps(_cvtsh_ss(blk.dmin) * dx), corr);
        } else {
          const BlockQ6_K& blk = static_cast<const BlockQ6_K*>(w)[n * nsb + sb];
          prefetch_ahead(&blk, ahead, int64_t(sizeof(BlockQ6_K)));
          for (int half = 0; half < 2; ++half) {
            const uint8_t* ql = blk.ql + 64 * half;
            const __m256i l0 = load(ql), l1 = load(ql + 32), hb = load(blk.qh + 32 * half);
            // the four groups of 32 of this half: low/high nibbles of ql[0..31] / ql[32..63] with
            // 2 more bits each from qh
            const __m256i q[4] = {
                _mm256_or_si256(_mm256_and_si256(l0, low4), _mm256_slli_epi16(_mm256_and_si256(hb, low2), 4)),
                _mm256_or_si256(_mm256_and_si256(l1, low4), _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 2), low2), 4)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), low4),
                                _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 4), low2), 4)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), low4),
                                _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hb, 6), low2), 4))};
            // this half's eight scales as int16, in both 128-bit lanes
            const __m256i sc16 = _mm256_broadcastsi128_si256(
                _mm_cvtepi8_epi16(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(blk.scales + 8 * half))));
            for (int g = 0; g < 4; ++g) {
              const int64_t o = 128 * half + 32 * g;
              const __m256i wq = _mm256_sub_epi8(q[g], _mm256_set1_epi8(32));  // −32..31
              const __m256i p16 = _mm256_maddubs_epi16(load(act.abs + sb * kQKK + o), _mm256_sign_epi8(wq, load(xq + o)));
              // int16 0-7 hold values 0..15 (scale 2g of the half), 8-15 values 16..31 (scale 2g + 1)
              isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p16, _mm256_shuffle_epi8(sc16, pick6[g])));
            }
          }
          acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_set1_ps(_cvtsh_ss(blk.d) * dx), acc);
        }
      }
      out[n] = hsum(_mm256_sub_ps(acc, corr)) + (bias ? bias[n] : 0.0f);
    }
  });
}

// K-quants: a dequantized weight row dotted with each input row.
void matmul_dequant(float* out, const float* x, const void* w, DType type, const float* bias, int64_t M, int64_t N, int64_t K) {
  const size_t row_bytes = dtype_bytes(type, K);
  const int64_t n_tasks = (N + kRowsPerTask - 1) / kRowsPerTask;
#pragma omp parallel
  {
    std::vector<float> row(static_cast<size_t>(K));  // per thread
#pragma omp for schedule(static)
    for (int64_t t = 0; t < n_tasks; ++t) {
      const int64_t n_end = std::min(N, (t + 1) * kRowsPerTask);
      for (int64_t n = t * kRowsPerTask; n < n_end; ++n) {
        avx2::dequantize_row(row.data(), static_cast<const char*>(w) + size_t(n) * row_bytes, type, K);
        for (int64_t m = 0; m < M; ++m) {
          const float* xm = x + m * K;
          // four independent accumulators: one FMA chain would wait on its own latency
          __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps(), a2 = _mm256_setzero_ps(), a3 = _mm256_setzero_ps();
          const float* r = row.data();
          int64_t k = 0;
          for (; k + 32 <= K; k += 32) {
            a0 = _mm256_fmadd_ps(_mm256_loadu_ps(r + k), _mm256_loadu_ps(xm + k), a0);
            a1 = _mm256_fmadd_ps(_mm256_loadu_ps(r + k + 8), _mm256_loadu_ps(xm + k + 8), a1);
            a2 = _mm256_fmadd_ps(_mm256_loadu_ps(r + k + 16), _mm256_loadu_ps(xm + k + 16), a2);
            a3 = _mm256_fmadd_ps(_mm256_loadu_ps(r + k + 24), _mm256_loadu_ps(xm + k + 24), a3);
          }
          for (; k + 8 <= K; k += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(r + k), _mm256_loadu_ps(xm + k), a0);
          float s = hsum(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)));
          for (; k < K; ++k) s += row[size_t(k)] * xm[k];
          out[m * N + n] = s + (bias ? bias[n] : 0.0f);
        }
      }
    }
  }
}

// 32 bytes of int8 (or uint8 below 128) values -> 32 floats y = a·q + b.
inline void store32(float* y, __m256i q, __m256 a, __m256 b) {
  const __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
  _mm256_storeu_ps(y, _mm256_fmadd_ps(a, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo)), b));
  _mm256_storeu_ps(y + 8, _mm256_fmadd_ps(a, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8))), b));
  _mm256_storeu_ps(y + 16, _mm256_fmadd_ps(a, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi)), b));
  _mm256_storeu_ps(y + 24, _mm256_fmadd_ps(a, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8))), b));
}


// Q4_K / Q5_K rows: 64 values (two sub-blocks sharing 32 bytes of nibbles) per step.
template <bool kFive>
void dequantize_k4(float* y, const void* src, int64_t n) {
  const __m256i mask = _mm256_set1_epi8(0x0F), sixteen = _mm256_set1_epi8(16);
  for (int64_t b = 0; b < n / kQKK; ++b) {
    const uint8_t* scales = kFive ? static_cast<const BlockQ5_K*>(src)[b].scales : static_cast<const BlockQ4_K*>(src)[b].scales;
    const uint8_t* qs = kFive ? static_cast<const BlockQ5_K*>(src)[b].qs : static_cast<const BlockQ4_K*>(src)[b].qs;
    const uint16_t dh = kFive ? static_cast<const BlockQ5_K*>(src)[b].d : static_cast<const BlockQ4_K*>(src)[b].d;
    const uint16_t mh = kFive ? static_cast<const BlockQ5_K*>(src)[b].dmin : static_cast<const BlockQ4_K*>(src)[b].dmin;
    const float d = _cvtsh_ss(dh), dmin = _cvtsh_ss(mh);
    const __m256i qh = kFive ? _mm256_loadu_si256(reinterpret_cast<const __m256i*>(static_cast<const BlockQ5_K*>(src)[b].qh))
                             : _mm256_setzero_si256();
    for (int j = 0; j < 4; ++j, y += 64) {
      const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(qs + 32 * j));
      __m256i lo = _mm256_and_si256(q, mask), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), mask);
      if (kFive) {  // the 5th bits of sub-blocks 2j and 2j+1: bits 2j and 2j+1 of qh[l]
        const __m256i u1 = _mm256_set1_epi8(char(1 << (2 * j))), u2 = _mm256_set1_epi8(char(2 << (2 * j)));
        lo = _mm256_add_epi8(lo, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(qh, u1), u1), sixteen));
        hi = _mm256_add_epi8(hi, _mm256_and_si256(_mm256_cmpeq_epi8(_mm256_and_si256(qh, u2), u2), sixteen));
      }
      int sc, m;
      scale_min_k4(2 * j, scales, &sc, &m);
      store32(y, lo, _mm256_set1_ps(d * float(sc)), _mm256_set1_ps(-dmin * float(m)));
      scale_min_k4(2 * j + 1, scales, &sc, &m);
      store32(y + 32, hi, _mm256_set1_ps(d * float(sc)), _mm256_set1_ps(-dmin * float(m)));
    }
  }
}

// Q6_K rows: 128 values per step from 64 bytes of low nibbles and 32 of 2-bit highs.
void dequantize_q6_k(float* y, const void* src, int64_t n) {
  const __m256i mask4 = _mm256_set1_epi8(0x0F), mask2 = _mm256_set1_epi8(0x03), m32 = _mm256_set1_epi8(32);
  for (int64_t b = 0; b < n / kQKK; ++b) {
    const BlockQ6_K& x = static_cast<const BlockQ6_K*>(src)[b];
    const float d = _cvtsh_ss(x.d);
    for (int half = 0; half < 2; ++half, y += 128) {
      const uint8_t* ql = x.ql + 64 * half;
      const __m256i l0 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql));
      const __m256i l1 = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(ql + 32));
      const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(x.qh + 32 * half));
      auto high = [&](int shift) { return _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(h, shift), mask2), 4); };
      const __m256i q[4] = {
          _mm256_sub_epi8(_mm256_or_si256(_mm256_and_si256(l0, mask4), high(0)), m32),
          _mm256_sub_epi8(_mm256_or_si256(_mm256_and_si256(l1, mask4), high(2)), m32),
          _mm256_sub_epi8(_mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), mask4), high(4)), m32),
          _mm256_sub_epi8(_mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), mask4), high(6)), m32)};
      const int8_t* sc = x.scales + 8 * half;
      for (int k = 0; k < 4; ++k) {
        // values 32k .. 32k+31: the first 16 use scale sc[2k], the next 16 sc[2k + 1]
        const __m128i lo = _mm256_castsi256_si128(q[k]), hi = _mm256_extracti128_si256(q[k], 1);
        const __m256 a0 = _mm256_set1_ps(d * float(sc[2 * k])), a1 = _mm256_set1_ps(d * float(sc[2 * k + 1]));
        float* yk = y + 32 * k;
        _mm256_storeu_ps(yk, _mm256_mul_ps(a0, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo))));
        _mm256_storeu_ps(yk + 8, _mm256_mul_ps(a0, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8)))));
        _mm256_storeu_ps(yk + 16, _mm256_mul_ps(a1, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi))));
        _mm256_storeu_ps(yk + 24, _mm256_mul_ps(a1, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8)))));
      }
    }
  }
}

// Blocks of 32 (Q8_0, Q4_0, MXFP4) to f32: 32 int8 -> 4 × 8 int32 -> f32 × the block's scale.
template <typename Block>
void dequantize_blocks(float* dst, const Block* blocks, int64_t n) {
  for (int64_t b = 0; b < n / kQK; ++b) {
    const __m256i q = block_values(blocks[b]);
    const __m256 d = _mm256_set1_ps(block_scale(blocks[b]));
    const __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
    float* y = dst + b * kQK;
    _mm256_storeu_ps(y, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo))));
    _mm256_storeu_ps(y + 8, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8)))));
    _mm256_storeu_ps(y + 16, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi))));
    _mm256_storeu_ps(y + 24, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8)))));
  }
}

}  // namespace

void quantize_row(void* dst, DType type, const float* src, int64_t n) {
  if (type == DType::F16) {  // 8 at a time by F16C, round to nearest even as the scalar conversion
    auto* y = static_cast<uint16_t*>(dst);
    int64_t i = 0;
    for (; i + 8 <= n; i += 8)
      _mm_storeu_si128(reinterpret_cast<__m128i*>(y + i), _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT));
    return ref::quantize_row(y + i, type, src + i, n - i);
  }
  if (type != DType::Q8_0) return ref::quantize_row(dst, type, src, n);
  auto* y = static_cast<BlockQ8_0*>(dst);
  for (int64_t b = 0; b < n / kQK; ++b) quantize_block_q8_0(y + b, src + b * kQK);
}

void dequantize_row(float* dst, const void* src, DType type, int64_t n) {
  switch (type) {
    case DType::F32: return widen_row(dst, static_cast<const float*>(src), n);
    case DType::F16: return widen_row(dst, static_cast<const F16*>(src), n);
    case DType::BF16: return widen_row(dst, static_cast<const BF16*>(src), n);
    case DType::Q8_0: return dequantize_blocks(dst, static_cast<const BlockQ8_0*>(src), n);
    case DType::Q4_0: return dequantize_blocks(dst, static_cast<const BlockQ4_0*>(src), n);
    case DType::MXFP4: return dequantize_blocks(dst, static_cast<const BlockMxfp4*>(src), n);
    case DType::Q4_K: return dequantize_k4<false>(dst, src, n);
    case DType::Q5_K: return dequantize_k4<true>(dst, src, n);
    case DType::Q6_K: return dequantize_q6_k(dst, src, n);
    default: return ref::dequantize_row(dst, src, type, n);
  }
}

// Q4_0 / MXFP4 decode (kernels/avx2/matvec_u4.cpp), from x and its Q8_0 blocks xq.
template <typename Block>
void matvec_u4(float* out, const float* x, const BlockQ8_0* xq, const void* w, const float* bias, int64_t N, int64_t K);

void matmul_quantized(float* out, const float* x, const void* w, DType type, const float* bias, int64_t M, int64_t N, int64_t K) {
  if (M == 1 && type == DType::Q4_K) return matvec_k<4>(out, x, w, bias, N, K);
  if (M == 1 && type == DType::Q5_K) return matvec_k<5>(out, x, w, bias, N, K);
  if (M == 1 && type == DType::Q6_K) return matvec_k<6>(out, x, w, bias, N, K);
  if (type != DType::Q8_0 && type != DType::Q4_0 && type != DType::MXFP4) return matmul_dequant(out, x, w, type, bias, M, N, K);
  const int64_t nb = K / kQK;
  if (M == 1) {
    // x -> Q8_0 blocks and what the row loops need of them, in buffers of their own (kept within
    // a matvec_batch: kernels/activation_reuse.h)
    static thread_local std::vector<BlockQ8_0> x1;
    static thread_local ActivationBlocks act;
    static thread_local PreparedActivationKey key;
    if (int64_t(x1.size()) < nb) x1.resize(size_t(nb));
    if (!activation_prepared(key, x, K)) {
      for (int64_t b = 0; b < nb; ++b) quantize_block_q8_0(&x1[size_t(b)], x + b * kQK);
      act = prepare_activation(x1.data(), nb);
    }
    if (type == DType::Q8_0) return matvec_q8_0(out, x1.data(), act, w, bias, N, K);
    if (type == DType::Q4_0) return matvec_u4<BlockQ4_0>(out, x, x1.data(), w, bias, N, K);
    return matvec_u4<BlockMxfp4>(out, x, x1.data(), w, bias, N, K);
  }
  // x -> Q8_0 blocks, in a buffer that grows to the largest batch seen (no steady-state allocation)
  static thread_local std::vector<BlockQ8_0> xq;
  if (int64_t(xq.size()) < M * nb) xq.resize(size_t(M * nb));
  BlockQ8_0* const xqp = xq.data();  // this thread's buffer (OpenMP workers have their own thread_locals)
  parallel_for(M, M > 8, [&](int64_t m) {
    for (int64_t b = 0; b < nb; ++b) quantize_block_q8_0(&xqp[m * nb + b], x + m * K + b * kQK);
  });
  if (type == DType::Q8_0) matmul_q<BlockQ8_0>(out, xqp, w, bias, M, N, K);
  else if (type == DType::Q4_0) matmul_q<BlockQ4_0>(out, xqp, w, bias, M, N, K);
  else matmul_q<BlockMxfp4>(out, xqp, w, bias, M, N, K);
}

}  // namespace distill::avx2
