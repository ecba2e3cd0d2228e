// The demo's embedded task: multi-step arithmetic word problems with worked solutions and a
// checkable final answer, generated from a seed (no downloaded data). Two or three steps of
// adding, taking away and doubling two-digit numbers (carries and borrows included): easy to
// check, hard enough that a small model does not saturate it and a larger one clearly beats a
// small one.
//
//   Q: Mia has 12 marbles. She finds 7 more. Then she gives away 5. How many marbles does Mia have now?
//   A: 12 + 7 = 19. 19 - 5 = 14. #### 14
//
// The hard level (demo --task hard) has three or four steps, larger numbers to add and taking
// away, and tripling beside doubling: the demo's students land well below its teacher there,
// leaving headroom for reinforcement to show.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace distill {

struct ArithProblem {
  std::string prompt;    // "Q: ...\nA:"
  std::string solution;  // " 12 + 7 = 19. 19 - 5 = 14. #### 14"
  int64_t answer;
};

enum class ArithLevel { Standard, Hard };

ArithLevel parse_arith_level(const std::string& name);  // "standard" | "hard"; refuses others naming them
const char* arith_level_name(ArithLevel level);

// `n` problems from `seed`; the same seed gives the same problems on every machine.
std::vector<ArithProblem> make_arith_problems(int64_t n, uint64_t seed, ArithLevel level = ArithLevel::Standard);

}  // namespace distill
