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
inline __m256i weights_q4_0(const BlockQ4_0& b) {
  const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b.qs));
  const __m128i mask = _mm_set1_epi8(0x0F);
  const __m128i lo = _mm_and_si128(packed, mask);                      // values 0..15
  const __m128i hi = _mm_and_si128(_mm_srli_epi16(packed, 4), mask);  // values 16..31
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
        ref::dequantize_row(row.data(), static_cast<const char*>(w) + size_t(n) * row_bytes, type, K);
        for (int64_t m = 0; m < M; ++m) {
          const float* xm = x + m * K;
          __m256 acc = _mm256_setzero_ps();
          int64_t k = 0;
          for (; k + 8 <= K; k += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(row.data() + k), _mm256_loadu_ps(xm + k), acc);
          float s = hsum(acc);
          for (; k < K; ++k) s += row[size_t(k)] * xm[k];
          out[m * N + n] = s + (bias ? bias[n] : 0.0f);
        }
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
    default: return ref::dequantize_row(dst, src, type, n);
  }
}

void matmul_quantized(float* out, const float* x, const void* w, DType type, const float* bias, int64_t M, int64_t N, int64_t K) {
  if (type != DType::Q8_0 && type != DType::Q4_0) return matmul_dequant(out, x, w, type, bias, M, N, K);
  // x -> Q8_0 blocks, in a buffer that grows to the largest batch seen (no steady-state allocation)
  static thread_local std::vector<BlockQ8_0> xq;
  const int64_t nb = K / kQK;
  if (int64_t(xq.size()) < M * nb) xq.resize(size_t(M * nb));
  BlockQ8_0* const xqp = xq.data();  // this thread's buffer (OpenMP workers have their own thread_locals)
#pragma omp parallel for schedule(static) if (M > 8)
  for (int64_t m = 0; m < M; ++m)
    for (int64_t b = 0; b < nb; ++b) quantize_block_q8_0(&xqp[m * nb + b], x + m * K + b * kQK);
  if (type == DType::Q8_0) matmul_q<BlockQ8_0, weights_q8_0>(out, xqp, w, bias, M, N, K);
  else matmul_q<BlockQ4_0, weights_q4_0>(out, xqp, w, bias, M, N, K);
}

}  // namespace distill::avx2
