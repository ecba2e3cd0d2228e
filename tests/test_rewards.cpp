// Rewards on edge cases: answer extraction (nested braces, several formats, malformed), numeric
// vs textual comparison, format/regex/length, and a cmd reward that works, hangs, crashes or
// prints garbage.
#include "tasks/rewards.h"
#include "tasks/sandbox.h"
#include "test_util.h"

#include <chrono>

namespace distill {

using nlohmann::json;

TEST(Rewards, ExtractsTheFinalAnswer) {
  EXPECT_EQ(extract_answer("so \\boxed{42}."), "42");
  EXPECT_EQ(extract_answer("\\boxed{1} then \\boxed{\\frac{1}{2}}"), "\\frac{1}{2}") << "the last box, nested braces kept";
  EXPECT_EQ(extract_answer("work...\n#### 1,234\nmore"), "1,234");
  EXPECT_EQ(extract_answer("<answer> Paris </answer>"), "Paris");
  EXPECT_EQ(extract_answer("3 apples and 5 pears make 8"), "8");
  EXPECT_EQ(extract_answer("-12.5 is it"), "-12.5");
  EXPECT_FALSE(extract_answer("no numbers here").has_value());
  EXPECT_EQ(extract_answer("\\boxed{unclosed 7"), "7") << "an unbalanced box falls back to the last number";
  EXPECT_EQ(extract_answer("#### \n 9"), "9");
}

TEST(Rewards, ComparesNumbersAndText) {
  EXPECT_TRUE(answers_match("1,234", "1234"));
  EXPECT_TRUE(answers_match("8.0", "8"));
  EXPECT_TRUE(answers_match("$5", "5"));
  EXPECT_FALSE(answers_match("8.01", "8"));
  EXPECT_TRUE(answers_match("123456789012345678901234567890", "1.2345678901234568e29"));
  EXPECT_FALSE(answers_match("1e400", "1e401")) << "out-of-range numbers compare as text";
  EXPECT_TRUE(answers_match("1e400", "1e400"));
  EXPECT_TRUE(answers_match(" Paris. ", "paris"));
  EXPECT_FALSE(answers_match("London", "Paris"));
}

TEST(Rewards, SpecParsesWeightsAndComposes) {
  const RewardSpec spec = RewardSpec::parse("answer:1.0,format:0.5,regex:a{1,3}b:0.25,length:0.1");
  ASSERT_EQ(spec.terms().size(), 4u);
  EXPECT_EQ(spec.terms()[2].arg, "a{1,3}b") << "a comma inside the regex does not split it";
  const json task = {{"answer", "42"}};
  std::vector<double> parts;
  const double r = spec.score(task, "<think>hmm</think>aab \\boxed{42}", 10, 100, &parts);
  EXPECT_EQ(parts, (std::vector<double>{1.0, 1.0, 1.0, -0.1}));
  EXPECT_NEAR(r, 1.0 + 0.5 + 0.25 - 0.01, 1e-12);
  EXPECT_EQ(spec.score(task, "<think>no close tag \\boxed{41}", 100, 100), -0.1 * 1.0);
  EXPECT_THROW(RewardSpec::parse("answer,telepathy"), Error);
  EXPECT_THROW(RewardSpec::parse("regex:("), Error);
  EXPECT_THROW(RewardSpec::parse("answer:heavy"), Error);
  // each term has a metric name; a weight-0 term measures without rewarding
  const RewardSpec two = RewardSpec::parse("answer,regex:x:0,steps:0,regex:y:0");
  EXPECT_EQ(two.term_metric_names(), (std::vector<std::string>{"reward_answer", "reward_regex", "reward_steps", "reward_regex#2"}));
  EXPECT_EQ(two.score(task, "x 2 + 2 = 4 y #### 42", 5, 10, &parts), 1.0);
  EXPECT_EQ(parts, (std::vector<double>{1.0, 1.0, 1.0, 1.0}));
}

// Partial credit for the work shown: the share of right "a op b = c" steps, whatever the final answer.
TEST(Rewards, StepsRewardCountsRightArithmetic) {
  EXPECT_DOUBLE_EQ(arithmetic_steps_right(" 24 - 18 = 6. 6 + 45 = 51. 51 * 2 = 102. #### 102"), 1.0);
  EXPECT_DOUBLE_EQ(arithmetic_steps_right(" 24 - 18 = 6. 6 + 45 = 52. #### 52"), 0.5);
  EXPECT_DOUBLE_EQ(arithmetic_steps_right("7 × 6 = 42, 42 ÷ 4 = 10.5, 3 x 3 = 10, -2 - -3 = 1"), 0.75);
  EXPECT_DOUBLE_EQ(arithmetic_steps_right("#### 102"), 0.0) << "no step, no credit";
  EXPECT_DOUBLE_EQ(arithmetic_steps_right("5 / 0 = 1"), 0.0) << "a division by zero is not a step";
  // worked: the answer, only when every step shown is right (a guess through a wrong step earns 0)
  const RewardSpec worked = RewardSpec::parse("worked");
  EXPECT_EQ(worked.score(json{{"answer", "52"}}, " 24 - 18 = 6. 6 + 45 = 52. #### 52", 12, 64), 0.0);
  EXPECT_EQ(worked.score(json{{"answer", "51"}}, " 24 - 18 = 6. 6 + 45 = 51. #### 51", 12, 64), 1.0);
  EXPECT_EQ(worked.score(json{{"answer", "51"}}, "#### 51", 2, 64), 1.0) << "no step shown, none wrong";
  EXPECT_TRUE(worked.has_answer());
  const RewardSpec spec = RewardSpec::parse("answer,steps:0.2");
  std::vector<double> parts;
  EXPECT_NEAR(spec.score(json{{"answer", "52"}}, " 24 - 18 = 6. 6 + 45 = 52. #### 52", 12, 64, &parts), 1.0 + 0.2 * 0.5, 1e-12);
  EXPECT_EQ(parts, (std::vector<double>{1.0, 0.5}));
}

TEST(Rewards, CommandRewardInASandbox) {
  const json task = {{"answer", "1"}};
  auto score = [&](const std::string& cmd) {
    RewardSpec s = RewardSpec::parse("cmd:" + cmd);
    s.cmd_timeout_s = 1.0;
    return s.score(task, "the completion", 2, 10);
  };
  // reads the JSON from stdin and answers
  EXPECT_EQ(score("sh -c grep___-q___completion___&&___echo___0.75"), 0.0) << "arguments are split on spaces only";
  test::TempDir dir;
  test::write_bytes(dir / "ok.sh", "#!/bin/sh\ngrep -q '\"completion\":\"the completion\"' && echo 0.75\n");
  test::write_bytes(dir / "hang.sh", "#!/bin/sh\nsleep 30\necho 1\n");
  test::write_bytes(dir / "crash.sh", "#!/bin/sh\nkill -SEGV $$\n");
  test::write_bytes(dir / "garbage.sh", "#!/bin/sh\necho not-a-number\n");
  test::write_bytes(dir / "fail.sh", "#!/bin/sh\necho 1\nexit 3\n");
  for (const char* f : {"ok.sh", "hang.sh", "crash.sh", "garbage.sh", "fail.sh"})
    std::filesystem::permissions(dir / f, std::filesystem::perms::owner_all);
  EXPECT_EQ(score(dir / "ok.sh"), 0.75);
  const auto t0 = std::chrono::steady_clock::now();
  EXPECT_EQ(score(dir / "hang.sh"), 0.0);
  EXPECT_LT(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count(), 5.0) << "killed at the time limit";
  EXPECT_EQ(score(dir / "crash.sh"), 0.0);
  EXPECT_EQ(score(dir / "garbage.sh"), 0.0);
  EXPECT_EQ(score(dir / "fail.sh"), 0.0) << "a failing exit status gives no reward";
  EXPECT_EQ(score(dir / "no-such-program"), 0.0);
}

TEST(Sandbox, LimitsAndNoNetwork) {
  SandboxLimits lim;
  lim.timeout_s = 2.0;
  const SandboxResult echo = run_sandboxed({"cat"}, "hello", lim);
  if (!echo.error.empty()) GTEST_SKIP() << "SKIPPED: the sandbox cannot isolate the network here: " << echo.error;
  EXPECT_EQ(echo.out, "hello");
  EXPECT_EQ(echo.exit_code, 0);
  // only a loopback interface, and it is down: no route anywhere
  const SandboxResult net = run_sandboxed({"sh", "-c", "cat /proc/net/dev | tail -n +3 | cut -d: -f1 | tr -d ' '"}, "", lim);
  EXPECT_EQ(net.out, "lo\n");
  lim.memory_bytes = 64 << 20;
  const SandboxResult mem = run_sandboxed({"sh", "-c", "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo ${#x}"}, "", lim);
  EXPECT_NE(mem.out, "200000000\n") << "the memory limit holds";
  lim.timeout_s = 0.5;
  const SandboxResult slow = run_sandboxed({"sleep", "10"}, "", lim);
  EXPECT_TRUE(slow.timed_out);
}

}  // namespace distill
