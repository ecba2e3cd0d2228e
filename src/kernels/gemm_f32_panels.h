// Many activation rows (prefill, the training forward, prompt attention) against f32 / f16 / bf16
// weights, without a BLAS: out[M, N] = x[M, K] · w[N, K]^T (+ bias), or x · w[K, N] (the values of
// attention, read in place), all operands row-strided (GemmF32Args, kernels/kernels.h). One
// implementation, instantiated per instruction set by kernels/avx2/gemm_f32.cpp (8-lane vectors)
// and kernels/avx512/gemm_f32.cpp (16 lanes) through a small vector-ops struct V.
//
// Why not sgemm: at these shapes (K 288..2048, N 288..8960, M a few hundred) OpenBLAS spends a
// large share in its threading and its packing of x, and Debian's build picks its AVX2 kernel on
// CPUs it does not know (Zen 5 among them). Here x is never packed and the threads meet once.
//
// Shape of the computation (BLIS's outer-product form):
//   - a panel is NR = 2 vectors' worth of weight rows (32 with AVX-512, 16 with AVX2),
//     transposed to K-major order: panel[k·NR + j] = w[n0 + j][k] (zero past N), converted to
//     f32 once — so one aligned vector load reads one k of NR output columns;
//   - a tile is MR activation rows × the panel: 2·MR accumulators; per k, two loads of the panel,
//     MR broadcasts of x[m][k] and 2·MR FMAs (MR = 12 with AVX-512, 6 with AVX2: every
//     accumulator in a register, with room for the two panel vectors and the broadcast);
//   - work items are (panel, block of kMTiles tiles); each thread takes a contiguous run of items
//     in panel-major order, so it packs each of its panels once (a panel split between two
//     threads is packed by both: cheap) and the split is even when N has few panels (N = 288:
//     9 panels). Called from inside a parallel region (attention's heads), one thread runs all.
// Every output element is one sum over k in order, as the scalar reference computes it (in f32
// here, so the results differ from the double-precision reference by rounding only).
//
// Included by sources compiled with different instruction sets: internal linkage only, so no
// function compiled for AVX-512 can be picked by the linker for the AVX2 file.
#pragma once

#include "kernels/kernels.h"

#include <immintrin.h>
#include <omp.h>

#include <algorithm>
#include <cstdint>
#include <utility>
#include <vector>

