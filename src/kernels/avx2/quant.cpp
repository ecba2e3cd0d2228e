// AVX2: quantized matmul. Q8_0 / Q4_0 weights: x is quantized to Q8_0 blocks on the fly and each
// block product is an int8 dot (maddubs: |w| · sign-adjusted x, pairs summed in int16, then int32),
// scaled by d_w · d_x into f32 accumulators — the weights are read once, in their 8.5 / 4.5 bits
// per value. K-quants: each weight row is dequantized to f32 (scalar, per thread) and dotted.
// Work splits over blocks of weight rows; a weight row is reused for up to 4 input rows.
#include "kernels/avx2/simd.h"
#include "kernels/kernels.h"
#include "kernels/quant_blocks.h"

#include <algorithm>
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

// Σ w·x over 32 int8 pairs as 8 int32 sums converted to f32.
inline __m256 dot_i8(__m256i w, __m256i x) {
  const __m256i aw = _mm256_sign_epi8(w, w);  // |w|, unsigned for maddubs
  const __m256i sx = _mm256_sign_epi8(x, w);  // x with w's sign (0 where w is 0)
  const __m256i p16 = _mm256_maddubs_epi16(aw, sx);
  return _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, _mm256_set1_epi16(1)));
}

template <typename Block, __m256i (*Unpack)(const Block&)>
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
          const __m256i wv = Unpack(wr[b]);  // unpacked once, used for every input row of the tile
          const float dw = _cvtsh_ss(wr[b].d);
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

// What every int8 decode matvec needs of the activation's Q8_0 blocks, computed once per call
// into this thread's buffers: each block's scale d_x in f32, d_x·Σ x_q (for the formats whose
// weights carry an offset: Q4_0's −8, Q4_K's min) and |x_q| (maddubs' unsigned operand).
struct ActivationBlocks {
  const float* d;
  const float* sum;
  const BlockQ8_0* abs;
};
ActivationBlocks prepare_activation(const BlockQ8_0* xq, int64_t nb) {
  static thread_local std::vector<float> xd, xs;
  static thread_local std::vector<BlockQ8_0> xa;
  if (int64_t(xd.size()) < nb) xd.resize(size_t(nb)), xs.resize(size_t(nb)), xa.resize(size_t(nb));
  for (int64_t b = 0; b < nb; ++b) {
    xd[size_t(b)] = _cvtsh_ss(xq[b].d);
    int sum = 0;
    for (int j = 0; j < kQK; ++j) sum += xq[b].qs[j];
    xs[size_t(b)] = xd[size_t(b)] * float(sum);
    const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq[b].qs));
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(xa[size_t(b)].qs), _mm256_sign_epi8(xv, xv));
  }
  return {xd.data(), xs.data(), xa.data()};
}

// Decode (one input row): one weight row at a time, so each thread reads one linear stream that
// the hardware prefetcher follows at full bandwidth (measured, 134M at 2 threads: Q8_0 237 tok/s
// at one row vs 135 at two side by side; Q4_0 356 vs 341). Q8_0 uses |x|, computed once per call,
// and w with x's sign; Q4_0 feeds the unsigned nibbles 0..15 straight to maddubs and subtracts
// 8·Σx afterwards (8·d_x·Σx per block). The activation side is prepared once per call.
template <bool kQ4>
void matvec_q(float* out, const BlockQ8_0* xq, const void* w, const float* bias, int64_t N, int64_t K) {
  const int64_t nb = K / kQK;
  const ActivationBlocks act = prepare_activation(xq, nb);
  const float* const xdp = act.d;
  const float* const xsp = act.sum;
  const BlockQ8_0* const xap = act.abs;
  const __m256i ones = _mm256_set1_epi16(1);
  const int64_t n_tasks = (N + kRowsPerTask - 1) / kRowsPerTask;
#pragma omp parallel for schedule(static) if (n_tasks > 1 && N * K > 100000)
  for (int64_t t = 0; t < n_tasks; ++t) {
    const int64_t n_end = std::min(N, (t + 1) * kRowsPerTask);
    for (int64_t n = t * kRowsPerTask; n < n_end; ++n) {
      __m256 acc = _mm256_setzero_ps();
      float corr = 0;
      if (kQ4) {
        const BlockQ4_0* wr = static_cast<const BlockQ4_0*>(w) + n * nb;
        for (int64_t b = 0; b < nb; ++b) {
          const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq[b].qs));
          __m128i h;
          const __m128i l = nibbles_lo_hi(wr[b], &h);
          const __m256i u = _mm256_set_m128i(h, l);  // 0..15
          const __m256 p = _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(u, xv), ones));
          const float d = _cvtsh_ss(wr[b].d);
          acc = _mm256_fmadd_ps(_mm256_set1_ps(d * xdp[b]), p, acc);
          corr += d * (8.0f * xsp[b]);  // Σ (q − 8)·x = Σ q·x − 8·Σ x
        }
      } else {
        const BlockQ8_0* wr = static_cast<const BlockQ8_0*>(w) + n * nb;
        for (int64_t b = 0; b < nb; ++b) {
          const __m256i xv = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xq[b].qs));
          const __m256i ax = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xap[b].qs));
          const __m256i sw = _mm256_sign_epi8(weights_q8_0(wr[b]), xv);  // w with x's sign
          const __m256 p = _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(ax, sw), ones));
          acc = _mm256_fmadd_ps(_mm256_set1_ps(_cvtsh_ss(wr[b].d) * xdp[b]), p, acc);
        }
      }
      out[n] = hsum(acc) - corr + (bias ? bias[n] : 0.0f);
    }
  }
}

