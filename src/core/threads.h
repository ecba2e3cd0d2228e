// One thread count for every kernel: our OpenMP loops and OpenBLAS (its OpenMP build) both
// follow omp_set_num_threads. Default = physical cores, because the matmul kernels saturate a
// core's FMA units and SMT siblings only add contention.
#pragma once

namespace distill {

int physical_core_count();
void set_num_threads(int n);  // n <= 0 means the default
int num_threads();

}  // namespace distill
