// distill label against a real `distill serve` (in this process, on loopback): a teacher with the
// student's vocabulary is lossless — SentencePiece and byte-level BPE alike, every position keeps
// its top-k, equal to the same model used as a local teacher; without --model the server's only
// model is used; SIGKILL at random moments and --resume give the uninterrupted run's dataset, record
// for record. The response parser refuses malformed answers naming the field.
#include "formats/teacher_dataset.h"
#include "serve_fixture.h"
#include "spm_tokenizer.h"
#include "teacher/remote_answer.h"

#include <gtest/gtest.h>
#include <httplib.h>

#include <csignal>
#include <fstream>
#include <map>
#include <random>
#include <sys/wait.h>

namespace distill {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// A random tiny model over `files`' vocabulary (weights N(0, 0.5²): it wanders over the whole
// vocabulary, byte-fallback tokens and all).
void use_vocabulary(test::TinyModel& m, const TokenizerFiles& files, uint64_t seed) {
  m.files = files;
  m.tok = Tokenizer::from_json(files.tokenizer_json, files.tokenizer_config_json, "test");
  ModelConfig c = m.model.config;
  c.n_vocab = m.tok->vocab_size();
  m.model = Model::random(c, DType::F32, seed, 0.5f);
}

void write_prompts(const std::string& path, int n) {
  std::ofstream f(path);
  for (int i = 0; i < n; ++i) f << json{{"prompt", "abc " + std::to_string(i) + " bc ab"}}.dump() << "\n";
}

std::map<std::pair<uint64_t, uint32_t>, TeacherRecord> records_of(const std::string& dir) {
  std::map<std::pair<uint64_t, uint32_t>, TeacherRecord> m;
  read_records(dir + "/records.bin", [&](TeacherRecord&& r) { m[{r.prompt_index, r.sample_index}] = std::move(r); });
  return m;
}

// Labels with the model as a remote teacher (through `distill serve`, no --model) and as a local
// one; the remote dataset must equal the local one.
void expect_remote_equals_local(test::TinyModel& m, const std::string& what) {
  test::TempDir dir;
  m.save(dir / "model");
  write_prompts(dir / "prompts.jsonl", 6);
  test::RunningServer s(m, ServeOptions{});
  const std::string common = " --prompts " + (dir / "prompts.jsonl") + " --top-k 5 --max-tokens 16 --temperature 0";
  auto remote = test::run_distill("label --teacher http://127.0.0.1:" + std::to_string(s.port()) + "/v1 --tokenizer " +
                                  (dir / "model") + " -o " + (dir / "remote") + common);
  ASSERT_EQ(remote.exit_code, 0) << remote.output;
  auto local = test::run_distill("label --teacher " + (dir / "model") + " -o " + (dir / "local") + common);
  ASSERT_EQ(local.exit_code, 0) << local.output;
  const auto l = records_of(dir / "local"), r = records_of(dir / "remote");
  ASSERT_EQ(l.size(), 6u);
  ASSERT_EQ(r.size(), 6u);
  int64_t positions = 0, soft = 0;
  for (const auto& [key, lr] : l) {
    const TeacherRecord& rr = r.at(key);
    ASSERT_EQ(rr.completion, lr.completion) << what << ": prompt " << key.first;
    for (size_t j = 0; j < lr.completion.size(); ++j) {
      if (!lr.soft[j]) continue;  // the local teacher has no top-k after the last token
      ++positions;
      if (rr.k == 0 || !rr.soft[j]) continue;
      ++soft;
      for (size_t i = 0; i < 5; ++i) {
        EXPECT_EQ(rr.topk_ids[j * 5 + i], lr.topk_ids[j * 5 + i]) << what << ": prompt " << key.first << " position " << j;
        // 2e-3 of decode noise, plus one f16 step: two stored log-probs (f16) a hair apart may round apart
        EXPECT_NEAR(rr.topk_logp[j * 5 + i], lr.topk_logp[j * 5 + i], 2e-3 + test::f16_quantum(lr.topk_logp[j * 5 + i])) << what << ": prompt " << key.first << " position " << j;
      }
    }
  }
  std::printf("[ measured ] %s: %lld of %lld positions kept their top-5 through the server\n", what.c_str(), (long long)soft,
              (long long)positions);
  EXPECT_GT(positions, 50);
  EXPECT_GE(double(soft), 0.99 * double(positions)) << what;
}

}  // namespace

TEST(RemoteTeacher, SameSentencePieceVocabularyIsLossless) {
  test::TinyModel m;
  use_vocabulary(m, {test::spm_json(), R"({"bos_token": "<s>", "eos_token": "</s>"})"}, 3);
  expect_remote_equals_local(m, "SentencePiece");
}

TEST(RemoteTeacher, SameByteLevelBpeVocabularyIsLossless) {
  test::TinyModel m;
  use_vocabulary(m, make_byte_level_tokenizer("abc abc bc ab the then there 0 1 2 3 4 5", 40), 4);
  expect_remote_equals_local(m, "byte-level BPE");
}

