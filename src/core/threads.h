// One thread count for every kernel: our OpenMP loops and OpenBLAS (its OpenMP build) both
// follow omp_set_num_threads. Default = physical cores, because the matmul kernels saturate a
// core's FMA units and SMT siblings only add contention.
#pragma once

namespace distill {

int physical_core_count();
void set_num_threads(int n);  // n <= 0 means the default
int num_threads();

// Hands this thread's idle OpenMP workers back (libgomp frees its pool; the next parallel region
// on this thread builds a new one). Call before compute moves to another thread for good, e.g.
// a server's engine thread: libgomp counts every pool's threads, and once they outnumber the
// CPUs it stops spinning at barriers and sleeps in the kernel at every one — a served token
// then cost ~60 context switches and 0.6-0.7 of the bare decode's speed.
void release_idle_openmp_workers();

}  // namespace distill
