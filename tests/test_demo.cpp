// distill demo --smoke end to end (the --quick and full plans differ only in sizes): every stage leaves a loadable model, and the table agrees with a
// separate `distill eval` of those models on the same held-out data.
#include "model/model.h"
#include "test_util.h"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>
#include <sys/wait.h>

namespace distill {

namespace {
int run(const std::string& args, std::string* out) {
  const test::CliResult r = test::run_distill(args);
  *out = r.output;
  return r.exit_code;
}
}  // namespace

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
