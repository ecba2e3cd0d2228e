// distill init + distill train end to end: a tiny model learns a small synthetic language to
// near-zero loss; a run killed mid-way and resumed ends with weights identical to an uninterrupted
// run; bad input is refused without leaving a half-made model directory.
#include "core/digest.h"
#include "formats/safetensors.h"
#include "model/model.h"
#include "test_util.h"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sys/wait.h>

namespace distill {
using test::TempDir;
using test::last_eval_loss;
namespace fs = std::filesystem;

namespace {

using CliRun = test::CliResult;
CliRun run(const std::string& args, const std::string& env = "") { return test::run_distill(args, env); }

// A language with 24 tokens where each token determines the next (a fixed permutation cycle):
// every target is predictable, so a model that learns it reaches ~0 loss.
void write_language(const std::string& path, int n_examples, int len) {
  const int V = 24;
  std::vector<int> next(V);
  for (int i = 0; i < V; ++i) next[i] = (i * 7 + 3) % V;
  std::ofstream out(path);
  for (int e = 0; e < n_examples; ++e) {
    nlohmann::json ids = nlohmann::json::array(), mask = nlohmann::json::array();
    int t = (e * 5) % V;
    for (int i = 0; i < len; ++i) {
      ids.push_back(t);
      mask.push_back(i == 0 ? 0 : 1);  // the first token has nothing before it to predict it from
      t = next[t];
    }
    out << nlohmann::json{{"ids", ids}, {"mask", mask}}.dump() << "\n";
  }
}

const char* kTrainArgs = " --steps 200 --batch 8 --seq-len 16 --lr 0.003 --warmup 5 --save-every 20 --eval-every 50 --seed 3";

}  // namespace

TEST(Training, LearnsSyntheticLanguageAndResumesBitForBit) {
  TempDir dir;
  write_language(dir / "data.jsonl", 240, 17);
  CliRun r = run("init --preset tiny --vocab 24 --seed 5 -o " + (dir / "student"));
  ASSERT_EQ(r.exit_code, 0) << r.output;

  r = run("train --student " + (dir / "student") + " --data " + (dir / "data.jsonl") + " -o " + (dir / "a") + kTrainArgs);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("held-out loss"), std::string::npos) << r.output;
  const double loss = last_eval_loss(dir / "a/metrics.jsonl");
  EXPECT_GE(loss, 0.0);
  EXPECT_LT(loss, 0.05) << "a tiny model must learn a deterministic language (ln 24 = 3.18 at chance)";
  EXPECT_TRUE(fs::exists(dir / "a/report.html"));
  const std::string report = test::read_bytes(dir / "a/report.html");
  EXPECT_NE(report.find("<svg"), std::string::npos);
  EXPECT_NO_THROW(Model::load(dir / "a")) << "the output is a normal model directory";

  // Killed at step 137 (after the checkpoint of step 120), then resumed: identical weights.
  r = run("train --student " + (dir / "student") + " --data " + (dir / "data.jsonl") + " -o " + (dir / "b") + kTrainArgs,
          "DISTILL_TEST_KILL_AT_STEP=137");
  EXPECT_EQ(r.exit_code, 137) << r.output;
  EXPECT_FALSE(fs::exists(dir / "b/model.safetensors"));
  // (resumed with activation checkpointing: same gradients, less activation memory)
  const std::string first_run = r.output;
  r = run("train --student " + (dir / "student") + " --data " + (dir / "data.jsonl") + " -o " + (dir / "b") + kTrainArgs +
          " --resume --activation-checkpointing");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("resumed"), std::string::npos) << r.output;
  EXPECT_EQ(test::read_bytes(dir / "a/model.safetensors"), test::read_bytes(dir / "b/model.safetensors"))
      << "a resumed run must end bit-for-bit where the uninterrupted run ends";
  EXPECT_GT(test::memory_estimate_mib(first_run, "activations"), 0.0) << first_run;
  EXPECT_LT(test::memory_estimate_mib(r.output, "activations"), test::memory_estimate_mib(first_run, "activations")) << r.output;
  EXPECT_EQ(last_eval_loss(dir / "a/metrics.jsonl"), last_eval_loss(dir / "b/metrics.jsonl"));

  // Resuming with different settings is refused, naming the setting.
  r = run("train --student " + (dir / "student") + " --data " + (dir / "data.jsonl") + " -o " + (dir / "b") + kTrainArgs +
          " --resume --weight-decay 0.05");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("weight_decay"), std::string::npos) << r.output;
}

