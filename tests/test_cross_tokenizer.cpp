// Labelling across tokenizers (teacher/cross_tokenizer.h): a BPE teacher's answer becomes a
// byte-level student's record — the same text, and at every byte where a teacher token starts,
// the teacher's top-k projected onto the student token each alternative begins with (mass summed);
// no soft label inside a teacher token. End to end: `label --teacher BPE --tokenizer BYTES`.
#include "formats/teacher_dataset.h"
#include "teacher/cross_tokenizer.h"
#include "tokenizer/byte_vocab.h"
#include "tokenizer/tokenizer.h"
#include "test_util.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <cmath>
#include <fstream>

namespace distill {

namespace {

std::shared_ptr<const Tokenizer> bpe() {
  const TokenizerFiles f = make_byte_level_tokenizer("the cat sat on the mat. the hat. the", 24);
  return Tokenizer::from_json(f.tokenizer_json, f.tokenizer_config_json, "bpe");
}
std::shared_ptr<const Tokenizer> bytes() {
  const TokenizerFiles f = make_byte_level_tokenizer();
  return Tokenizer::from_json(f.tokenizer_json, f.tokenizer_config_json, "bytes");
}

}  // namespace

TEST(CrossTokenizer, TeacherTopKIsProjectedOntoTheStudentsTokensOnBytes) {
  const auto t = bpe(), s = bytes();
  ASSERT_NE(t->fingerprint(), s->fingerprint());
  TeacherRecord r;
  r.prompt_index = 3;
  r.completion = t->encode("the cat", false);
  ASSERT_LT(r.completion.size(), 7u) << "the teacher has multi-byte tokens";
  r.finished = false;
  r.k = 3;
  const size_t n = r.completion.size();
  r.soft.assign(n, 1);
  r.topk_ids.assign(n * 3, 0);
  r.topk_logp.assign(n * 3, 0);
  // Alternatives at the first teacher token: itself, "t" and "c" (the second starts like the first).
  const std::vector<int32_t> alts = {r.completion[0], t->encode("t", false)[0], t->encode("c", false)[0]};
  const std::vector<float> lps = {-0.5f, -1.5f, -2.0f};
  for (size_t j = 0; j < n; ++j)
    for (size_t i = 0; i < 3; ++i) r.topk_ids[j * 3 + i] = alts[i], r.topk_logp[j * 3 + i] = lps[i];
  const TokenizerBridge bridge(*t, *s);
  const TeacherRecord out = bridge.to_student(r, {1, 2, 3});
  EXPECT_EQ(out.prompt_index, 3u);
  EXPECT_EQ(out.prompt, (std::vector<int32_t>{1, 2, 3}));
  EXPECT_EQ(s->decode(out.completion), "the cat");
  ASSERT_EQ(out.k, 3);
  // Student position 0 ('t'): 't' gets e^-0.5 + e^-1.5 (both begin with t), 'c' gets e^-2.
  const int32_t tt = s->encode("t", false)[0], cc = s->encode("c", false)[0];
  EXPECT_TRUE(out.soft[0]);
  EXPECT_EQ(out.topk_ids[0], tt);
  EXPECT_NEAR(out.topk_logp[0], std::log(std::exp(-0.5) + std::exp(-1.5)), 2e-3);
  EXPECT_EQ(out.topk_ids[1], cc);
  EXPECT_NEAR(out.topk_logp[1], -2.0, 2e-3);
  EXPECT_LE(out.topk_logp[2], -60.0f) << "padding: a third student token gets no mass";
  // Inside the first teacher token there is nothing to project.
  const size_t first_len = t->token_bytes(r.completion[0], true).size();
  ASSERT_GT(first_len, 1u);
  for (size_t j = 1; j < first_len; ++j) EXPECT_FALSE(out.soft[j]) << "byte " << j;
  EXPECT_TRUE(out.soft[first_len]) << "the next teacher token starts here";

  // A dataset of such records (soft labels at some positions only) trains a student.
  test::TempDir dir;
  ASSERT_EQ(test::run_distill("init --preset tiny --tokenizer bytes -o " + (dir / "student")).exit_code, 0);
  const auto st = Tokenizer::load(dir / "student");
  ASSERT_EQ(st->fingerprint(), s->fingerprint());
  {
    TeacherDatasetWriter w(dir / "ds", false);
    for (uint64_t i = 0; i < 4; ++i) {
      TeacherRecord x = bridge.to_student(r, s->encode("Q: ", false));
      x.prompt_index = i;
      w.append(x);
    }
    w.manifest()["tokenizer_fingerprint"] = fmt::format("{:016x}", s->fingerprint());
    w.finish([&](const std::vector<int32_t>& ids) { return s->decode(ids); });
  }
  const auto trained = test::run_distill("train --student " + (dir / "student") + " --data " + (dir / "ds") + " -o " +
                                         (dir / "out") + " --steps 2 --batch 2 --seq-len 16 --eval-fraction 0");
  EXPECT_EQ(trained.exit_code, 0) << trained.output;
}

TEST(CrossTokenizer, LabelWithALocalTeacherOfAnotherTokenizer) {
  test::TempDir dir;
  test::write_bytes(dir / "corpus.txt", "the cat sat on the mat. the hat. the");
  auto made = test::run_distill("init --preset tiny --tokenizer bpe:24 --corpus " + (dir / "corpus.txt") + " --seed 2 -o " + (dir / "teacher"));
  ASSERT_EQ(made.exit_code, 0) << made.output;
  EXPECT_NE(made.output.find("vocab 2"), std::string::npos) << "256 bytes + 24 merges + specials: " << made.output;
  EXPECT_EQ(Tokenizer::load(dir / "teacher")->fingerprint(), bpe()->fingerprint()) << "the same merges as learned in-process";
  ASSERT_EQ(test::run_distill("init --preset tiny --tokenizer bytes --seed 3 -o " + (dir / "student")).exit_code, 0);
  {
    std::ofstream f(dir / "prompts.jsonl");
    for (int i = 0; i < 6; ++i) f << nlohmann::json{{"prompt", "the cat " + std::to_string(i)}}.dump() << "\n";
  }
  auto r = test::run_distill("label --teacher " + (dir / "teacher") + " --tokenizer " + (dir / "student") + " --prompts " +
                             (dir / "prompts.jsonl") + " --top-k 8 --max-tokens 12 --temperature 0 -o " + (dir / "ds"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto student = Tokenizer::load(dir / "student");
  int64_t records = 0, soft = 0, positions = 0;
  read_records(dir / "ds/records.bin", [&](TeacherRecord&& x) {
    ++records;
    for (int32_t id : x.completion) EXPECT_LT(id, student->vocab_size());
    for (uint8_t v : x.soft) soft += v;
    positions += int64_t(x.completion.size());
  });
  EXPECT_EQ(records, 6);
  EXPECT_GT(soft, 0) << "teacher token boundaries give the byte-level student soft labels";
  std::printf("[ measured ] %lld of %lld student positions got projected soft labels\n", (long long)soft, (long long)positions);
  const auto manifest = nlohmann::json::parse(test::read_bytes(dir / "ds/manifest.json"));
  EXPECT_EQ(manifest["cross_tokenizer"], true);
  EXPECT_EQ(manifest["tokenizer_fingerprint"], fmt::format("{:016x}", student->fingerprint()));
  // the dataset trains the byte-level student (CE on the text + KD on the projected top-k)
  r = test::run_distill("train --student " + (dir / "student") + " --data " + (dir / "ds") + " -o " + (dir / "kd") +
                        " --steps 2 --batch 2 --seq-len 96 --eval-fraction 0");
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

}  // namespace distill

