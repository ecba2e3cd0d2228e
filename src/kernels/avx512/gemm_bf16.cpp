// AVX-512 BF16: training's products of bf16-rounded operands (GemmBf16Args, kernels/kernels.h)
// on `vdpbf16ps`, which multiplies two pairs of bf16 per f32 lane and adds both products to the
// lane: twice the multiply-adds of an f32 FMA per instruction, at the same instruction rate on
// the CPUs that have it (Zen 4/5, Sapphire Rapids).
//
// Shape (BLIS's outer-product form, like kernels/gemm_f32_panels.h, with k taken in pairs):
//   - A is packed once per call, in tiles of MR = 12 rows: apack[tile][kp][i] is one 32-bit
//     word holding (A(m0+i, 2kp), A(m0+i, 2kp+1)) as bf16 — the broadcast operand;
//   - B is packed per thread, one panel of NR = 32 columns at a time: bpack[kp][j] holds
//     (B(2kp, n0+j), B(2kp+1, n0+j)), so one zmm load reads one k pair of 16 columns;
//   - per k pair a tile does 2 loads of B, 12 broadcasts of A and 24 vdpbf16ps into 24 zmm;
//   - k runs in blocks of kKBlock pairs so a block of the panel stays in L1 across the tiles;
//   - threads take contiguous runs of panels (one OpenMP region per call).
// An odd K is padded with a zero pair element. Both operands are rounded to nearest even when
// packed; vdpbf16ps treats denormal inputs and outputs as zero (training's values are far from them).
#include "core/dtype.h"
#include "core/error.h"
#include "kernels/kernels.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <exception>
#include <utility>
#include <vector>

namespace distill::avx512 {

namespace {

constexpr int MR = 12, NR = 32;
constexpr int64_t kKBlock = 256;  // k pairs per block: a 32 KiB slice of the B panel

inline __mmask16 first(int n) { return __mmask16(n >= 16 ? 0xFFFF : n <= 0 ? 0 : (1u << n) - 1); }

// Elements idx .. idx+n−1 (n ≤ 16) of an f32 or bf16 array as f32, zero past n.
inline __m512 load16(const void* src, DType dt, int64_t idx, int n) {
  if (dt == DType::BF16) {  // a bf16 is the top half of its f32
    const __m256i h = _mm256_maskz_loadu_epi16(first(n), static_cast<const uint16_t*>(src) + idx);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
  }
  return _mm512_maskz_loadu_ps(first(n), static_cast<const float*>(src) + idx);
}

// 16 pair words: lo[i] and hi[i] rounded to bf16 (nearest even), lo in the low half.
inline __m512i pair_words(__m512 lo, __m512 hi) {
  const __m512i l = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(lo));
  const __m512i h = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(hi));
  return _mm512_or_si512(l, _mm512_slli_epi32(h, 16));
}

// One source row that runs along k (K values from src[idx0]) as its KP pair words, word kp
// written to dst[kp·stride]: a row of A, or a column of a transposed B, into its packed panel.
void pack_row_along_k(uint32_t* dst, int64_t stride, const void* src, DType dt, int64_t idx0, int64_t K, int64_t KP) {
  const __m512i offsets = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                             _mm512_set1_epi32(int(stride)));
  for (int64_t k = 0; k < 2 * KP; k += 32) {
    const int n = int(std::min<int64_t>(32, K - k));  // ≥ 1; an odd K's last pair gets a zero
    const __m512 lo = load16(src, dt, idx0 + k, std::min(n, 16));
    const __m512 hi = n > 16 ? load16(src, dt, idx0 + k + 16, n - 16) : _mm512_setzero_ps();
    // 32 consecutive values → 32 bf16 in order = 16 words of (value 2q, value 2q+1)
    const __m512i words = (__m512i)_mm512_cvtne2ps_pbh(hi, lo);
    _mm512_mask_i32scatter_epi32(dst + (k / 2) * stride, first(int(std::min<int64_t>(16, KP - k / 2))), offsets, words, 4);
  }
}