TEST(RemoteTeacher, KilledAtRandomAndResumedEqualsUninterrupted) {
  // An f32 cache on the served teacher: the f16 default rounds the batch-shape noise below into
  // swapped near-tied top-k entries now and then, and this test is about resuming, not rounding.
  const test::ScopedKvCacheType cache_type(DType::F32);
  test::TinyModel m(32, 2, 9, 1024);
  test::TempDir dir;
  m.save(dir / "model");
  write_prompts(dir / "prompts.jsonl", 40);
  ServeOptions o;
  o.n_parallel = 4;
  test::RunningServer s(m, o);
  const std::string args = "label --teacher http://127.0.0.1:" + std::to_string(s.port()) + "/v1 --tokenizer " + (dir / "model") +
                           " --prompts " + (dir / "prompts.jsonl") +
                           " --max-tokens 48 --top-k 5 --temperature 0.9 --samples 2 --seed 5 --concurrency 4 -o ";
  const auto t0 = std::chrono::steady_clock::now();
  auto full = test::run_distill(args + (dir / "full"));
  ASSERT_EQ(full.exit_code, 0) << full.output;
  const int full_ms = int(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  const size_t full_size = fs::file_size(dir / "full/records.bin");
  const int interrupted = test::kill_at_random(
      args + (dir / "killed") + " --resume", 4, full_ms, 3,
      [&] { return test::file_share(dir / "killed/records.bin", full_size); },  // of the uninterrupted run's records
      [&] { fs::remove_all(dir / "killed"); });
  EXPECT_GT(interrupted, 0) << "no kill landed mid-run (an uninterrupted run takes " << full_ms << " ms)";
  auto resumed = test::run_distill(args + (dir / "killed") + " --resume");
  ASSERT_EQ(resumed.exit_code, 0) << resumed.output;
  EXPECT_EQ(records_of(dir / "killed").size(), 80u) << "every (prompt, sample) exactly once";
  std::vector<TeacherRecord> a, b;
  read_records(dir / "full/records.bin", [&](TeacherRecord&& r) { a.push_back(std::move(r)); });
  read_records(dir / "killed/records.bin", [&](TeacherRecord&& r) { b.push_back(std::move(r)); });
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    SCOPED_TRACE("record " + std::to_string(i));
    ASSERT_EQ(b[i].prompt_index, a[i].prompt_index) << "records in prompt order";
    ASSERT_EQ(b[i].sample_index, a[i].sample_index);
    EXPECT_EQ(b[i].completion, a[i].completion);
    EXPECT_EQ(b[i].topk_ids, a[i].topk_ids);
    // The server decodes each request in whatever batch it shares, and a row's float sums differ
    // with the batch's shape: log-probs agree to the storage quantum (f16's step) plus that noise.
    ASSERT_EQ(b[i].topk_logp.size(), a[i].topk_logp.size());
    for (size_t j = 0; j < a[i].topk_logp.size(); ++j) {
      if (std::isfinite(a[i].topk_logp[j]) || std::isfinite(b[i].topk_logp[j])) {
        EXPECT_NEAR(b[i].topk_logp[j], a[i].topk_logp[j], 2e-3 + test::f16_quantum(a[i].topk_logp[j])) << "top-k entry " << j;
      }
    }
  }
}

TEST(RemoteTeacher, WithoutModelAServerWithSeveralIsNamed) {
  // A stand-in API listing two models: label must say which exist instead of guessing.
  httplib::Server api;
  api.Get("/v1/models", [](const httplib::Request&, httplib::Response& res) {
    res.set_content(R"({"object":"list","data":[{"id":"big"},{"id":"small"}]})", "application/json");
  });
  const int port = api.bind_to_any_port("127.0.0.1");
  std::thread t([&] { api.listen_after_bind(); });
  test::TempDir dir;
  test::TinyModel m;
  m.save(dir / "model");
  write_prompts(dir / "prompts.jsonl", 1);
  auto r = test::run_distill("label --teacher http://127.0.0.1:" + std::to_string(port) + "/v1 --tokenizer " + (dir / "model") +
                             " --prompts " + (dir / "prompts.jsonl") + " -o " + (dir / "ds"));
  api.stop();
  t.join();
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("big, small"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("--model"), std::string::npos) << r.output;
}

