#include "core/system.h"

#include <algorithm>
#include <chrono>
#include <ctime>
#include <fstream>
#include <sstream>
#include <vector>

namespace distill {

namespace {

std::string cpuinfo_field(const std::string& key) {
  std::ifstream in("/proc/cpuinfo");
  for (std::string line; std::getline(in, line);)
    if (line.compare(0, key.size(), key) == 0) {
      const size_t colon = line.find(':');
      return colon == std::string::npos ? "" : line.substr(colon + 2);
    }
  return "";
}

}  // namespace

std::string cpu_model_name() {
  const std::string m = cpuinfo_field("model name");
  return m.empty() ? "unknown" : m;
}

std::string cpu_isa_flags() {
  std::istringstream flags(" " + cpuinfo_field("flags") + " ");
  std::vector<std::string> have;
  for (std::string f; flags >> f;) have.push_back(f);
  std::string out;
  for (const char* f : {"avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512vl", "avx512_vnni", "avx512_bf16", "avx_vnni"})
    if (std::find(have.begin(), have.end(), f) != have.end()) out += (out.empty() ? "" : " ") + std::string(f);
  return out.empty() ? "(none of avx2, avx512)" : out;
}

double measure_read_bandwidth(size_t bytes, int reps) {
  const size_t n = bytes / sizeof(float);
  std::vector<float> a(n, 1.0f);
  double best = 0;
  // Four independent vector accumulators per thread: the loads, not the additions' latency, are
  // the limit (a scalar sum measures the adder, not the memory).
  typedef float v8 __attribute__((vector_size(32)));
  const v8* p = reinterpret_cast<const v8*>(a.data());
  const size_t nv = n / 8;
  for (int rep = 0; rep < reps; ++rep) {
    const auto t0 = std::chrono::steady_clock::now();
    double sum = 0;
#pragma omp parallel reduction(+ : sum)
    {
      v8 s0 = {}, s1 = {}, s2 = {}, s3 = {};
#pragma omp for schedule(static)
      for (size_t i = 0; i < nv; i += 4) s0 += p[i], s1 += p[i + 1], s2 += p[i + 2], s3 += p[i + 3];
      const v8 t = s0 + s1 + s2 + s3;
      for (int j = 0; j < 8; ++j) sum += t[j];
    }
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    if (sum < 0) return 0;  // keeps the sum alive
    best = std::max(best, double(nv * sizeof(v8)) / s / 1e9);
  }
  return best;
}

std::string utc_now(const char* format) {
  const std::time_t now = std::time(nullptr);
  std::tm tm{};
  gmtime_r(&now, &tm);
  char buf[64];
  return std::string(buf, std::strftime(buf, sizeof buf, format, &tm));
}

}  // namespace distill