// Rows k and k+1 of a source that runs along the other index (n ≤ 16 values from idx of each;
// row k+1 absent past K) as 16 pair words at dst: a pair of B's rows, or of a transposed A's.
inline void pack_pair_across(uint32_t* dst, const void* src, DType dt, int64_t ld, int64_t k, int64_t K, int64_t idx, int n,
                             __mmask16 store) {
  const __m512 lo = load16(src, dt, k * ld + idx, n);
  const __m512 hi = k + 1 < K ? load16(src, dt, (k + 1) * ld + idx, n) : _mm512_setzero_ps();
  _mm512_mask_storeu_epi32(dst, store, pair_words(lo, hi));
}

// A packed: for each tile of MR rows, KP k pairs × MR words (zero outside the matrix).
void pack_a(uint32_t* apack, const float* a, int64_t lda, bool trans, int64_t M, int64_t K, int64_t KP) {
  const int64_t n_tiles = (M + MR - 1) / MR;
#pragma omp parallel for schedule(static) if (!omp_in_parallel() && n_tiles > 1)
  for (int64_t t = 0; t < n_tiles; ++t) {
    uint32_t* dst = apack + t * KP * MR;
    const int64_t m0 = t * MR;
    const int mr = int(std::min<int64_t>(MR, M - m0));
    if (mr < MR) std::fill(dst, dst + KP * MR, 0u);
    if (trans)  // A(m, k) = a[k·lda + m]: each k row holds the tile's MR values side by side
      for (int64_t kp = 0; kp < KP; ++kp) pack_pair_across(dst + kp * MR, a, DType::F32, lda, 2 * kp, K, m0, mr, first(MR));
    else
      for (int i = 0; i < mr; ++i) pack_row_along_k(dst + i, MR, a, DType::F32, (m0 + i) * lda, K, KP);
  }
}

// The B panel of columns n0 .. n0+NR−1: bpack[kp·NR + j] = (B(2kp, n0+j), B(2kp+1, n0+j)), zero
// outside the matrix. B(k, n) = b[trans ? n·ld + k : k·ld + n], of f32 or bf16 elements.
void pack_b_panel(uint32_t* bpack, const GemmBf16Args& g, int64_t n0, int64_t KP) {
  const int nr = int(std::min<int64_t>(NR, g.N - n0));
  if (g.trans_b) {  // column n of B is a row of the source, along k
    if (nr < NR) std::fill(bpack, bpack + KP * NR, 0u);
    for (int j = 0; j < nr; ++j) pack_row_along_k(bpack + j, NR, g.b, g.b_dtype, (n0 + j) * g.ldb, g.K, KP);
    return;
  }
  for (int64_t kp = 0; kp < KP; ++kp)  // two rows of B (one k pair), 16 columns at a time
    for (int j0 = 0; j0 < NR; j0 += 16)
      pack_pair_across(bpack + kp * NR + j0, g.b, g.b_dtype, g.ldb, 2 * kp, g.K, n0 + j0, nr - j0, first(16));
}

// C rows m0 .. m0+mr−1, columns n0 .. n0+nc−1 over k pairs [kp0, kp1): load (or zero) the tile,
// add the products, store.
template <int R>
void tile(const GemmBf16Args& g, const uint32_t* a, const uint32_t* b, int64_t kp0, int64_t kp1, int64_t m0,
          int64_t n0, int nc, bool load_c) {
  __m512 c0[R], c1[R];
  const __mmask16 k0 = __mmask16(nc >= 16 ? 0xFFFF : (1u << nc) - 1);
  const __mmask16 k1 = __mmask16(nc >= 32 ? 0xFFFF : nc > 16 ? (1u << (nc - 16)) - 1 : 0);
  for (int i = 0; i < R; ++i) {
    float* crow = g.c + (m0 + i) * g.ldc + n0;
    c0[i] = load_c ? _mm512_maskz_loadu_ps(k0, crow) : _mm512_setzero_ps();
    c1[i] = load_c ? _mm512_maskz_loadu_ps(k1, crow + 16) : _mm512_setzero_ps();
  }
  for (int64_t kp = kp0; kp < kp1; ++kp) {
    const __m512bh b0 = (__m512bh)_mm512_load_si512(b + kp * NR);
    const __m512bh b1 = (__m512bh)_mm512_load_si512(b + kp * NR + 16);
    for (int i = 0; i < R; ++i) {
      // A(m0+i, 2kp) and A(m0+i, 2kp+1) in every lane: lane j gains A·B(2kp, j) + A·B(2kp+1, j)
      const __m512bh ai = (__m512bh)_mm512_set1_epi32(int(a[kp * MR + i]));
      c0[i] = _mm512_dpbf16_ps(c0[i], ai, b0);
      c1[i] = _mm512_dpbf16_ps(c1[i], ai, b1);
    }
  }
  for (int i = 0; i < R; ++i) {
    float* crow = g.c + (m0 + i) * g.ldc + n0;
    _mm512_mask_storeu_ps(crow, k0, c0[i]);
    if (k1) _mm512_mask_storeu_ps(crow + 16, k1, c1[i]);
  }
}