// --precision bf16: the products take bf16-rounded operands (f32 sums, f32 master weights). The
// model learns as well, ends elsewhere than the f32 run, and resumes bit for bit; resuming in f32
// is refused, naming the setting.
TEST(Training, LearnsInBf16PrecisionAndResumesBitForBit) {
  TempDir dir;
  write_language(dir / "data.jsonl", 240, 17);
  ASSERT_EQ(run("init --preset tiny --vocab 24 --seed 5 -o " + (dir / "student")).exit_code, 0);
  const std::string base = "train --student " + (dir / "student") + " --data " + (dir / "data.jsonl") + kTrainArgs;
  CliRun r = run(base + " -o " + (dir / "f32"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run(base + " --precision bf16 -o " + (dir / "a"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const double loss = last_eval_loss(dir / "a/metrics.jsonl");
  EXPECT_GE(loss, 0.0);
  EXPECT_LT(loss, 0.05) << "bf16 products must learn the deterministic language too";
  EXPECT_NE(test::read_bytes(dir / "a/model.safetensors"), test::read_bytes(dir / "f32/model.safetensors"))
      << "bf16 products must change the run";
  r = run(base + " --precision bf16 -o " + (dir / "b"), "DISTILL_TEST_KILL_AT_STEP=137");
  EXPECT_EQ(r.exit_code, 137) << r.output;
  r = run(base + " --precision bf16 -o " + (dir / "b") + " --resume");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(test::read_bytes(dir / "a/model.safetensors"), test::read_bytes(dir / "b/model.safetensors"));
  r = run(base + " -o " + (dir / "b") + " --resume");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("precision"), std::string::npos) << r.output;
  r = run(base + " --precision fp8 -o " + (dir / "c"));
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("--precision"), std::string::npos) << r.output;
}

TEST(Training, DistillsFromATeacher) {
  TempDir dir;
  write_language(dir / "data.jsonl", 120, 17);
  ASSERT_EQ(run("init --preset tiny --vocab 24 --seed 5 -o " + (dir / "student")).exit_code, 0);
  ASSERT_EQ(run("init --preset tiny --vocab 24 --seed 6 -o " + (dir / "teacher0")).exit_code, 0);
  // a teacher that knows the language, then a student distilled from it with KD only
  CliRun r = run("train --student " + (dir / "teacher0") + " --data " + (dir / "data.jsonl") + " -o " + (dir / "teacher") +
                 " --steps 200 --batch 8 --seq-len 16 --lr 0.003");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run("train --student " + (dir / "student") + " --teacher " + (dir / "teacher") + " --data " + (dir / "data.jsonl") +
          " -o " + (dir / "kd") + " --loss jsd --kd-alpha 1 --temperature 1 --steps 200 --batch 8 --seq-len 16 --lr 0.003");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_LT(last_eval_loss(dir / "kd/metrics.jsonl"), 0.3) << "pure distillation teaches the language too";

  // The teacher's logits are made a few rows at a time (here 5 of the 128 rows of a micro-batch,
  // so many parts per chunk of the student's head): the run of one part per chunk, up to float
  // summation order — every step's loss and KD term.
  const std::string mix = "train --student " + (dir / "student") + " --teacher " + (dir / "teacher") + " --data " +
                          (dir / "data.jsonl") + " --loss fkl --kd-alpha 0.5 --steps 10 --batch 8 --seq-len 16 --lr 0.003 -o ";
  r = run(mix + (dir / "whole"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_GT(test::memory_estimate_mib(r.output, "teacher"), 0.0) << "the estimate counts the local teacher: " << r.output;
  const CliRun parts = run(mix + (dir / "parts"), "DISTILL_TEST_TEACHER_ROWS=5");
  ASSERT_EQ(parts.exit_code, 0) << parts.output;
  const auto steps = [](const fs::path& metrics) {
    std::vector<nlohmann::json> out;
    std::ifstream in(metrics);
    for (std::string line; std::getline(in, line);)
      if (nlohmann::json j = nlohmann::json::parse(line); j.contains("kd")) out.push_back(j);
    return out;
  };
  const auto a = steps(dir / "whole/metrics.jsonl"), b = steps(dir / "parts/metrics.jsonl");
  ASSERT_EQ(a.size(), 10u);
  ASSERT_EQ(b.size(), 10u);
  for (size_t i = 0; i < a.size(); ++i)
    for (const char* key : {"loss", "kd"})
      EXPECT_NEAR(a[i][key].get<double>(), b[i][key].get<double>(), 1e-5 * std::abs(a[i][key].get<double>())) << key << " step " << i + 1;
  EXPECT_GT(a.back()["kd"].get<double>(), 0.0);
}

TEST(Training, TrainsOnTextPromptsAndConversations) {
  TempDir dir;
  ASSERT_EQ(run("init --preset tiny --tokenizer bytes -o " + (dir / "student")).exit_code, 0);
  std::ofstream(dir / "mixed.jsonl")
      << R"({"text": "Plain text is packed into rows of the sequence length."})" << "\n"
      << R"({"prompt": "What is 2+3?", "completion": "5"})" << "\n"
      << R"({"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]})"
      << "\n";
  CliRun r = run("train --student " + (dir / "student") + " --data " + (dir / "mixed.jsonl") + " -o " + (dir / "out") +
                 " --steps 3 --batch 2 --seq-len 64 --eval-fraction 0");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(fs::exists(dir / "out/tokenizer.json")) << "the trained model keeps its tokenizer";
  std::ofstream(dir / "book.txt") << std::string(2000, 'x') << " a long plain-text document\n";
  r = run("train --student " + (dir / "student") + " --data " + (dir / "book.txt") + " -o " + (dir / "out2") +
          " --steps 2 --batch 2 --seq-len 32 --eval-fraction 0.2");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // without a tokenizer, text cannot be read
  ASSERT_EQ(run("init --preset tiny --vocab 300 -o " + (dir / "no-tok")).exit_code, 0);
  r = run("train --student " + (dir / "no-tok") + " --data " + (dir / "mixed.jsonl") + " -o " + (dir / "out3") + " --steps 1");
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("mixed.jsonl:1: {\"text\"} needs a tokenizer"), std::string::npos) << r.output;
}

