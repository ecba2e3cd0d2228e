#include "core/data_parallel.h"

#include <cstdio>
#include <algorithm>
#include <cstdlib>
#include <vector>

#ifdef DISTILL_MPI
#include <mpi.h>
#endif

namespace distill {
namespace {
int g_rank = 0, g_size = 1;
bool g_mpi = false;
#ifdef DISTILL_MPI
std::vector<MPI_Request> g_pending;  // sums started by sum_start and not yet waited for
#endif
}  // namespace

void DataParallel::init(int* argc, char*** argv) {
#ifdef DISTILL_MPI
  if (!std::getenv("OMPI_COMM_WORLD_SIZE") && !std::getenv("PMI_SIZE")) return;
  MPI_Init(argc, argv);
  MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
  MPI_Comm_size(MPI_COMM_WORLD, &g_size);
  g_mpi = true;
#else
  (void)argc, (void)argv;
#endif
}

void DataParallel::finalize() {
#ifdef DISTILL_MPI
  if (g_mpi) MPI_Finalize();
  g_mpi = false;
#endif
}

int DataParallel::rank() { return g_rank; }
int DataParallel::size() { return g_size; }

bool DataParallel::available() {
#ifdef DISTILL_MPI
  return true;
#else
  return false;
#endif
}

void DataParallel::sum(float* x, int64_t n) {
#ifdef DISTILL_MPI
  if (!g_mpi || g_size == 1) return;
  // MPI counts are int: large arrays go in chunks.
  const int64_t chunk = int64_t(1) << 30;
  for (int64_t at = 0; at < n; at += chunk)
    MPI_Allreduce(MPI_IN_PLACE, x + at, int(std::min(chunk, n - at)), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
#else
  (void)x, (void)n;
#endif
}

void DataParallel::sum_start(float* x, int64_t n) {
#ifdef DISTILL_MPI
  if (!g_mpi || g_size == 1) return;
  const int64_t chunk = int64_t(1) << 30;
  for (int64_t at = 0; at < n; at += chunk) {
    g_pending.emplace_back();
    MPI_Iallreduce(MPI_IN_PLACE, x + at, int(std::min(chunk, n - at)), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD, &g_pending.back());
  }
#else
  (void)x, (void)n;
#endif
}

void DataParallel::progress() {
#ifdef DISTILL_MPI
  int done = 0;
  if (!g_pending.empty()) MPI_Testall(int(g_pending.size()), g_pending.data(), &done, MPI_STATUSES_IGNORE);
#endif
}

void DataParallel::wait_all() {
#ifdef DISTILL_MPI
  if (!g_pending.empty()) MPI_Waitall(int(g_pending.size()), g_pending.data(), MPI_STATUSES_IGNORE);
  g_pending.clear();
#endif
}

std::pair<int64_t, int64_t> DataParallel::shard(int64_t n, int r) {
  const int64_t per = (n / g_size + 15) / 16 * 16;  // 16-aligned
  const int64_t begin = std::min(n, per * r), end = r + 1 == g_size ? n : std::min(n, per * (r + 1));
  return {begin, end};
}

#ifdef DISTILL_MPI
namespace {
// Counts and displacements of every rank's shard, as MPI's ints.
void shard_counts(int64_t n, std::vector<int>* counts, std::vector<int>* displs) {
  if (n >= (int64_t(1) << 31)) DataParallel::abort("optimizer sharding: more than 2^31 parameters are not supported", 2);
  for (int r = 0; r < g_size; ++r) {
    const auto [b, e] = DataParallel::shard(n, r);
    counts->push_back(int(e - b)), displs->push_back(int(b));
  }
}
}  // namespace
#endif

void DataParallel::all_gather(float* x, int64_t n) {
#ifdef DISTILL_MPI
  if (!g_mpi || g_size == 1) return;
  std::vector<int> counts, displs;
  shard_counts(n, &counts, &displs);
  MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, x, counts.data(), displs.data(), MPI_FLOAT, MPI_COMM_WORLD);
#else
  (void)x, (void)n;
#endif
}

void DataParallel::gather_to_leader(const float* mine, float* full, int64_t n) {
  const auto [begin, end] = shard(n, g_rank);
#ifdef DISTILL_MPI
  if (g_mpi && g_size > 1) {
    std::vector<int> counts, displs;
    shard_counts(n, &counts, &displs);
    MPI_Gatherv(mine, int(end - begin), MPI_FLOAT, full, counts.data(), displs.data(), MPI_FLOAT, 0, MPI_COMM_WORLD);
    return;
  }
#endif
  std::copy(mine, mine + (end - begin), full + begin);
}

void DataParallel::reduce_scatter(float* x, int64_t n) {
#ifdef DISTILL_MPI
  if (!g_mpi || g_size == 1) return;
  std::vector<int> counts, displs;
  shard_counts(n, &counts, &displs);
  std::vector<float> mine(static_cast<size_t>(counts[size_t(g_rank)]));
  MPI_Reduce_scatter(x, mine.data(), counts.data(), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
  std::copy(mine.begin(), mine.end(), x + displs[size_t(g_rank)]);
#else
  (void)x, (void)n;
#endif
}

double DataParallel::sum_in_rank_order(double x) {
#ifdef DISTILL_MPI
  if (g_mpi && g_size > 1) {
    std::vector<double> all(static_cast<size_t>(g_size));
    MPI_Allgather(&x, 1, MPI_DOUBLE, all.data(), 1, MPI_DOUBLE, MPI_COMM_WORLD);
    double s = 0.0;
    for (double v : all) s += v;
    return s;
  }
#endif
  return x;
}

double DataParallel::sum(double x) {
#ifdef DISTILL_MPI
  if (g_mpi && g_size > 1) MPI_Allreduce(MPI_IN_PLACE, &x, 1, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
#endif
  return x;
}

void DataParallel::abort(const std::string& message, int code) {
  std::fprintf(stderr, "%s\n", message.c_str());
#ifdef DISTILL_MPI
  if (g_mpi && g_size > 1) MPI_Abort(MPI_COMM_WORLD, code);
#endif
  std::exit(code);
}

}  // namespace distill
