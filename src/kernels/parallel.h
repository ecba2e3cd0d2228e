// parallel_for: body(i) for i in [0, n), split statically over the OpenMP threads when the work is
// worth it and the caller is not already inside a parallel region; otherwise a plain loop on the
// calling thread, with no OpenMP construct entered at all. `#pragma omp parallel for if (small)`
// is not that: a region that ends up with one thread still makes libgomp allocate a team, and
// from the threads of an outer region (attention's heads calling softmax per row) those nested
// teams contend for a lock — measured at a third of prompt attention's time, in futex calls.
#pragma once

#include "core/work_pool.h"

#include <omp.h>

#include <cstdint>

namespace distill {

template <class Body>
inline void parallel_for(int64_t n, bool worth, Body&& body) {
  if (!worth || n <= 1 || omp_in_parallel() || in_work_pool()) {
    for (int64_t i = 0; i < n; ++i) body(i);
    return;
  }
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) body(i);
}

// The same contract on the work pool (core/work_pool.h), for the loops of a one-token decode step:
// contiguous runs of i claimed in order by the caller and whichever workers are running, so a step
// does not wait for a thread another process holds. Prefill, batched decode and training loops
// stay on parallel_for: the two pools must not alternate at fine grain.
template <class Body>
inline void pool_for(int64_t n, bool worth, Body&& body) {
  if (!worth || n <= 1) {
    for (int64_t i = 0; i < n; ++i) body(i);
    return;
  }
  const int64_t n_chunks = chunks_for(n);
  run_chunks(n_chunks, [&](int64_t c) {
    for (int64_t i = n * c / n_chunks; i < n * (c + 1) / n_chunks; ++i) body(i);
  });
}

// The decode matvecs' split: out[n] = row(n) + bias[n] (bias may be null) for the N weight rows, in
// tasks of 16 rows on the work pool when N·K is worth it; each thread reads a linear stream of rows
// that the hardware prefetcher follows.
template <class Row>
inline void parallel_rows(float* out, const float* bias, int64_t N, int64_t K, Row&& row) {
  constexpr int64_t kRowsPerTask = 16;
  const int64_t n_tasks = (N + kRowsPerTask - 1) / kRowsPerTask;
  pool_for(n_tasks, n_tasks > 1 && N * K > 100000, [&](int64_t t) {
    const int64_t n_end = N < (t + 1) * kRowsPerTask ? N : (t + 1) * kRowsPerTask;
    for (int64_t n = t * kRowsPerTask; n < n_end; ++n) out[n] = row(n) + (bias ? bias[n] : 0.0f);
  });
}

}  // namespace distill
