// Software prefetch of decode weight rows, shared by every ISA's row kernels: a thread's share of
// a matrix is too short for the hardware prefetchers to ramp up from DRAM, and they stop at 4 KiB
// pages. Measured (2026-12-03, AMD EPYC, 2 threads, alternating 0 / 512 / 2048 / 4096 bytes):
// 2 KiB ahead was best or close to it on every decode row — AVX2 1.5B q4_0 28-30 → 31-33 tok/s,
// Q4_K_M 23-24 → 27-28; 4 KiB helped Q4_0 more and hurt Q4_K_M.
#pragma once

#include <immintrin.h>

#include <algorithm>
#include <cstdint>
#include <cstdlib>

namespace distill {

// How far ahead the decode row kernels prefetch weight bytes; DISTILL_PREFETCH_BYTES overrides it
// (to tune on another machine). Read once.
inline int64_t decode_prefetch_bytes() {
  static const int64_t bytes = [] {
    const char* e = std::getenv("DISTILL_PREFETCH_BYTES");
    return e ? std::max<int64_t>(0, std::atoll(e)) : int64_t(2048);
  }();
  return bytes;
}

// Prefetches the cache lines of [p + ahead, p + ahead + bytes).
inline void prefetch_ahead(const void* p, int64_t ahead, int64_t bytes) {
  for (int64_t off = 0; off < bytes; off += 64) _mm_prefetch(static_cast<const char*>(p) + ahead + off, _MM_HINT_T0);
}

}  // namespace distill
