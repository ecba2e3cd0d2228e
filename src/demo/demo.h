// distill demo: the whole recipe on the embedded arithmetic task, on this machine —
//   1. train a teacher on all the worked solutions, 2. have it answer every training prompt
//   (label, top-k), 3. train two students of the same size and steps: one on the worked
//   solutions a student team would have (a tenth of them: CE), one on the teacher's answers to
//   all prompts (CE on its text + KD on its top-k), and one distilled on-policy (half its rows
//   sampled by itself and graded by the teacher, GKD), 4. GRPO on the distilled student, 5.
//   evaluate them all on held-out problems, 6. write DIR/report.html and leave the models in DIR.
// Steps 3–5 run for each of `seeds` student seeds (the teacher and its labels are shared); the
// table gives each method's mean ± sd over them.
#pragma once

#include "demo/arith_task.h"

#include <cstdint>
#include <string>
#include <vector>

namespace distill {

struct DemoSettings {
  bool quick = false;      // ~5 minutes, one seed, instead of ~45 with three
  bool smoke = false;      // every stage at a toy size, one seed (~1 minute): the test suite's check that
                           // the recipe holds together, not a result
  std::string out_dir = "demo";
  uint64_t seed = 1;
  int seeds = 0;           // student seeds; 0: 3, or 1 with quick
  ArithLevel level = ArithLevel::Standard;  // the task's difficulty (--task)
};

struct DemoRow {
  std::string name, method, dir;  // e.g. "student-kd-s2", "student-kd"
  int64_t params = 0;
  double accuracy = 0, perplexity = 0, agreement = 0, kl = 0, decode_tps = 0;
};

// Runs every stage, prints progress and the table; returns the table's rows.
std::vector<DemoRow> run_demo(const DemoSettings& s);

}  // namespace distill