namespace distill::gemm_f32_panels {

namespace {

constexpr int64_t kMTiles = 4;  // tiles per work item: a few, so panels × blocks split evenly

// 8 rows × 8 values transposed in registers (AVX2, which every file including this has):
// src[i] points at 8 consecutive values of row i; dst[k·ld + i] = src[i][k].
inline void transpose8x8(float* dst, int64_t ld, const float* const* src) {
  __m256 r[8], t[8];
  for (int i = 0; i < 8; ++i) r[i] = _mm256_loadu_ps(src[i]);
  for (int i = 0; i < 8; i += 2) t[i] = _mm256_unpacklo_ps(r[i], r[i + 1]), t[i + 1] = _mm256_unpackhi_ps(r[i], r[i + 1]);
  // pairs of rows interleaved; now gather 4 rows' worth of each pair of values
  for (int i = 0; i < 8; i += 4) {
    r[i] = _mm256_shuffle_ps(t[i], t[i + 2], 0x44), r[i + 1] = _mm256_shuffle_ps(t[i], t[i + 2], 0xEE);
    r[i + 2] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0x44), r[i + 3] = _mm256_shuffle_ps(t[i + 1], t[i + 3], 0xEE);
  }
  // r[0..3]: rows 0-3 of values (0,4) (1,5) (2,6) (3,7) in 128-bit halves; r[4..7] rows 4-7: join the halves
  for (int i = 0; i < 4; ++i) {
    _mm256_storeu_ps(dst + i * ld, _mm256_permute2f128_ps(r[i], r[i + 4], 0x20));
    _mm256_storeu_ps(dst + (i + 4) * ld, _mm256_permute2f128_ps(r[i], r[i + 4], 0x31));
  }
}

// The K-major panel of output columns n0 .. n0+nr−1 (nr ≤ NR), in f32, zero past nr; `rows` is
// scratch for NR converted rows (f16 / bf16), `zeros` K zeros.
//   w[N, K] (nn.Linear's layout): panel[k·NR + j] = w[n0 + j][k] — 8 rows at a time, 8 values of
//     each per step, transposed in registers: 8 linear streams from the weights and whole-vector
//     stores (one scalar store per value made the packing a fifth of the GEMM);
//   w[K, N] (kn, f32): panel[k·NR + j] = w[k][n0 + j] — row segments copied as they are.
template <int NR>
void pack_panel(float* panel, const GemmF32Args& g, int64_t n0, int nr, float* rows, const float* zeros,
                void (*to_f32)(float*, const void*, DType, int64_t)) {
  const int64_t K = g.K;
  if (g.w_kn) {
    const float* w = static_cast<const float*>(g.w);
    for (int64_t k = 0; k < K; ++k) {
      std::copy(w + k * g.ldw + n0, w + k * g.ldw + n0 + nr, panel + k * NR);
      std::fill(panel + k * NR + nr, panel + (k + 1) * NR, 0.0f);
    }
    return;
  }
  const size_t row_bytes = dtype_bytes(g.w_dtype, g.ldw);
  const float* src[NR];
  for (int j = 0; j < NR; ++j) {
    const char* row = static_cast<const char*>(g.w) + size_t(n0 + j) * row_bytes;
    if (j >= nr) {
      src[j] = zeros;
    } else if (g.w_dtype == DType::F32) {
      src[j] = reinterpret_cast<const float*>(row);
    } else {
      to_f32(rows + size_t(j) * size_t(K), row, g.w_dtype, K);
      src[j] = rows + size_t(j) * size_t(K);
    }
  }
  // k in chunks of 64, all NR rows per chunk: the chunk's NR·64 floats of panel are written
  // whole while in L1 (row groups one after another wrote each line 4 times, from L2)
  constexpr int64_t kChunk = 64;
  const int64_t k8 = K / 8 * 8;
  for (int64_t c = 0; c < k8; c += kChunk)
    for (int j0 = 0; j0 < NR; j0 += 8)
      for (int64_t k = c; k < std::min(k8, c + kChunk); k += 8) {
        const float* s8[8];
        for (int i = 0; i < 8; ++i) s8[i] = src[j0 + i] + k;
        transpose8x8(panel + k * NR + j0, NR, s8);
      }
  for (int64_t k = k8; k < K; ++k)
    for (int j = 0; j < NR; ++j) panel[k * NR + j] = src[j][k];
}

// out rows m0 .. m0+MR−1, columns n0 .. n0+ncols−1 (ncols ≤ NR).
template <class V, int MR>
void tile(float* out, int64_t ldo, const float* panel, const float* x, int64_t ldx, int64_t K, int64_t m0, int64_t n0,
          int ncols, const float* bias) {
  constexpr int L = V::kLanes;
  typename V::reg c0[MR], c1[MR];
  const typename V::reg b0 = bias ? V::load_n(bias + n0, std::min(ncols, L)) : V::zero();
  const typename V::reg b1 = bias && ncols > L ? V::load_n(bias + n0 + L, ncols - L) : V::zero();
  for (int i = 0; i < MR; ++i) c0[i] = b0, c1[i] = b1;
  const float* xr = x + m0 * ldx;
  for (int64_t k = 0; k < K; ++k) {
    const typename V::reg w0 = V::load(panel + k * 2 * L), w1 = V::load(panel + k * 2 * L + L);
    for (int i = 0; i < MR; ++i) {
      const typename V::reg a = V::set1(xr[i * ldx + k]);  // x[m0 + i][k] in every lane
      c0[i] = V::fma(a, w0, c0[i]);
      c1[i] = V::fma(a, w1, c1[i]);
    }
  }
  for (int i = 0; i < MR; ++i) {
    float* o = out + (m0 + i) * ldo + n0;
    if (ncols == 2 * L) {
      V::store(o, c0[i]);
      V::store(o + L, c1[i]);
    } else {
      V::store_n(o, c0[i], std::min(ncols, L));
      if (ncols > L) V::store_n(o + L, c1[i], ncols - L);
    }
  }
}

template <class V, int MR, int... R>
void tile_rows(int mr, float* out, int64_t ldo, const float* panel, const float* x, int64_t ldx, int64_t K, int64_t m0,
               int64_t n0, int ncols, const float* bias, std::integer_sequence<int, R...>) {
  // the instantiation for mr rows (1 .. MR−1)
  ((mr == R + 1 ? tile<V, R + 1>(out, ldo, panel, x, ldx, K, m0, n0, ncols, bias) : void()), ...);
}

// While the tiles of panel p run, the weight rows of panel p + 1 are fetched toward L2 in
// n_tiles shares, one per tile: packing then reads from cache instead of waiting on DRAM (the
// panel's rows are one contiguous range of the weight matrix).
inline void prefetch_share(const GemmF32Args& g, int64_t next, int64_t n_panels, int64_t t, int64_t n_tiles, int NR) {
  if (next >= n_panels || g.w_kn) return;  // (w[K, N] is small where it is used: attention's values)
  const void* w = g.w;
  const int64_t N = g.N, row_bytes = int64_t(dtype_bytes(g.w_dtype, g.ldw));
  const int64_t begin = next * NR * row_bytes, end = std::min(N, (next + 1) * NR) * row_bytes;
  const int64_t share = ((end - begin) / n_tiles + 63) / 64 * 64;
  const char* base = static_cast<const char*>(w);
  for (int64_t off = begin + t * share; off < std::min(end, begin + (t + 1) * share); off += 64)
    _mm_prefetch(base + off, _MM_HINT_T1);
}

// Work items [begin, end) of the product (see the top of this file), on the calling thread.
template <class V, int MR>
void run_items(const GemmF32Args& g, int64_t begin, int64_t end, void (*to_f32)(float*, const void*, DType, int64_t)) {
  constexpr int NR = 2 * V::kLanes;
  const int64_t M = g.M, N = g.N, K = g.K;
  const int64_t n_panels = (N + NR - 1) / NR;
  const int64_t n_tiles = (M + MR - 1) / MR;
  const int64_t n_blocks = (n_tiles + kMTiles - 1) / kMTiles;
  static thread_local std::vector<float> panel_buf, row_buf, zeros;  // this thread's: never shared
  if (int64_t(panel_buf.size()) < K * NR + V::kLanes) panel_buf.resize(size_t(K * NR + V::kLanes));
  if (g.w_dtype != DType::F32 && int64_t(row_buf.size()) < NR * K) row_buf.resize(size_t(NR * K));
  if (int64_t(zeros.size()) < K) zeros.resize(size_t(K), 0.0f);  // only ever zeros
  // the panel aligned to a vector: its rows of NR floats then never straddle a cache line
  float* const panel = panel_buf.data() + (V::kLanes - (reinterpret_cast<uintptr_t>(panel_buf.data()) / 4) % V::kLanes) % V::kLanes;
  int64_t packed = -1;  // the panel now in `panel`
  for (int64_t item = begin; item < end; ++item) {
    const int64_t p = item / n_blocks, block = item % n_blocks;
    const int64_t n0 = p * NR;
    const int nr = int(std::min<int64_t>(NR, N - n0));
    if (p != packed) pack_panel<NR>(panel, g, n0, nr, row_buf.data(), zeros.data(), to_f32), packed = p;
    const int64_t t_end = std::min(n_tiles, (block + 1) * kMTiles);
    for (int64_t t = block * kMTiles; t < t_end; ++t) {
      prefetch_share(g, p + 1, n_panels, t, n_tiles, NR);
      const int64_t m0 = t * MR;
      const int mr = int(std::min<int64_t>(MR, M - m0));
      if (mr == MR) tile<V, MR>(g.out, g.ldo, panel, g.x, g.ldx, K, m0, n0, nr, g.bias);
      else tile_rows<V, MR>(mr, g.out, g.ldo, panel, g.x, g.ldx, K, m0, n0, nr, g.bias, std::make_integer_sequence<int, MR - 1>());
    }
  }
}

template <class V, int MR>
void gemm(const GemmF32Args& g, void (*to_f32)(float*, const void*, DType, int64_t)) {
  constexpr int NR = 2 * V::kLanes;
  const int64_t n_items = (g.N + NR - 1) / NR * (((g.M + MR - 1) / MR + kMTiles - 1) / kMTiles);
  // Inside another parallel region (attention's heads), or small: on the calling thread, with no
  // parallel construct at all — a nested region, even of one thread, costs libgomp a team
  // allocation per call (it was a third of attention's time).
  if (omp_in_parallel() || n_items == 1 || g.M * g.N * g.K <= 200000) return run_items<V, MR>(g, 0, n_items, to_f32);
#pragma omp parallel
  {
    // contiguous runs of items per thread (the static split), so each thread packs its panels once
    const int64_t t = omp_get_thread_num(), nt = omp_get_num_threads();
    run_items<V, MR>(g, n_items * t / nt, n_items * (t + 1) / nt, to_f32);
  }
}

}  // namespace

}  // namespace distill::gemm_f32_panels
