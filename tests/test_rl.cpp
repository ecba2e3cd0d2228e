// distill rl end to end: after supervised training a tiny model answers with a random digit;
// GRPO with the answer reward (always "7") must raise the mean reward clearly within 30 steps, and
// must not with the learning rate at zero.
#include "formats/safetensors.h"
#include "test_util.h"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <fstream>
#include <iterator>
#include <sys/wait.h>

namespace distill {

namespace {
int run(const std::string& args, std::string* out = nullptr) {
  const test::CliResult r = test::run_distill(args);
  if (out) *out = r.output;
  return r.exit_code;
}
std::pair<double, double> first_and_last_rewards(const std::string& metrics) {
  std::ifstream in(metrics);
  std::vector<double> r;
  for (std::string line; std::getline(in, line);) r.push_back(nlohmann::json::parse(line)["reward_mean"]);
  double a = 0, b = 0;
  for (int i = 0; i < 5; ++i) a += r.at(size_t(i)) / 5, b += r.at(r.size() - 1 - size_t(i)) / 5;
  return {a, b};
}
}  // namespace

TEST(Rl, GrpoRaisesTheRewardAndZeroLearningRateDoesNot) {
  test::TempDir dir;
  {
    std::ofstream held(dir / "held.jsonl");
    for (const char* answer : {"7", "3", "7", "1", "0", "7"})
      held << nlohmann::json{{"prompt", "Pick a digit"}, {"answer", answer}}.dump() << "\n";
  }
  std::string out;
  const test::CliResult sft = test::train_digit_picker(dir.str());
  ASSERT_EQ(sft.exit_code, 0) << sft.output;
  const std::string base = "rl --model " + (dir / "sft") + " --tasks " + (dir / "tasks.jsonl") +
                           " --reward answer --group 8 --prompts-per-step 4 --max-new-tokens 4 --seed 2 ";
  const std::string rl = base + "--steps 30 ";
  ASSERT_EQ(run(rl + "--lr 0.003 --eval " + (dir / "held.jsonl") + " -o " + (dir / "rl"), &out), 0) << out;
  const auto [before, after] = first_and_last_rewards(dir / "rl/metrics.jsonl");
  EXPECT_LT(before, 0.4) << "a random digit is right one time in ten";
  EXPECT_GT(after, 0.8) << "GRPO teaches the rewarded answer (first 5 steps " << before << ")";
  // bf16 products (--precision bf16, f32 master weights) teach it as well.
  ASSERT_EQ(run(rl + "--lr 0.003 --precision bf16 -o " + (dir / "rl-bf16"), &out), 0) << out;
  const auto [bb, ba] = first_and_last_rewards(dir / "rl-bf16/metrics.jsonl");
  EXPECT_GT(ba, 0.8) << "GRPO with bf16 products (first 5 steps " << bb << ")";
  ASSERT_EQ(run(rl + "--lr 0 -o " + (dir / "rl0"), &out), 0) << out;
  const auto [b0, a0] = first_and_last_rewards(dir / "rl0/metrics.jsonl");
  EXPECT_LT(a0, 0.4) << "without updates the reward stays at chance (" << b0 << " -> " << a0 << ")";
  {
    std::ifstream rf(dir / "rl/report.html");
    const std::string report((std::istreambuf_iterator<char>(rf)), std::istreambuf_iterator<char>());
    for (const char* chart : {"share of groups: without signal", "advantages: mean |A|", "policy entropy", "completion length"})
      EXPECT_NE(report.find(chart), std::string::npos) << "report.html charts " << chart;
  }
  // One definition of accuracy: `eval` on the trained model and the same tasks reports what `rl`
  // reported for its held-out set at the end.
  std::ifstream mf(dir / "rl/metrics.jsonl");
  nlohmann::json last;
  for (std::string line; std::getline(mf, line);) last = nlohmann::json::parse(line);
  ASSERT_TRUE(last.contains("eval_accuracy")) << last.dump();
  ASSERT_EQ(run("eval " + (dir / "rl") + " --tasks " + (dir / "held.jsonl") +
                    " --reward answer --max-new-tokens 4 --json --no-speed", &out), 0) << out;
  const nlohmann::json ev = nlohmann::json::parse(out.substr(out.find('{')));
  EXPECT_DOUBLE_EQ(ev["tasks"]["accuracy"].get<double>(), last["eval_accuracy"].get<double>()) << out;
  EXPECT_TRUE(std::filesystem::exists(dir / "rl/tokenizer.json"));
  // A LoRA adapter learns the answer too, leaving the frozen weights (here the embeddings) alone.
  ASSERT_EQ(run(rl + "--lr 0.01 --lora-rank 4 -o " + (dir / "rl-lora"), &out), 0) << out;
  const auto [lb, la] = first_and_last_rewards(dir / "rl-lora/metrics.jsonl");
  // (slower than full fine-tuning on this toy: about 0.08 -> 0.35 in 30 steps, where full reaches
  // 0.8; over seeds 2-5 at lr 0.01: 0.35, 0.26, 0.27, and 0.08 where the group collapsed onto a
  // wrong digit early — no advantage left to learn from. Higher rates collapse more often.)
  EXPECT_GT(la, lb + 0.1) << "GRPO through a rank-4 adapter raises the reward (" << lb << " -> " << la << ")";
  EXPECT_TRUE(std::filesystem::exists(dir / "rl-lora/adapter/adapter_model.safetensors"));
  const auto embedding = [](const std::string& model_dir) {
    const SafetensorsFile f = SafetensorsFile::open(model_dir + "/model.safetensors");
    const Tensor t = f.get("model.embed_tokens.weight");
    return std::string(static_cast<const char*>(t.raw()), t.nbytes());
  };
  EXPECT_EQ(embedding(dir / "rl-lora"), embedding(dir / "sft")) << "the embeddings are frozen under LoRA";
  // the KL term runs with a reference model and the other loss types
  ASSERT_EQ(run(base + "--lr 0.003 --beta 0.05 --loss-type dr_grpo --clip 0.2,0.28 --scale-rewards none --steps 3 -o " +
                    (dir / "rl-kl"), &out), 0) << out;
  EXPECT_GT(test::memory_estimate_mib(out, "reference"), 0.0) << "the estimate counts the reference: " << out;
  EXPECT_GT(test::memory_estimate_mib(out, "rollouts"), 0.0) << "and the rollouts' engine: " << out;
  {  // the reference is the starting policy: no divergence before the first update, some after
    std::ifstream km(dir / "rl-kl/metrics.jsonl");
    std::vector<double> kl;
    for (std::string line; std::getline(km, line);) kl.push_back(nlohmann::json::parse(line)["kl"].get<double>());
    ASSERT_EQ(kl.size(), 3u);
    EXPECT_LT(std::abs(kl[0]), 1e-5) << "the reference's log-probs are the policy's at step 1";
    EXPECT_GT(kl[2], kl[0]);
  }
  // each reward term's mean per step, weight-0 terms included (measurements)
  std::string terms = base;
  terms.replace(terms.find("--reward answer"), 15, "--reward 'answer,regex:^[0-9]:0'");
  ASSERT_EQ(run(terms + "--lr 0.003 --steps 2 -o " + (dir / "rl-terms"), &out), 0) << out;
  {
    std::ifstream tm(dir / "rl-terms/metrics.jsonl");
    std::string line;
    ASSERT_TRUE(std::getline(tm, line));
    const nlohmann::json m = nlohmann::json::parse(line);
    EXPECT_DOUBLE_EQ(m["reward_answer"].get<double>(), m["reward_mean"].get<double>()) << line;
    EXPECT_GT(m["reward_regex"].get<double>(), m["reward_answer"].get<double>()) << "more completions start with a digit than are 7";
  }
  // Dynamic sampling replaces groups without signal by fresh prompts and rewards each rollout
  // once: the replaced groups' rollouts, never the ones already scored. (Here a group is flat
  // when none of its 8 digits is the rewarded 7, about 4 groups in 10 before training.)
  ASSERT_EQ(run(base + "--lr 0.003 --dynamic-sampling --steps 6 -o " + (dir / "rl-dyn"), &out), 0) << out;
  int64_t sampled = 0, flat_groups = 0;
  std::ifstream dyn(dir / "rl-dyn/metrics.jsonl");
  for (std::string line; std::getline(dyn, line);) {
    const nlohmann::json m = nlohmann::json::parse(line);
    EXPECT_EQ(m["rollouts_scored"], m["rollouts_sampled"]) << line;
    sampled += m["rollouts_sampled"].get<int64_t>();
    flat_groups += std::lround(m["zero_signal_frac"].get<double>() * 4);
    EXPECT_GE(m["entropy"].get<double>(), 0.0) << line;
  }
  EXPECT_GT(flat_groups, 0) << "the run met groups without signal";
  EXPECT_GE(sampled, 6 * 4 * 8 + flat_groups * 8) << "each flat group was replaced at least once";
  // The curriculum passes over a task whose last group was all right or all wrong, once, at its
  // next turn (20 tasks, 4 per step: a turn is 5 steps); a run killed in its second epoch and
  // resumed passes over the same tasks and ends with the same weights.
  const std::string cur = base + "--lr 0.003 --curriculum --steps 14 --save-every 3 -o ";
  ASSERT_EQ(run(cur + (dir / "rl-cur"), &out), 0) << out;
  const auto passed_over = [](const std::string& metrics) {
    std::vector<int64_t> v;
    std::ifstream in(metrics);
    for (std::string line; std::getline(in, line);) v.push_back(nlohmann::json::parse(line)["tasks_passed_over"].get<int64_t>());
    return v;
  };
  const std::vector<int64_t> passed = passed_over(dir / "rl-cur/metrics.jsonl");
  ASSERT_EQ(passed.size(), 14u);
  for (size_t i = 0; i < 5; ++i) EXPECT_EQ(passed[i], 0) << "nothing is passed over in the first turn (step " << i + 1 << ")";
  int64_t later = 0;
  for (size_t i = 5; i < passed.size(); ++i) later += passed[i];
  EXPECT_GT(later, 0) << "groups without signal in the first turn are passed over in the second";
  EXPECT_LE(later, 9 * 4) << "each passed-over task was flat in its previous turn";
  const test::CliResult killed = test::run_distill(cur + (dir / "rl-cur2"), "DISTILL_TEST_KILL_AT_STEP=8");
  ASSERT_NE(killed.exit_code, 0) << killed.output;
  ASSERT_EQ(run(cur + (dir / "rl-cur2") + " --resume", &out), 0) << out;
  EXPECT_EQ(test::read_bytes(dir / "rl-cur2/model.safetensors"), test::read_bytes(dir / "rl-cur/model.safetensors"))
      << "a resumed curriculum run equals the uninterrupted one";
  EXPECT_EQ(passed_over(dir / "rl-cur2/metrics.jsonl"), passed) << "and passes over the same tasks";
  EXPECT_EQ(run(rl + "--loss-type ppo -o " + (dir / "bad"), &out), 1);
  EXPECT_NE(out.find("--loss-type 'ppo'"), std::string::npos) << out;
  EXPECT_FALSE(std::filesystem::exists(dir / "bad"));
}

}  // namespace distill
