// distill demo [--quick] [-o DIR]: the whole recipe on an embedded task (see demo/demo.h).
#include "cli/commands.h"
#include "demo/demo.h"

#include <CLI/CLI.hpp>

namespace distill {

void register_demo(CLI::App& app) {
  auto s = std::make_shared<DemoSettings>();
  CLI::App* cmd = app.add_subcommand("demo", "The whole recipe on an embedded arithmetic task: teacher, label, "
                                             "CE and KD students, GRPO, evaluation, report");
  cmd->add_flag("--quick", s->quick, "A smaller run of every stage, one student seed (about 5 minutes)");
  cmd->add_flag("--smoke", s->smoke, "Every stage at a toy size, one seed (about a minute): checks the recipe runs, not what it reaches");
  cmd->add_option("-o,--out", s->out_dir, "Directory for the data, models and report.html")->capture_default_str();
  cmd->add_option("--seed", s->seed, "Seed of the task and every stage")->capture_default_str();
  cmd->add_option("--seeds", s->seeds, "Student seeds per method (the table is their mean ± sd; default 3, 1 with --quick)")
      ->check(CLI::Range(1, 20));
  auto level = std::make_shared<std::string>("standard");
  cmd->add_option("--task", *level, "standard, or hard: three or four steps with larger numbers (more headroom for the students)")
      ->capture_default_str();
  cmd->callback([s, level] {
    s->level = parse_arith_level(*level);
    run_demo(*s);
  });
}

}  // namespace distill
