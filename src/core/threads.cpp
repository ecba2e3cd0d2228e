#include "core/threads.h"

#include <omp.h>

#include <fstream>
#include <set>
#include <string>
#include <thread>
#include <utility>

namespace distill {

int physical_core_count() {
  // Count distinct (package, core) pairs in sysfs; fall back to logical CPUs.
  std::set<std::pair<int, int>> cores;
  for (int cpu = 0; cpu < 4096; ++cpu) {
    const std::string base = "/sys/devices/system/cpu/cpu" + std::to_string(cpu) + "/topology/";
    std::ifstream core_file(base + "core_id"), pkg_file(base + "physical_package_id");
    int core = -1, pkg = -1;
    if (!(core_file >> core)) break;
    pkg_file >> pkg;
    cores.insert({pkg, core});
  }
  if (!cores.empty()) return int(cores.size());
  const unsigned n = std::thread::hardware_concurrency();
  return n == 0 ? 1 : int(n);
}

void set_num_threads(int n) {
  if (n <= 0) n = physical_core_count();
  omp_set_num_threads(n);
}

int num_threads() { return omp_get_max_threads(); }

void release_idle_openmp_workers() { omp_pause_resource_all(omp_pause_soft); }

}  // namespace distill
