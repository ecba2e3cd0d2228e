// Labelling across tokenizers (teacher/cross_tokenizer.h): a BPE teacher's answer becomes a
// byte-level student's record — the same text, and at every byte where a teacher token starts,
// the teacher's top-k projected onto the student token each alternative begins with (mass summed);
// no soft label inside a teacher token. End to end: `label --teacher BPE --tokenizer BYTES`.
#include "formats/teacher_dataset.h"
#include "kernels/logprobs.h"
#include "model/decoder.h"
#include "model/model.h"
#include "teacher/cross_tokenizer.h"
#include "tokenizer/byte_vocab.h"
#include "tokenizer/tokenizer.h"
#include "test_util.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <map>
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
  // Inside the first teacher token: what follows its first j bytes, given that the token goes on.
  // Of the alternatives only the token itself runs past them (0.61 of the listed mass, more than
  // the 0.035 the top-3 leaves out), so its next byte gets all the conditional mass.
  const std::string first_bytes = t->token_bytes(r.completion[0], true);
  const size_t first_len = first_bytes.size();
  ASSERT_GT(first_len, 1u);
  for (size_t j = 1; j < first_len; ++j) {
    EXPECT_TRUE(out.soft[j]) << "byte " << j;
    EXPECT_EQ(out.topk_ids[j * 3], s->encode(first_bytes.substr(j, 1), false)[0]) << "byte " << j;
    EXPECT_NEAR(out.topk_logp[j * 3], 0.0, 1e-5) << "byte " << j;
    EXPECT_LE(out.topk_logp[j * 3 + 1], -60.0f) << "byte " << j;
  }
  EXPECT_TRUE(out.soft[first_len]) << "the next teacher token starts here";
  // When the alternatives that run past the prefix hold less than the mass outside the top-k
  // (which might continue it too), the position keeps its text only.
  TeacherRecord unlikely = r;
  // listed: e^-5 + e^-0.2 + e^-2 = 0.961; the token itself, 0.007, is less than the 0.039 left out
  for (size_t j = 0; j < n; ++j) unlikely.topk_logp[j * 3] = -5.0f, unlikely.topk_logp[j * 3 + 1] = -0.2f;
  const TeacherRecord out2 = bridge.to_student(unlikely, {1, 2, 3});
  EXPECT_TRUE(out2.soft[0]);
  for (size_t j = 1; j < first_len; ++j) EXPECT_FALSE(out2.soft[j]) << "byte " << j;

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

