// Facts about the machine a run is on, for `distill info --system` and the benchmarks: the CPU
// model, its instruction-set extensions, and its measured memory read bandwidth (the limit of
// decoding, which streams every weight once per token).
#pragma once

#include <string>

namespace distill {

// The current time in UTC through strftime, e.g. "%Y-%m-%d".
std::string utc_now(const char* format);
std::string cpu_model_name();   // /proc/cpuinfo's "model name", or "unknown"
std::string cpu_isa_flags();    // the extensions kernels care about, e.g. "avx2 fma f16c avx512f ..."
// GB/s of a parallel streaming sum over `bytes` (best of `reps`), with the current thread count.
double measure_read_bandwidth(size_t bytes = size_t(1) << 30, int reps = 5);

}  // namespace distill