template <int... R>
void tile_rows(int mr, const GemmBf16Args& g, const uint32_t* a, const uint32_t* b, int64_t kp0, int64_t kp1,
               int64_t m0, int64_t n0, int nc, bool load_c, std::integer_sequence<int, R...>) {
  ((mr == R + 1 ? tile<R + 1>(g, a, b, kp0, kp1, m0, n0, nc, load_c) : void()), ...);
}

// Panels [p0, p1) of the product on the calling thread.
void run_panels(const GemmBf16Args& g, const uint32_t* apack, int64_t KP, int64_t p0, int64_t p1) {
  static thread_local std::vector<uint32_t> buf;
  buf.resize(size_t(KP * NR + 16));
  // 64-byte aligned panel: each k pair's 32 words are two aligned zmm loads
  uint32_t* const bpack = buf.data() + (16 - (reinterpret_cast<uintptr_t>(buf.data()) / 4) % 16) % 16;
  const int64_t n_tiles = (g.M + MR - 1) / MR;
  for (int64_t p = p0; p < p1; ++p) {
    const int64_t n0 = p * NR;
    const int nc = int(std::min<int64_t>(NR, g.N - n0));
    pack_b_panel(bpack, g, n0, KP);
    for (int64_t kp0 = 0; kp0 < KP; kp0 += kKBlock) {
      const int64_t kp1 = std::min(KP, kp0 + kKBlock);
      const bool load_c = kp0 > 0 || g.accumulate;
      for (int64_t t = 0; t < n_tiles; ++t) {
        const int64_t m0 = t * MR;
        const int mr = int(std::min<int64_t>(MR, g.M - m0));
        const uint32_t* a = apack + t * KP * MR;
        if (mr == MR) tile<MR>(g, a, bpack, kp0, kp1, m0, n0, nc, load_c);
        else tile_rows(mr, g, a, bpack, kp0, kp1, m0, n0, nc, load_c, std::make_integer_sequence<int, MR - 1>());
      }
    }
  }
}

}  // namespace

void gemm_bf16(const GemmBf16Args& g) {
  DISTILL_ASSERT_MSG(g.b_dtype == DType::F32 || g.b_dtype == DType::BF16, "gemm_bf16 takes f32 or bf16 B, not {}",
                     dtype_name(g.b_dtype));
  if (g.M <= 0 || g.N <= 0) return;
  if (g.K <= 0) {
    if (!g.accumulate)
      for (int64_t m = 0; m < g.M; ++m) std::fill(g.c + m * g.ldc, g.c + m * g.ldc + g.N, 0.0f);
    return;
  }
  const int64_t KP = (g.K + 1) / 2;
  const int64_t n_tiles = (g.M + MR - 1) / MR;
  static thread_local std::vector<uint32_t> apack;
  apack.resize(size_t(n_tiles * KP * MR));
  pack_a(apack.data(), g.a, g.lda, g.trans_a, g.M, g.K, KP);
  const int64_t n_panels = (g.N + NR - 1) / NR;
  const uint32_t* const ap = apack.data();
  if (omp_in_parallel() || n_panels == 1 || g.M * g.N * g.K <= 200000) return run_panels(g, ap, KP, 0, n_panels);
  std::exception_ptr error;
#pragma omp parallel
  {
    const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
    try {
      run_panels(g, ap, KP, n_panels * t / nt, n_panels * (t + 1) / nt);
    } catch (...) {
#pragma omp critical(distill_gemm_bf16_error)
      if (!error) error = std::current_exception();
    }
  }
  if (error) std::rethrow_exception(error);
}

}  // namespace distill::avx512