TEST(Training, BadInputIsRefusedCleanly) {
  TempDir dir;
  ASSERT_EQ(run("init --preset tiny --vocab 24 -o " + (dir / "student")).exit_code, 0);
  const std::string base = "train --student " + (dir / "student") + " --seq-len 8 --steps 2 --batch 2 ";

  test::write_bytes(dir / "bad.jsonl", "{\"ids\": [1, 2, 3]}\n\n{\"ids\": [4]}\n");
  CliRun r = run(base + "--data " + (dir / "bad.jsonl") + " -o " + (dir / "out1"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("bad.jsonl:2: empty line"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(dir / "out1"));

  test::write_bytes(dir / "bad2.jsonl", "{\"ids\": [1, 2, 3]}\n{\"ids\": [4, \n");
  r = run(base + "--data " + (dir / "bad2.jsonl") + " -o " + (dir / "out2"));
  EXPECT_NE(r.output.find("bad2.jsonl:2: malformed JSON"), std::string::npos) << r.output;

  test::write_bytes(dir / "long.jsonl", "{\"ids\": [1,2,3,4,5,6,7,8,9,10,11], \"mask\": [0,1,1,1,1,1,1,1,1,1,1]}\n");
  r = run(base + "--data " + (dir / "long.jsonl") + " -o " + (dir / "out3"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("long.jsonl:1: example of 11 tokens is longer than the context"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(dir / "out3"));

  test::write_bytes(dir / "vocab.jsonl", "{\"ids\": [1, 2, 300, 4, 5, 6, 7, 8, 9, 10]}\n");
  r = run(base + "--data " + (dir / "vocab.jsonl") + " -o " + (dir / "out4"));
  EXPECT_NE(r.output.find("token id 300 is outside"), std::string::npos) << r.output;

  // a teacher with another vocabulary
  ASSERT_EQ(run("init --preset tiny --vocab 40 -o " + (dir / "teacher")).exit_code, 0);
  test::write_bytes(dir / "ok.jsonl", "{\"ids\": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20]}\n");
  r = run(base + "--data " + (dir / "ok.jsonl") + " --teacher " + (dir / "teacher") + " -o " + (dir / "out5"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("sequence-level distillation"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(dir / "out5"));

  // an output directory that cannot be written
  fs::create_directories(dir / "ro");
  fs::permissions(dir / "ro", fs::perms::owner_read | fs::perms::owner_exec);
  if (::geteuid() != 0) {  // root writes anywhere: the check is meaningless then
    r = run(base + "--data " + (dir / "ok.jsonl") + " -o " + (dir / "ro/out"));
    EXPECT_EQ(r.exit_code, 1);
    EXPECT_NE(r.output.find("cannot create"), std::string::npos) << r.output;
  }
  r = run(base + "--data " + (dir / "ok.jsonl") + " -o /proc/distill-out");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("--out /proc/distill-out"), std::string::npos) << r.output;
}

}  // namespace distill

namespace distill {

// On-policy distillation (GKD): the student samples its own completions and the teacher grades each
// token. Rows are the student's samples (metrics say how many), the student learns the teacher's
// language from them, and a run killed mid-way and resumed ends bit-for-bit where an uninterrupted
// one does (the samples are seeded by step, micro-batch and row).
TEST(Training, OnPolicyDistillationLearnsFromItsOwnSamplesAndResumes) {
  TempDir dir;
  // A letter language: each letter determines the next (a cycle over 8 letters).
  const std::string cycle = "aebfcgdh";
  {
    std::ofstream out(dir / "data.jsonl");
    for (int e = 0; e < 96; ++e) {
      std::string s;
      for (int i = 0; i < 16; ++i) s += cycle[size_t((e + i) % 8)];
      out << nlohmann::json{{"prompt", s.substr(0, 4)}, {"completion", s.substr(4)}}.dump() << "\n";
    }
  }
  ASSERT_EQ(run("init --preset tiny --tokenizer bytes --seed 5 -o " + (dir / "student")).exit_code, 0);
  ASSERT_EQ(run("init --preset tiny --tokenizer bytes --seed 6 -o " + (dir / "teacher0")).exit_code, 0);
  const std::string common = " --data " + (dir / "data.jsonl") + " --batch 8 --seq-len 64 --lr 0.003 --seed 2";
  CliRun r = run("train --student " + (dir / "teacher0") + " -o " + (dir / "teacher") + common + " --steps 150");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const double teacher_loss = last_eval_loss(dir / "teacher/metrics.jsonl");
  // GKD starts from a student that has seen some data (a random one only samples noise).
  r = run("train --student " + (dir / "student") + " -o " + (dir / "sft") + common + " --steps 15");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const double sft_loss = last_eval_loss(dir / "sft/metrics.jsonl");
  const std::string gkd = "train --student " + (dir / "sft") + " --teacher " + (dir / "teacher") + common +
                          " --loss jsd --beta 0.5 --kd-alpha 1 --on-policy 1 --on-policy-temperature 1 --steps 40 --save-every 10 -o ";
  r = run(gkd + (dir / "a"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::ifstream in(dir / "a/metrics.jsonl");
  std::string line;
  int64_t sampled = 0;
  double first_kd = -1, last_kd = -1;
  while (std::getline(in, line)) {
    const auto j = nlohmann::json::parse(line);
    if (!j.contains("on_policy_rows")) continue;
    sampled += j["on_policy_rows"].get<int64_t>();
    EXPECT_EQ(j["ce"].get<double>(), 0.0) << "no CE on the student's own samples";
    if (first_kd < 0) first_kd = j["kd"];
    last_kd = j["kd"];
  }
  EXPECT_EQ(sampled, 40 * 8) << "every row had a prompt, so every row was sampled";
  EXPECT_LT(last_kd, 0.5 * first_kd) << "the teacher's grades on the student's samples teach it";
  const double student_loss = last_eval_loss(dir / "a/metrics.jsonl");
  std::printf("[ measured ] held-out loss: teacher %.3f, student after SFT %.3f, after on-policy KD %.3f; KD %.3f -> %.3f\n",
              teacher_loss, sft_loss, student_loss, first_kd, last_kd);
  EXPECT_LT(student_loss, 0.5 * sft_loss) << "the student learns the language from the grades of its own samples";
  // The report shows how closely the student follows its teacher.
  const std::string report = test::read_bytes(dir / "a/report.html");
  EXPECT_NE(report.find("top-1 agreement with the teacher"), std::string::npos);
  EXPECT_NE(report.find("held-out KL to the teacher"), std::string::npos);

  r = run(gkd + (dir / "b"), "DISTILL_TEST_KILL_AT_STEP=23");
  EXPECT_EQ(r.exit_code, 137) << r.output;
  r = run(gkd + (dir / "b") + " --resume");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(test::read_bytes(dir / "a/model.safetensors"), test::read_bytes(dir / "b/model.safetensors"))
      << "a resumed on-policy run must sample and end exactly as the uninterrupted one";

  r = run("train --student " + (dir / "student") + common + " --on-policy 0.5 --steps 2 -o " + (dir / "c"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("--teacher"), std::string::npos) << r.output;

  // --on-policy-from: offline KD on the data's completions first, the student's own samples after.
  r = run("train --student " + (dir / "student") + " --teacher " + (dir / "teacher") + common +
          " --loss fkl --kd-alpha 0.5 --on-policy 1 --on-policy-from 4 --steps 7 -o " + (dir / "d"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  std::ifstream din(dir / "d/metrics.jsonl");
  int64_t step_lines = 0;
  while (std::getline(din, line)) {
    const auto j = nlohmann::json::parse(line);
    if (!j.contains("on_policy_rows")) continue;
    const bool sampling = step_lines++ >= 4;
    EXPECT_EQ(j["on_policy_rows"].get<int64_t>(), sampling ? 8 : 0) << line;
    EXPECT_EQ(j["ce"].get<double>() == 0.0, sampling) << "CE on the data before sampling starts, none on samples: " << line;
  }
  EXPECT_EQ(step_lines, 7);
  r = run("train --student " + (dir / "student") + common + " --on-policy-from 3 --steps 2 -o " + (dir / "e"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("--on-policy-from 3: give --on-policy"), std::string::npos) << r.output;
}

// Every model train and convert write names what it came from: parent, data and settings, each
// input fingerprinted; a GGUF export keeps the record and a conversion back nests it; info shows it.
TEST(Training, TrainedAndConvertedModelsCarryTheirLineage) {
  TempDir dir;
  write_language(dir / "data.jsonl", 40, 17);
  ASSERT_EQ(run("init --preset tiny --tokenizer bytes --seed 5 -o " + (dir / "student")).exit_code, 0);  // GGUF needs a tokenizer
  CliRun r = run("train --student " + (dir / "student") + " --data " + (dir / "data.jsonl") + " -o " + (dir / "a") +
                 " --steps 4 --batch 4 --seq-len 16 --seed 3");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const nlohmann::json p = nlohmann::json::parse(test::read_bytes(dir / "a/provenance.json"));
  EXPECT_EQ(p["command"], "train");
  EXPECT_EQ(p["parent"]["path"], dir / "student");
  EXPECT_EQ(p["parent"]["sha256"], sha256_hex(test::read_bytes(dir / "student/model.safetensors")));
  EXPECT_EQ(p["data"][0]["sha256"], sha256_hex(test::read_bytes(dir / "data.jsonl")));
  EXPECT_EQ(p["settings"]["steps"], 4);
  EXPECT_EQ(p["settings"]["seed"], 3);

  ASSERT_EQ(run("convert " + (dir / "a") + " -o " + (dir / "a.gguf") + " --type f32").exit_code, 0);
  ASSERT_EQ(run("convert " + (dir / "a.gguf") + " -o " + (dir / "back")).exit_code, 0);
  const nlohmann::json back = nlohmann::json::parse(test::read_bytes(dir / "back/provenance.json"));
  EXPECT_EQ(back["command"], "convert");
  EXPECT_EQ(back["parent"]["sha256"], sha256_hex(test::read_bytes(dir / "a.gguf")));
  EXPECT_EQ(back["parent"]["provenance"]["command"], "convert") << "the GGUF's own record, from its metadata";
  EXPECT_EQ(back["parent"]["provenance"]["parent"]["provenance"]["command"], "train") << "and the training before it";
  r = run("info " + (dir / "back"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("lineage        convert"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("made from      train"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("data.jsonl (sha256"), std::string::npos) << r.output;
}

}  // namespace distill
