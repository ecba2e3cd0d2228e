// Data-parallel training over MPI on one machine (loopback): `mpirun -np 2 distill train` against
// one process with the same global batch and seed — the same loss curve and final weights up to
// float summation order; a rank killed mid-run stops the job with a message, and the run resumes
// (with the same or another number of ranks). Skipped, with the reason, without mpirun or a
// binary built with MPI.
#include "model/model.h"
#include "test_util.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>

namespace distill {
using test::TempDir;

namespace {

const char* kMpirun = "OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 mpirun -np 2";
const char* kArgs = " --steps 30 --batch 8 --seq-len 16 --lr 0.003 --warmup 3 --save-every 10 --eval-fraction 0 --seed 3";

std::vector<double> losses(const std::string& metrics) {
  std::vector<double> out;
  std::ifstream in(metrics);
  for (std::string line; std::getline(in, line);) out.push_back(nlohmann::json::parse(line)["loss"].get<double>());
  return out;
}

float max_weight_diff(const std::string& a, const std::string& b) {
  Model ma = Model::load(a), mb = Model::load(b);
  const auto pa = list_params(ma.config, ma.weights), pb = list_params(mb.config, mb.weights);
  float worst = 0;
  for (size_t i = 0; i < pa.size(); ++i)
    worst = std::max(worst, test::max_abs_diff(pa[i].tensor->data<float>(), pb[i].tensor->data<float>(), size_t(pa[i].tensor->numel())));
  return worst;
}

}  // namespace

TEST(DataParallel, TwoRanksEqualOneProcessAndAKilledRankResumes) {
#ifndef DISTILL_TEST_MPI
  GTEST_SKIP() << "SKIPPED: distill was built without MPI (install libopenmpi-dev openmpi-bin and rebuild)";
#endif
  if (std::system("command -v mpirun > /dev/null 2>&1") != 0) GTEST_SKIP() << "SKIPPED: mpirun is not installed";
  TempDir dir;
  {
    std::ofstream out(dir / "data.jsonl");
    Rng rng(9);
    for (int e = 0; e < 96; ++e) {
      nlohmann::json ids = nlohmann::json::array(), mask = nlohmann::json::array();
      for (int i = 0; i < 17; ++i) ids.push_back(int(rng.next_u64() % 24)), mask.push_back(i ? 1 : 0);
      out << nlohmann::json{{"ids", ids}, {"mask", mask}}.dump() << "\n";
    }
  }
  ASSERT_EQ(test::run_distill("init --preset tiny --vocab 24 --seed 5 -o " + (dir / "student")).exit_code, 0);
  const std::string train = " train --student " + (dir / "student") + " --data " + (dir / "data.jsonl") + kArgs;
  test::CliResult r = test::run_distill("-t 2" + train + " -o " + (dir / "one"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = test::run_distill("-t 1" + train + " -o " + (dir / "two"), kMpirun);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("× 2 ranks (MPI, 4 rows each)"), std::string::npos) << r.output;
  const std::string replicated = r.output;
  // The layers' sums started during the backward (the default) against one sum after it: the same
  // numbers, so the same weights bit for bit.
  EXPECT_NE(r.output.find("gradient sum over the ranks starts as its backward ends"), std::string::npos) << r.output;
  r = test::run_distill("-t 1" + train + " --no-overlap-comm -o " + (dir / "two-after"), kMpirun);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output.find("starts as its backward ends"), std::string::npos) << r.output;
  EXPECT_EQ(test::read_bytes(dir / "two-after/model.safetensors"), test::read_bytes(dir / "two/model.safetensors"));

  // The same loss curve and weights; the bound is float summation order (rows summed in two
  // groups, then the groups), carried through 30 AdamW steps.
  const std::vector<double> a = losses(dir / "one/metrics.jsonl"), b = losses(dir / "two/metrics.jsonl");
  ASSERT_EQ(a.size(), 30u);
  ASSERT_EQ(b.size(), 30u);
  for (size_t i = 0; i < a.size(); ++i) EXPECT_NEAR(a[i], b[i], 1e-5 * std::abs(a[i])) << "step " << i + 1;
  const float diff = max_weight_diff(dir / "one", dir / "two");
  std::printf("[data parallel] 30 steps: largest loss difference %.2e, largest weight difference %.2e\n",
              [&] { double w = 0; for (size_t i = 0; i < a.size(); ++i) w = std::max(w, std::abs(a[i] - b[i])); return w; }(), diff);
  EXPECT_LT(diff, 2e-5f);

  // Rank 1 dies at step 17 (after the checkpoint of step 10): the job stops with a message.
  r = test::run_distill("-t 1" + train + " -o " + (dir / "killed"), std::string("DISTILL_TEST_KILL_AT_STEP=17 DISTILL_TEST_KILL_RANK=1 ") + kMpirun);
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("137"), std::string::npos) << "mpirun names the rank's exit: " << r.output;
  EXPECT_FALSE(std::filesystem::exists(dir / "killed/model.safetensors"));
  // Resumed with two ranks: bit for bit the uninterrupted two-rank run.
  r = test::run_distill("-t 1" + train + " -o " + (dir / "killed") + " --resume", kMpirun);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(test::read_bytes(dir / "killed/model.safetensors"), test::read_bytes(dir / "two/model.safetensors"));
  // A two-rank checkpoint resumed by one process: the same run, up to summation order.
  r = test::run_distill("-t 1" + train + " -o " + (dir / "mixed"), std::string("DISTILL_TEST_KILL_AT_STEP=17 ") + kMpirun);
  EXPECT_NE(r.exit_code, 0);
  r = test::run_distill("-t 2" + train + " -o " + (dir / "mixed") + " --resume");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_LT(max_weight_diff(dir / "mixed", dir / "one"), 2e-5f);

