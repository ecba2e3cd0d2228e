// Data-parallel training over MPI (OpenMPI from Debian): ranks are processes started by
// `mpirun -np N distill train ...`, each with its share of every batch; gradients are summed
// across ranks before each optimizer step so that every rank takes the same step. Without MPI at
// build time, or when not started by mpirun, this is one rank of one and every call is a no-op.
#pragma once

#include <cstdint>
#include <string>

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
  static double sum(double x);
  // Ends every rank of the job after printing `message` (a rank's error must not leave the others
  // waiting in a collective).
  [[noreturn]] static void abort(const std::string& message, int code);
};

}  // namespace distill