// On-policy grading across vocabularies: a BPE teacher grades a byte-level student's sequence. At
// each student position whose next token starts where a teacher token starts, the scores are the
// teacher's top-k at the position before that token, each alternative's probability given to the
// student byte it begins with (summed); positions inside a teacher token are not scored.
// At k = 6 of a random teacher the listed mass is small, so inside a teacher token the ULD term
// takes over; at k = the whole vocabulary nothing is left out, so the continuation of the
// student's prefix inside the teacher's token is projected (the chain rule over its bytes).
TEST(CrossTokenizer, ALocalTeacherOfAnotherVocabularyGradesTheStudentsSamplesOnBytes) {
  const auto t = bpe(), s = bytes();
  ModelConfig c;
  c.model_type = "llama";
  c.n_vocab = t->vocab_size(), c.n_embd = 32, c.n_ff = 64, c.n_layer = 2, c.n_head = 4, c.n_kv_head = 2, c.head_dim = 8;
  c.max_position_embeddings = 256;
  const Model teacher = Model::random(c, DType::F32, 5, 0.5f);
  const std::string text = "the cat sat on the mat";
  const std::vector<int32_t> student_ids = s->encode(text, false);
  ASSERT_EQ(student_ids.size(), text.size()) << "one student token per byte";

  // The teacher's own view: its tokens, their starting bytes, its logits.
  const std::vector<int32_t> tid = t->encode(text, false);
  ASSERT_LT(tid.size(), text.size()) << "the teacher has multi-byte tokens";
  std::vector<size_t> starts;
  size_t at = 0;
  for (size_t u = 0; u < tid.size(); ++u) starts.push_back(at), at += t->token_bytes(tid[u], u == 0).size();
  Decoder dec(teacher);
  const Tensor logits = dec.forward_full(tid.data(), 1, int64_t(tid.size()));
  std::map<std::string, int32_t> byte_token;  // the student's token of each single byte
  for (int32_t id = 0; id < s->vocab_size(); ++id)
    if (!s->is_special(id) && s->token_bytes(id).size() == 1) byte_token.emplace(s->token_bytes(id), id);
  ASSERT_EQ(byte_token.size(), 256u);
  // position pos's soft labels must be log(mass / norm) of the student tokens in `mass`
  auto expect_labels = [&](const SequenceScores& g, size_t pos, int k, const std::map<int32_t, double>& mass, double norm) {
    for (int i = 0; i < k; ++i) {
      const int32_t sid = g.ids[pos * size_t(k) + size_t(i)];
      if (g.logp[pos * size_t(k) + size_t(i)] <= -63.0f) continue;  // padding
      ASSERT_TRUE(mass.count(sid)) << "position " << pos << " alternative " << i;
      EXPECT_NEAR(g.logp[pos * size_t(k) + size_t(i)], std::log(mass.at(sid) / norm), 1e-4) << "position " << pos;
    }
  };
  for (const int k : {6, int(c.n_vocab)}) {
    SCOPED_TRACE("k " + std::to_string(k));
    CrossVocabularyScorer scorer(teacher, *t, *s, k);
    const std::vector<SequenceScores> got = scorer.score({student_ids});
    ASSERT_EQ(got.size(), 1u);
    const SequenceScores& g = got[0];
    ASSERT_EQ(g.scored.size(), text.size() - 1);
    int scored = 0, continued = 0, shaped = 0;
    for (size_t pos = 0; pos + 1 < text.size(); ++pos) {
      // the teacher token student token pos + 1 starts, or is inside of
      const auto it = std::find(starts.begin(), starts.end(), pos + 1);
      const size_t u = it != starts.end() ? size_t(it - starts.begin()) : size_t(std::upper_bound(starts.begin(), starts.end(), pos + 1) - starts.begin()) - 1;
      std::vector<int32_t> ids(static_cast<size_t>(k));
      std::vector<float> lp(static_cast<size_t>(k));
      if (u == 0) {
        EXPECT_EQ(g.scored[pos], 0) << "inside the first teacher token nothing predicts it: position " << pos;
        continue;
      }
      top_k_logprobs(logits.data<float>() + int64_t(u - 1) * c.n_vocab, c.n_vocab, k, ids.data(), lp.data());
      if (it == starts.end()) {  // inside teacher token u, after `prefix` of its bytes
        const std::string prefix = text.substr(starts[u], pos + 1 - starts[u]);
        std::map<int32_t, double> next;  // student byte token after the prefix -> probability
        double listed = 0, going_on = 0;
        for (int i = 0; i < k; ++i) {
          const std::string b = t->token_bytes(ids[size_t(i)]);
          const double p = std::exp(double(lp[size_t(i)]));
          listed += p;
          if (!t->is_special(ids[size_t(i)]) && b.size() > prefix.size() && b.compare(0, prefix.size(), prefix) == 0)
            going_on += p, next[byte_token.at(b.substr(prefix.size(), 1))] += p;
        }
        if (!next.empty() && going_on >= 1.0 - listed) {  // the continuation, renormalised
          EXPECT_EQ(g.scored[pos], 1) << "position " << pos;
          expect_labels(g, pos, k, next, going_on);
          ++continued;
        } else {  // its distribution's sorted top-k, for the ULD term
          EXPECT_EQ(g.scored[pos], 2) << "position " << pos;
          for (int i = 0; i < k; ++i) EXPECT_EQ(g.logp[pos * size_t(k) + size_t(i)], lp[size_t(i)]) << "position " << pos;
          ++shaped;
        }
        continue;
      }
      EXPECT_EQ(g.scored[pos], 1) << "position " << pos;
      ++scored;
      std::map<int32_t, double> mass;  // student byte token -> probability
      for (int i = 0; i < k; ++i) {
        const std::string b = t->token_bytes(ids[size_t(i)]);
        if (b.empty()) continue;
        // a control token maps to the student's of the same text, or nowhere (not to its first byte)
        const int32_t special = s->token_to_id(b);
        if (special >= 0 && s->is_special(special)) mass[special] += std::exp(double(lp[size_t(i)]));
        else if (!t->is_special(ids[size_t(i)])) mass[byte_token.at(b.substr(0, 1))] += std::exp(double(lp[size_t(i)]));
      }
      expect_labels(g, pos, k, mass, 1.0);
    }
    EXPECT_EQ(scored, int(tid.size()) - 1) << "every teacher token after the first starts a scored position";
    if (k == 6) EXPECT_GT(shaped, 0);
    else EXPECT_GT(continued, 0);
    EXPECT_EQ(scorer.aligned(), scored + continued);
    EXPECT_EQ(scorer.shaped(), shaped);
    EXPECT_EQ(scorer.positions(), int64_t(text.size()) - 1);
  }
}