// K-quant decode (one input row), int8 like Q4_0 / Q8_0 instead of dequantizing each row to f32:
// the activation's Q8_0 blocks of 32 line up with Q4_K's sub-blocks of 32 and with Q6_K's groups of
// 32 (two scales of 16 each). One weight row at a time, as above.
//   Q4_K sub-block j: Σ (d·sc·q − dmin·m)·x = d·sc·d_x·Σ q·x_q − dmin·m·(d_x·Σ x_q)
//                     (q 0..15 is maddubs' unsigned operand; d_x·Σx_q precomputed per block)
//   Q6_K group of 32: Σ d·sc_s·(q − 32)·x = d·d_x·Σ_s sc_s·Σ (q − 32)·x_q, the products summed in
//                     int16 pairs by maddubs(|x_q|, (q − 32) with x's sign), then weighted by the
//                     two 16-value scales with madd.
template <bool kQ6>
void matvec_k(float* out, const BlockQ8_0* xq, const void* w, const float* bias, int64_t N, int64_t K) {
  const int64_t nb = K / kQK, nsb = K / kQKK;
  const ActivationBlocks act = prepare_activation(xq, nb);
  const float* const xdp = act.d;
  const float* const xsp = act.sum;
  const BlockQ8_0* const xap = act.abs;
  const __m256i ones = _mm256_set1_epi16(1), low4 = _mm256_set1_epi8(0x0F), low2 = _mm256_set1_epi8(0x03);
  auto load = [](const void* p) { return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)); };
  const int64_t n_tasks = (N + kRowsPerTask - 1) / kRowsPerTask;
#pragma omp parallel for schedule(static) if (n_tasks > 1 && N * K > 100000)
  for (int64_t t = 0; t < n_tasks; ++t) {
    const int64_t n_end = std::min(N, (t + 1) * kRowsPerTask);
    for (int64_t n = t * kRowsPerTask; n < n_end; ++n) {
      __m256 acc = _mm256_setzero_ps();
      float corr = 0;
      for (int64_t sb = 0; sb < nsb; ++sb) {
        if constexpr (!kQ6) {
          const BlockQ4_K& blk = static_cast<const BlockQ4_K*>(w)[n * nsb + sb];
          const float d = _cvtsh_ss(blk.d), dmin = _cvtsh_ss(blk.dmin);
          for (int pair = 0; pair < 4; ++pair) {
            const __m256i v = load(blk.qs + 32 * pair);
            const __m256i q[2] = {_mm256_and_si256(v, low4), _mm256_and_si256(_mm256_srli_epi16(v, 4), low4)};
            for (int h = 0; h < 2; ++h) {
              const int j = 2 * pair + h;  // sub-block
              const int64_t b = sb * 8 + j;  // its activation block
              int sc, m;
              scale_min_k4(j, blk.scales, &sc, &m);
              const __m256i xv = load(xq[b].qs);
              const __m256 p = _mm256_cvtepi32_ps(_mm256_madd_epi16(_mm256_maddubs_epi16(q[h], xv), ones));
              acc = _mm256_fmadd_ps(_mm256_set1_ps(d * float(sc) * xdp[b]), p, acc);
              corr += dmin * float(m) * xsp[b];
            }
          }
        } else {
          const BlockQ6_K& blk = static_cast<const BlockQ6_K*>(w)[n * nsb + sb];
          const float d = _cvtsh_ss(blk.d);
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
            const int8_t* sc = blk.scales + 8 * half;
            for (int g = 0; g < 4; ++g) {
              const int64_t b = sb * 8 + half * 4 + g;
              const __m256i xv = load(xq[b].qs), ax = load(xap[b].qs);
              const __m256i wq = _mm256_sub_epi8(q[g], _mm256_set1_epi8(32));  // −32..31
              const __m256i p16 = _mm256_maddubs_epi16(ax, _mm256_sign_epi8(wq, xv));
              // int16 0-7 hold values 0..15 (scale sc[2g]), 8-15 values 16..31 (sc[2g+1])
              const __m256i scales = _mm256_set_m128i(_mm_set1_epi16(sc[2 * g + 1]), _mm_set1_epi16(sc[2 * g]));
              const __m256 p = _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, scales));
              acc = _mm256_fmadd_ps(_mm256_set1_ps(d * xdp[b]), p, acc);
            }
          }
        }
      }
      out[n] = hsum(acc) - corr + (bias ? bias[n] : 0.0f);
    }
  }
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

}  // namespace

