// Runs an untrusted program (a reward checker, unit tests of generated code) with its input on
// stdin, under a wall-clock limit, an address-space limit, no network (a fresh network namespace)
// and a cap on captured output; killed with its whole process group on overrun.
#pragma once

#include <string>
#include <vector>

namespace distill {

struct SandboxLimits {
  double timeout_s = 10.0;
  size_t memory_bytes = size_t(1) << 30;  // RLIMIT_AS
  size_t max_output = 1 << 20;            // bytes of stdout kept
  bool isolate_network = true;
};

struct SandboxResult {
  int exit_code = -1;      // -1 if killed by a signal or not started
  int signal = 0;
  bool timed_out = false;
  std::string out;         // stdout (truncated at max_output)
  std::string error;       // why it could not run, if it could not
};

// argv[0] is looked up in PATH. Never throws for the program's behaviour.
SandboxResult run_sandboxed(const std::vector<std::string>& argv, const std::string& input, const SandboxLimits& limits);

}  // namespace distill