TEST(RemoteTeacher, MalformedAnswersAreRefusedNamingTheField) {
  auto refused = [](const std::string& body) {
    try {
      parse_remote_answer(body, false);
    } catch (const Error& e) {
      return std::string(e.what());
    }
    return std::string("accepted");
  };
  const std::string ok_token = R"({"token":"a","logprob":-0.1,"bytes":[97],"top_logprobs":[]})";
  auto answer = [](const std::string& content) {
    return R"({"choices":[{"message":{"content":"a"},"finish_reason":"stop","logprobs":{"content":[)" + content + "]}}]}";
  };
  EXPECT_EQ(refused(answer(ok_token)), "accepted");
  EXPECT_NE(refused(answer(R"({"token":"a","logprob":-0.1,"bytes":[300]})")).find("content[0].bytes[0]"), std::string::npos);
  EXPECT_NE(refused(answer(ok_token + R"(,{"token":"b","logprob":"x"})")).find("content[1].logprob"), std::string::npos);
  EXPECT_NE(refused(answer(R"({"token":"a","logprob":-0.1,"top_logprobs":[{"token":"b","logprob":-1,"id":-5}]})"))
                .find("top_logprobs[0].id"),
            std::string::npos);
  EXPECT_NE(refused(R"({"choices":[]})").find("choices"), std::string::npos);
  EXPECT_NE(refused(R"({"choices":[{"message":7}]})").find("choices[0].message"), std::string::npos);
  EXPECT_NE(refused("{").find("the teacher's response"), std::string::npos);
  EXPECT_NE(refused(answer(R"({"token":"a","logprob":3})")).find("≤ 0"), std::string::npos);
}

}  // namespace distill

namespace distill {

// On-policy distillation from a teacher behind `distill serve`: the student samples, the server
// grades the samples (echo + prompt log-probs, token ids), the student learns from the grades; a
// killed and resumed run ends where the uninterrupted one does; a server with another vocabulary is
// refused, naming both.
TEST(RemoteTeacher, OnPolicyDistillationFromAServedTeacher) {
  test::TempDir dir;
  const std::string cycle = "aebfcgdh";
  {
    std::ofstream out(dir / "data.jsonl");
    for (int e = 0; e < 96; ++e) {
      std::string s;
      for (int i = 0; i < 16; ++i) s += cycle[size_t((e + i) % 8)];
      out << json{{"prompt", s.substr(0, 4)}, {"completion", s.substr(4)}}.dump() << "\n";
    }
  }
  auto run = [](const std::string& args, const std::string& env = "") { return test::run_distill(args, env); };
  ASSERT_EQ(run("init --preset tiny --tokenizer bytes --seed 5 -o " + (dir / "student")).exit_code, 0);
  ASSERT_EQ(run("init --preset tiny --tokenizer bytes --seed 6 -o " + (dir / "teacher0")).exit_code, 0);
  const std::string common = " --data " + (dir / "data.jsonl") + " --batch 8 --seq-len 64 --lr 0.003 --seed 2";
  ASSERT_EQ(run("train --student " + (dir / "teacher0") + " -o " + (dir / "teacher") + common + " --steps 150").exit_code, 0);
  ASSERT_EQ(run("train --student " + (dir / "student") + " -o " + (dir / "sft") + common + " --steps 15").exit_code, 0);

  test::TinyModel served;
  served.model = Model::load(dir / "teacher");
  served.tok = Tokenizer::load(dir / "teacher");
  test::RunningServer srv(served, ServeOptions{});
  const std::string url = "http://127.0.0.1:" + std::to_string(srv.port()) + "/v1";
  const std::string gkd = "train --student " + (dir / "sft") + " --teacher " + url + common +
                          " --loss jsd --beta 0.5 --kd-alpha 1 --on-policy 1 --teacher-top-k 8 --topk-mode tail --steps 30 --save-every 10 -o ";
  auto r = run(gkd + (dir / "a"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("the remote teacher graded samples"), std::string::npos) << r.output;
  double sft_loss = -1, loss = -1;
  int64_t sampled = 0;
  for (const auto& [path, out] : {std::pair{dir / "sft/metrics.jsonl", &sft_loss}, std::pair{dir / "a/metrics.jsonl", &loss}}) {
    std::ifstream in(path);
    std::string line;
    while (std::getline(in, line)) {
      const auto j = json::parse(line);
      if (j.contains("eval_loss")) *out = j["eval_loss"];
      if (j.contains("on_policy_rows")) sampled += j["on_policy_rows"].get<int64_t>();
    }
  }
  EXPECT_EQ(sampled, 30 * 8);
  std::printf("[ measured ] held-out loss after SFT %.3f, after on-policy KD from the served teacher %.3f\n", sft_loss, loss);
  EXPECT_LT(loss, 0.7 * sft_loss);

  r = run(gkd + (dir / "b"), "DISTILL_TEST_KILL_AT_STEP=17");
  EXPECT_EQ(r.exit_code, 137) << r.output;
  r = run(gkd + (dir / "b") + " --resume");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(test::read_bytes(dir / "a/model.safetensors"), test::read_bytes(dir / "b/model.safetensors"))
      << "the same samples graded the same way: a resumed run ends where the uninterrupted one does";

  // A served teacher with another vocabulary cannot grade the student's tokens.
  test::TinyModel other;
  use_vocabulary(other, {test::spm_json(), R"({"bos_token": "<s>", "eos_token": "</s>"})"}, 3);
  test::RunningServer srv2(other, ServeOptions{});
  r = run("train --student " + (dir / "sft") + " --teacher http://127.0.0.1:" + std::to_string(srv2.port()) + "/v1" + common +
          " --on-policy 1 --steps 2 -o " + (dir / "c"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("vocabulary"), std::string::npos) << r.output;
}

}  // namespace distill
