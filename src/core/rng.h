// Small deterministic RNG (xoshiro256**, seeded by splitmix64): the same seed gives the same
// numbers on every machine, which std::normal_distribution does not promise.
#pragma once

#include <cstdint>
#include <vector>

namespace distill {

class Rng {
public:
  explicit Rng(uint64_t seed = 0);
  uint64_t next_u64();
  float uniform();          // [0, 1)
  float normal();           // N(0, 1), Box-Muller

private:
  uint64_t s_[4];
};

// splitmix64's finaliser: every input bit reaches every output bit. A keyed hash for the
// watermark's green lists and the guard's MinHash sketches.
inline uint64_t mix64(uint64_t x) {
  x ^= x >> 30;
  x *= 0xbf58476d1ce4e5b9ull;
  x ^= x >> 27;
  x *= 0x94d049bb133111ebull;
  return x ^ (x >> 31);
}

// 0..n-1 in an order fixed by (seed, epoch): data order that a resumed run reproduces exactly.
std::vector<int64_t> shuffled_indices(int64_t n, uint64_t seed, int64_t epoch);

}  // namespace distill
