// parallel_for: body(i) for i in [0, n), split statically over the OpenMP threads when the work is
// worth it and the caller is not already inside a parallel region; otherwise a plain loop on the
// calling thread, with no OpenMP construct entered at all. `#pragma omp parallel for if (small)`
// is not that: a region that ends up with one thread still makes libgomp allocate a team, and
// from the threads of an outer region (attention's heads calling softmax per row) those nested
// teams contend for a lock — measured at a third of prompt attention's time, in futex calls.
#pragma once

#include <omp.h>

#include <cstdint>

namespace distill {

template <class Body>
inline void parallel_for(int64_t n, bool worth, Body&& body) {
  if (!worth || n <= 1 || omp_in_parallel()) {
    for (int64_t i = 0; i < n; ++i) body(i);
    return;
  }
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) body(i);
}

}  // namespace distill