  // ZeRO-1: each rank keeps the moments of half the parameters and steps them, then the halves are
  // gathered — the same arithmetic, so the same weights bit for bit, with half the optimizer state
  // per rank; its checkpoints hold the whole moments (gathered), so a sharded run killed and
  // resumed (sharded or not) ends where the others do.
  r = test::run_distill("-t 1" + train + " --shard-optimizer -o " + (dir / "zero"), kMpirun);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(test::read_bytes(dir / "zero/model.safetensors"), test::read_bytes(dir / "two/model.safetensors"));
  EXPECT_NEAR(test::memory_estimate_mib(r.output, "optimizer"), test::memory_estimate_mib(replicated, "optimizer") / 2, 0.11)
      << r.output << replicated;
  r = test::run_distill("-t 1" + train + " --shard-optimizer -o " + (dir / "zero-killed"),
                        std::string("DISTILL_TEST_KILL_AT_STEP=17 DISTILL_TEST_KILL_RANK=0 ") + kMpirun);
  EXPECT_NE(r.exit_code, 0);
  r = test::run_distill("-t 1" + train + " --shard-optimizer -o " + (dir / "zero-killed") + " --resume", kMpirun);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(test::read_bytes(dir / "zero-killed/model.safetensors"), test::read_bytes(dir / "two/model.safetensors"));
}

// GRPO over two ranks: each rank samples and rewards its own prompts (prompts-per-step is per
// rank, its rollouts seeded by the rank too), the gradients are averaged, rank 0 evaluates and
// writes. The reward rises; a killed rank stops the job, and the resumed run equals the
// uninterrupted one bit for bit; the curriculum (per-rank outcomes) is refused.
TEST(DataParallel, GrpoOverTwoRanksLearnsAndResumes) {
#ifndef DISTILL_TEST_MPI
  GTEST_SKIP() << "SKIPPED: distill was built without MPI (install libopenmpi-dev openmpi-bin and rebuild)";
#endif
  if (std::system("command -v mpirun > /dev/null 2>&1") != 0) GTEST_SKIP() << "SKIPPED: mpirun is not installed";
  TempDir dir;
  test::CliResult r = test::train_digit_picker(dir.str());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string rl = "-t 1 rl --model " + (dir / "sft") + " --tasks " + (dir / "tasks.jsonl") +
                         " --reward answer --group 8 --prompts-per-step 2 --max-new-tokens 4 --seed 2 --lr 0.003 --steps 24 --save-every 8";
  r = test::run_distill(rl + " -o " + (dir / "two"), kMpirun);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::vector<double> reward;
  std::ifstream in(dir / "two/metrics.jsonl");
  for (std::string line; std::getline(in, line);) reward.push_back(nlohmann::json::parse(line)["reward_mean"].get<double>());
  ASSERT_EQ(reward.size(), 24u);
  const double first = (reward[0] + reward[1] + reward[2]) / 3, last = (reward[21] + reward[22] + reward[23]) / 3;
  EXPECT_LT(first, 0.4) << "a random digit is right one time in ten";
  EXPECT_GT(last, 0.7) << "GRPO over two ranks teaches the rewarded answer";

  r = test::run_distill(rl + " -o " + (dir / "killed"), std::string("DISTILL_TEST_KILL_AT_STEP=13 DISTILL_TEST_KILL_RANK=1 ") + kMpirun);
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_FALSE(std::filesystem::exists(dir / "killed/model.safetensors"));
  r = test::run_distill(rl + " -o " + (dir / "killed") + " --resume", kMpirun);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(test::read_bytes(dir / "killed/model.safetensors"), test::read_bytes(dir / "two/model.safetensors"));

  r = test::run_distill(rl + " --curriculum -o " + (dir / "cur"), kMpirun);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("--curriculum runs in one process"), std::string::npos) << r.output;
}

}  // namespace distill
