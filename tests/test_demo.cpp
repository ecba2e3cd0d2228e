// distill demo --smoke end to end (the --quick and full plans differ only in sizes): every stage leaves a loadable model, and the table agrees with a
// separate `distill eval` of those models on the same held-out data.
#include "demo/arith_task.h"
#include "model/model.h"
#include "test_util.h"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>
#include <regex>
#include <sys/wait.h>

namespace distill {

namespace {
int run(const std::string& args, std::string* out) {
  const test::CliResult r = test::run_distill(args);
  *out = r.output;
  return r.exit_code;
}
}  // namespace

// Every worked solution of either level is right step by step, chains each result into the next
// step, ends with that result as the answer, and has the level's number of steps; the same seed
// gives the same problems; the hard level reaches three-digit numbers.
TEST(ArithTask, SolutionsAreRightAndLevelsDiffer) {
  const std::regex step(R"((\d+) ([-+*]) (\d+) = (\d+)\.)");
  for (const ArithLevel level : {ArithLevel::Standard, ArithLevel::Hard}) {
    const auto problems = make_arith_problems(500, 7, level);
    EXPECT_EQ(problems[123].prompt, make_arith_problems(500, 7, level)[123].prompt);
    int64_t largest = 0;
    for (const ArithProblem& p : problems) {
      int n = 0;
      int64_t prev = -1;
      for (auto it = std::sregex_iterator(p.solution.begin(), p.solution.end(), step); it != std::sregex_iterator(); ++it, ++n) {
        const int64_t a = std::stoll((*it)[1]), b = std::stoll((*it)[3]), c = std::stoll((*it)[4]);
        const char op = (*it)[2].str()[0];
        EXPECT_EQ(op == '+' ? a + b : op == '-' ? a - b : a * b, c) << p.solution;
        if (prev >= 0) {
          EXPECT_EQ(a, prev) << "each step starts from the last result: " << p.solution;
        }
        EXPECT_GE(c, 0) << p.solution;
        prev = c, largest = std::max(largest, c);
      }
      EXPECT_EQ(prev, p.answer) << p.solution;
      EXPECT_NE(p.solution.find(" #### " + std::to_string(p.answer)), std::string::npos) << p.solution;
      if (level == ArithLevel::Hard) {
        EXPECT_TRUE(n == 3 || n == 4) << p.solution;
      } else {
        EXPECT_TRUE(n == 2 || n == 3) << p.solution;
      }
    }
    if (level == ArithLevel::Hard) EXPECT_GT(largest, 300);
    else EXPECT_LT(largest, 300);
  }
  EXPECT_NE(make_arith_problems(1, 7, ArithLevel::Hard)[0].prompt, make_arith_problems(1, 7)[0].prompt);
  EXPECT_THROW(parse_arith_level("harder"), Error);
}

TEST(Demo, SmokeRunIsCompleteAndConsistentWithEval) {
  test::TempDir dir;
  std::string out;
  ASSERT_EQ(run("demo --smoke -o " + (dir / "demo"), &out), 0) << out;
  EXPECT_NE(out.find("student-rl"), std::string::npos) << out;
  EXPECT_TRUE(std::filesystem::exists(dir / "demo/report.html"));
  std::ifstream in(dir / "demo/results.json");
  const nlohmann::json results = nlohmann::json::parse(in);
  ASSERT_EQ(results["models"].size(), 5u) << "teacher, CE, KD, on-policy KD and RL students";
  ASSERT_EQ(results["summary"].size(), 5u);
  EXPECT_EQ(results["summary"][3]["method"], "student-gkd");
  for (const auto& m : results["models"]) {
    const std::string name = m["model"], path = m["dir"];
    EXPECT_NO_THROW(Model::load(path)) << name;
    EXPECT_TRUE(std::filesystem::exists(path + "/tokenizer.json")) << name;
    EXPECT_TRUE(std::filesystem::exists(path + "/report.html")) << name;
    ASSERT_EQ(run("eval " + path + " --text " + (dir / "demo/data/heldout.jsonl") + " --tasks " +
                      (dir / "demo/data/heldout_tasks.jsonl") + " --teacher " + (dir / "demo/teacher") +
                      " --max-new-tokens 64 --seq-len " + std::to_string(results["eval"]["seq_len"].get<int>()) +
                      " --json --no-speed",
                  &out),
              0)
        << out;
    const nlohmann::json e = nlohmann::json::parse(out);
    EXPECT_NEAR(e["tasks"]["accuracy"].get<double>(), m["accuracy"].get<double>(), 1e-9) << name;
    EXPECT_NEAR(e["text"]["perplexity"].get<double>(), m["perplexity"].get<double>(), 1e-6 * m["perplexity"].get<double>()) << name;
    EXPECT_NEAR(e["fidelity"]["top1_agreement"].get<double>(), m["top1_agreement"].get<double>(), 1e-9) << name;
    EXPECT_EQ(e["parameters"], m["parameters"]) << name;
  }
  // the teacher agrees with itself
  EXPECT_EQ(results["models"][0]["top1_agreement"], 1.0);
}

}  // namespace distill