void quantize_row(void* dst, DType type, const float* src, int64_t n) {
  if (type != DType::Q8_0) return ref::quantize_row(dst, type, src, n);
  auto* y = static_cast<BlockQ8_0*>(dst);
  for (int64_t b = 0; b < n / kQK; ++b) quantize_block_q8_0(y + b, src + b * kQK);
}

void dequantize_row(float* dst, const void* src, DType type, int64_t n) {
  switch (type) {
    case DType::F32: return widen_row(dst, static_cast<const float*>(src), n);
    case DType::F16: return widen_row(dst, static_cast<const F16*>(src), n);
    case DType::BF16: return widen_row(dst, static_cast<const BF16*>(src), n);
    case DType::Q8_0:
    case DType::Q4_0:
      for (int64_t b = 0; b < n / kQK; ++b) {
        const __m256i q = type == DType::Q8_0 ? weights_q8_0(static_cast<const BlockQ8_0*>(src)[b])
                                              : weights_q4_0(static_cast<const BlockQ4_0*>(src)[b]);
        const __m256 d = _mm256_set1_ps(_cvtsh_ss(type == DType::Q8_0 ? static_cast<const BlockQ8_0*>(src)[b].d
                                                                      : static_cast<const BlockQ4_0*>(src)[b].d));
        // 32 int8 -> 4 × 8 int32 -> f32 × d
        const __m128i lo = _mm256_castsi256_si128(q), hi = _mm256_extracti128_si256(q, 1);
        float* y = dst + b * kQK;
        _mm256_storeu_ps(y, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(lo))));
        _mm256_storeu_ps(y + 8, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(lo, 8)))));
        _mm256_storeu_ps(y + 16, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(hi))));
        _mm256_storeu_ps(y + 24, _mm256_mul_ps(d, _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_srli_si128(hi, 8)))));
      }
      return;
    case DType::Q4_K: return dequantize_k4<false>(dst, src, n);
    case DType::Q5_K: return dequantize_k4<true>(dst, src, n);
    case DType::Q6_K: return dequantize_q6_k(dst, src, n);
    default: return ref::dequantize_row(dst, src, type, n);
  }
}

void matmul_quantized(float* out, const float* x, const void* w, DType type, const float* bias, int64_t M, int64_t N, int64_t K) {
  const bool int8_decode = M == 1 && (type == DType::Q4_K || type == DType::Q6_K);
  if (type != DType::Q8_0 && type != DType::Q4_0 && !int8_decode) return matmul_dequant(out, x, w, type, bias, M, N, K);
  // x -> Q8_0 blocks, in a buffer that grows to the largest batch seen (no steady-state allocation)
  static thread_local std::vector<BlockQ8_0> xq;
  const int64_t nb = K / kQK;
  if (int64_t(xq.size()) < M * nb) xq.resize(size_t(M * nb));
  BlockQ8_0* const xqp = xq.data();  // this thread's buffer (OpenMP workers have their own thread_locals)
#pragma omp parallel for schedule(static) if (M > 8)
  for (int64_t m = 0; m < M; ++m)
    for (int64_t b = 0; b < nb; ++b) quantize_block_q8_0(&xqp[m * nb + b], x + m * K + b * kQK);
  if (type == DType::Q4_K) return matvec_k<false>(out, xqp, w, bias, N, K);
  if (type == DType::Q6_K) return matvec_k<true>(out, xqp, w, bias, N, K);
  if (M == 1) return type == DType::Q8_0 ? matvec_q<false>(out, xqp, w, bias, N, K) : matvec_q<true>(out, xqp, w, bias, N, K);
  if (type == DType::Q8_0) matmul_q<BlockQ8_0, weights_q8_0>(out, xqp, w, bias, M, N, K);
  else matmul_q<BlockQ4_0, weights_q4_0>(out, xqp, w, bias, M, N, K);
}

}  // namespace distill::avx2
