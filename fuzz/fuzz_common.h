// Shared by the libFuzzer targets: the contract every parser must keep on any input — return, or
// throw distill::Error (or the server's ApiError, a 4xx) — anything else (another exception, a
// crash, a sanitizer report, a hang) is a finding.
#pragma once

#include "core/error.h"

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <string>
#include <unistd.h>

namespace distill::fuzz {

// Runs fn; a distill::Error is an accepted refusal, any other exception aborts (a finding).
template <typename Fn>
void expect_clean(Fn&& fn) {
  try {
    fn();
  } catch (const Error&) {
  } catch (const std::exception& e) {
    std::fprintf(stderr, "foreign exception escaped the parser: %s\n", e.what());
    std::abort();
  }
}

// The input as a file (the parsers under test read files: mmap, ifstream). One per process,
// rewritten per input, in /dev/shm when it exists.
inline std::string input_file(const uint8_t* data, size_t size, const char* suffix) {
  static const std::string path = std::string(access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp") + "/distill-fuzz-" +
                                  std::to_string(getpid()) + suffix;
  FILE* f = std::fopen(path.c_str(), "wb");
  if (!f) std::abort();
  if (size) std::fwrite(data, 1, size, f);
  std::fclose(f);
  return path;
}

}  // namespace distill::fuzz
