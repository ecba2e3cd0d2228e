// Data-parallel training over MPI (OpenMPI from Debian): ranks are processes started by
// `mpirun -np N distill train ...`, each with its share of every batch; gradients are summed
// across ranks before each optimizer step so that every rank takes the same step. Without MPI at
// build time, or when not started by mpirun, this is one rank of one and every call is a no-op.
#pragma once

#include <cstdint>
#include <string>
#include <utility>

namespace distill {

class DataParallel {
public:
  // Joins the MPI job when the process was started by mpirun (OMPI_COMM_WORLD_SIZE or PMI_SIZE
  // set); otherwise stays one rank of one. Call once, first thing in main.
  static void init(int* argc, char*** argv);
  static void finalize();
  static int rank();
  static int size();
  static bool leader() { return rank() == 0; }  // writes files, prints progress
  static bool available();                      // built with MPI

  // In place: x[i] = Σ over ranks of x[i].
  static void sum(float* x, int64_t n);
  // Non-blocking form of sum(x, n): starts the sum and returns; x must stay untouched until
  // wait_all(). progress() lets MPI move the started sums along (call it between pieces of
  // work: MPI advances non-blocking collectives only inside its calls).
  static void sum_start(float* x, int64_t n);
  static void progress();
  static void wait_all();
  // Rank r's share of n items for sharded state (ZeRO-1): [begin, end), contiguous, in rank order,
  // 16-aligned boundaries.
  static std::pair<int64_t, int64_t> shard(int64_t n, int r);
  // In place: this rank's shard of x (shard(n, rank())) becomes the sum over ranks of that shard;
  // the rest of x is left as it was (ZeRO-1's gradients: each rank needs only its shard's).
  static void reduce_scatter(float* x, int64_t n);
  // In place: every rank's shard of x (shard(n, r)) copied to every other rank.
  static void all_gather(float* x, int64_t n);
  // The leader's `full` [n] receives every rank's shard (`mine` is this rank's shard(n, rank()));
  // `full` is ignored on other ranks.
  static void gather_to_leader(const float* mine, float* full, int64_t n);
  static double sum(double x);
  // Σ over ranks of x, added in rank order on every rank (the same rounding as one process adding
  // the ranks' parts in that order, whatever the number of ranks).
  static double sum_in_rank_order(double x);
  // Ends every rank of the job after printing `message` (a rank's error must not leave the others
  // waiting in a collective).
  [[noreturn]] static void abort(const std::string& message, int code);
};

}  // namespace distill