// End to end: `train --on-policy` with a teacher of another tokenizer, no longer refused.
TEST(CrossTokenizer, OnPolicyDistillationFromATeacherOfAnotherTokenizer) {
  test::TempDir dir;
  test::write_bytes(dir / "corpus.txt", "the cat sat on the mat. the hat. the");
  ASSERT_EQ(test::run_distill("init --preset tiny --tokenizer bpe:24 --corpus " + (dir / "corpus.txt") + " --seed 2 -o " + (dir / "teacher")).exit_code, 0);
  ASSERT_EQ(test::run_distill("init --preset tiny --tokenizer bytes --seed 3 -o " + (dir / "student")).exit_code, 0);
  {
    std::ofstream f(dir / "data.jsonl");
    for (int i = 0; i < 16; ++i) f << nlohmann::json{{"prompt", "the cat " + std::to_string(i)}, {"completion", " sat on the mat."}}.dump() << "\n";
  }
  // a student that has seen the completions (its samples then hold the teacher's multi-byte tokens)
  test::CliResult r = test::run_distill("train --student " + (dir / "student") + " --data " + (dir / "data.jsonl") +
                                        " --steps 40 --batch 4 --seq-len 64 --lr 0.01 --warmup 2 --eval-fraction 0 -o " + (dir / "sft"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const std::string train = "train --student " + (dir / "sft") + " --teacher " + (dir / "teacher") + " --data " + (dir / "data.jsonl") +
                            " --steps 3 --batch 2 --seq-len 64 --eval-fraction 0 --teacher-top-k 8 -o ";
  r = test::run_distill(train + (dir / "off"));
  EXPECT_NE(r.exit_code, 0) << "offline logit KD needs one token space";
  EXPECT_NE(r.output.find("give --on-policy"), std::string::npos) << r.output;
  r = test::run_distill(train + (dir / "on") + " --on-policy 1");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("grades the student's samples on bytes, top-8"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("aligned with a teacher token (KD)"), std::string::npos) << r.output;
  // every step sampled; the aligned positions were distilled
  std::ifstream m(dir / "on/metrics.jsonl");
  std::string line;
  int steps = 0;
  double kd = 0, uld = 0;
  while (std::getline(m, line)) {
    const auto j = nlohmann::json::parse(line);
    EXPECT_GT(j.value("on_policy_rows", 0), 0) << line;
    kd += j.value("kd", 0.0), uld += j.value("uld", 0.0);
    ++steps;
  }
  EXPECT_EQ(steps, 3);
  EXPECT_GT(kd, 0.0) << "the aligned positions carried a KD term (a random student's samples align in places only)";
  EXPECT_GT(uld, 0.0) << "positions inside the BPE teacher's tokens carried the ULD term" << r.output;
  // --uld-weight is run-defining: a resume with another weight is refused
  r = test::run_distill("train --student " + (dir / "sft") + " --teacher " + (dir / "teacher") + " --data " + (dir / "data.jsonl") +
                        " --steps 3 --batch 2 --seq-len 64 --eval-fraction 0 --teacher-top-k 8 --on-policy 1 --resume --uld-weight 0.5 -o " + (dir / "on"));
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("uld_weight"), std::string::npos) << r.output;
}

}  // namespace distill
