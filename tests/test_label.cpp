// distill label end to end. Local teacher: its recorded top-k equals the top-k of the logits of
// the forward pass; SIGKILL at random moments and resume gives the uninterrupted run's dataset;
// the dataset trains a student with KD. Remote teacher: a real HTTP server in this test answers
// in the OpenAI format and misbehaves on purpose (429 with Retry-After, 500, a slow answer past the
// timeout, malformed JSON, a connection closed mid-body, a fatal 400).
#include "formats/safetensors.h"
#include "generate/batch_generate.h"
#include "model/decoder.h"
#include "formats/teacher_dataset.h"
#include "tokenizer/tokenizer.h"
#include "test_util.h"

#include <httplib.h>
#include <nlohmann/json.hpp>

#include <csignal>
#include <fstream>
#include <map>
#include <mutex>
#include <random>
#include <sys/wait.h>
#include <thread>

namespace distill {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

int run(const std::string& args, std::string* out = nullptr, const std::string& env = "") {
  const test::CliResult r = test::run_distill(args, env);
  if (out) *out = r.output;
  return r.exit_code;
}

void write_prompts(const std::string& path, int n) {
  std::ofstream f(path);
  for (int i = 0; i < n; ++i) f << json{{"id", "p" + std::to_string(i)}, {"prompt", "Say " + std::to_string(i)}}.dump() << "\n";
}

}  // namespace

// A dense teacher directory, and a mixture of experts as GGUF (GPT-OSS shape, MXFP4 experts, a
// sliding window shorter than prompt + completion).
TEST(Label, LocalTopKEqualsTheForwardPass) {
  test::TempDir dir;
  ASSERT_EQ(run("init --preset tiny --tokenizer bytes --seed 3 -o " + (dir / "teacher")), 0);
  test::write_bytes(dir / "moe.json", json{{"model_type", "gpt_oss"}, {"vocab_size", 256}, {"hidden_size", 64}, {"intermediate_size", 64},
                                     {"num_hidden_layers", 2}, {"num_attention_heads", 4}, {"num_key_value_heads", 2},
                                     {"head_dim", 16}, {"num_local_experts", 8}, {"num_experts_per_tok", 2},
                                     {"sliding_window", 8}, {"max_position_embeddings", 256}}.dump());
  ASSERT_EQ(run("init --config " + (dir / "moe.json") + " --arch gpt_oss --tokenizer bytes --seed 4 --expert-type mxfp4 -o " +
                (dir / "moe.gguf")), 0);
  write_prompts(dir / "prompts.jsonl", 5);
  for (const std::string teacher : {"teacher", "moe.gguf"}) {
    SCOPED_TRACE(teacher);
    const std::string out_dir = dir / ("ds-" + teacher);
    std::string out;
    // (an f32 cache for the mixture: the f16 cache's rounding moves its log-probs by more than the
    // 1e-3 checked here, measured)
    ASSERT_EQ(run(std::string(teacher == "moe.gguf" ? "--kv-cache f32 " : "") + "label --teacher " + (dir / teacher) +
                  " --prompts " + (dir / "prompts.jsonl") + " -o " + out_dir + " --max-tokens 6 --top-k 5 --batch 2", &out), 0) << out;
    const Model model = Model::load(dir / teacher);
    if (teacher == "moe.gguf") {
      ASSERT_TRUE(model.config.is_moe());
      ASSERT_GT(model.config.window_of(0), 0);
    }
    Decoder dec(model);
    int checked = 0;
    read_records(out_dir + "/records.bin", [&](TeacherRecord&& r) {
      std::vector<int32_t> seq = r.prompt;
      seq.insert(seq.end(), r.completion.begin(), r.completion.end());
      if (teacher == "moe.gguf") {
        EXPECT_GT(int64_t(seq.size()), model.config.window_of(0)) << "longer than the window";
      }
      const Tensor logits = dec.forward_full(seq.data(), 1, int64_t(seq.size()));
      for (size_t j = 0; j < r.completion.size(); ++j) {
        std::vector<int32_t> ids(5);
        std::vector<float> lp(5);
        top_k_logprobs(logits.data<float>() + (r.prompt.size() + j - 1) * size_t(model.config.n_vocab), model.config.n_vocab, 5,
                       ids.data(), lp.data());
        for (int i = 0; i < 5; ++i) {
          const int32_t* got = r.topk_ids.data() + j * 5;
          const int at = int(std::find(got, got + 5, ids[size_t(i)]) - got);
          ASSERT_LT(at, 5) << "id " << ids[size_t(i)] << " missing at completion position " << j;
          // the dataset keeps the f16 of the log-prob: 1e-3 of decode noise plus half an f16 step
          EXPECT_NEAR(r.topk_logp[j * 5 + size_t(at)], lp[size_t(i)], 1e-3 + 0.5 * test::f16_quantum(lp[size_t(i)]));
          ++checked;
        }
        // greedy: the sampled token is the most likely one
        EXPECT_EQ(r.completion[j], ids[0]);
      }
    });
    EXPECT_GT(checked, 0);
  }
}

// A prompt longer than the teacher's context is refused up front, naming it, as `run` refuses it.
TEST(Label, PromptLongerThanTheContextIsRefused) {
  test::TempDir dir;
  ASSERT_EQ(run("init --preset tiny --tokenizer bytes -o " + (dir / "teacher")), 0);  // context 2048
  {
    std::ofstream f(dir / "prompts.jsonl");
    f << json{{"prompt", "short"}}.dump() << "\n" << json{{"prompt", std::string(3000, 'x')}}.dump() << "\n";
  }
  std::string out;
  EXPECT_EQ(run("label --teacher " + (dir / "teacher") + " --prompts " + (dir / "prompts.jsonl") + " -o " + (dir / "ds"), &out), 1);
  EXPECT_NE(out.find("line 2"), std::string::npos) << out;
  EXPECT_NE(out.find("context holds 2048"), std::string::npos) << out;
  // 100 000 messages in one prompt (once quadratic: it hung) are rendered, counted and refused.
  {
    json msgs = json::array();
    for (int i = 0; i < 100000; ++i) msgs.push_back({{"role", "user"}, {"content", "hi"}});
    std::ofstream f(dir / "huge.jsonl");
    f << json{{"messages", msgs}}.dump() << "\n";
  }
  EXPECT_EQ(run("label --teacher " + (dir / "teacher") + " --prompts " + (dir / "huge.jsonl") + " -o " + (dir / "ds2"), &out), 1);
  EXPECT_NE(out.find("context holds 2048"), std::string::npos) << out;
}

TEST(Label, KilledAtRandomAndResumedEqualsUninterrupted) {
  test::TempDir dir;
  ASSERT_EQ(run("init --preset tiny --tokenizer bytes --seed 4 -o " + (dir / "teacher")), 0);
  write_prompts(dir / "prompts.jsonl", 60);
  const std::string args = "label --teacher " + (dir / "teacher") + " --prompts " + (dir / "prompts.jsonl") +
                           " --max-tokens 24 --top-k 8 --batch 2 --temperature 0.9 --samples 2 --seed 11 -o ";
  std::string out;
  const auto t0 = std::chrono::steady_clock::now();
  ASSERT_EQ(run(args + (dir / "full"), &out), 0) << out;
  const int full_ms = int(std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count());
  const size_t full_size = fs::file_size(dir / "full/records.bin");
  const int interrupted = test::kill_at_random(
      args + (dir / "killed") + " --resume", 4, full_ms, 7,
      [&] { return test::file_share(dir / "killed/records.bin", full_size); },  // of the uninterrupted run's records
      [&] { fs::remove_all(dir / "killed"); });
  EXPECT_GT(interrupted, 0) << "no kill landed mid-run (an uninterrupted run takes " << full_ms << " ms)";
  ASSERT_EQ(run(args + (dir / "killed") + " --resume", &out), 0) << out;
  EXPECT_EQ(test::read_bytes(dir / "killed/records.bin"), test::read_bytes(dir / "full/records.bin"))
      << "every prompt exactly once, in the same order, with the same samples";
  ASSERT_EQ(run("dataset info " + (dir / "killed"), &out), 0) << out;
  EXPECT_NE(out.find("records      120"), std::string::npos) << out;
  // the dataset trains a student: CE on the teacher's text plus KD on its top-k
  ASSERT_EQ(run("init --preset tiny --tokenizer bytes --seed 5 -o " + (dir / "student")), 0);
  ASSERT_EQ(run("train --student " + (dir / "student") + " --data " + (dir / "full") + " -o " + (dir / "kd") +
                " --steps 3 --batch 4 --seq-len 64 --topk-mode tail", &out), 0) << out;
  // shards merge into the whole
  ASSERT_EQ(run(args + (dir / "s0") + " --shard 0/2", &out), 0) << out;
  ASSERT_EQ(run(args + (dir / "s1") + " --shard 1/2", &out), 0) << out;
  ASSERT_EQ(run("dataset merge " + (dir / "s0") + " " + (dir / "s1") + " -o " + (dir / "merged"), &out), 0) << out;
  EXPECT_NE(out.find("120 records"), std::string::npos) << out;
  ASSERT_EQ(run("dataset export " + (dir / "merged") + " -o " + (dir / "merged.jsonl"), &out), 0) << out;
  EXPECT_EQ(std::count(std::istreambuf_iterator<char>(*std::make_unique<std::ifstream>(dir / "merged.jsonl")), {}, '\n'), 120);
}

namespace {

// An OpenAI-compatible server that misbehaves on purpose, once per kind of fault.
class FlakyServer {
public:
  FlakyServer() {
    server_.Post("/v1/chat/completions", [this](const httplib::Request& req, httplib::Response& res) { handle(req, res); });
    port_ = server_.bind_to_any_port("127.0.0.1");
    thread_ = std::thread([this] { server_.listen_after_bind(); });
  }
  ~FlakyServer() {
    server_.stop();
    thread_.join();
  }
  int port() const { return port_; }
  std::map<std::string, int> calls;
  std::string last_auth;

private:
  void handle(const httplib::Request& req, httplib::Response& res) {
    const json body = json::parse(req.body);
    const std::string prompt = body["messages"].back()["content"];
    int n;
    {
      std::lock_guard<std::mutex> lock(mu_);
      n = ++calls[prompt];
      last_auth = req.get_header_value("Authorization");
    }
    if (prompt == "rate" && n == 1) {
      res.status = 429;
      res.set_header("Retry-After", "1");
      res.set_content(R"({"error": {"message": "slow down"}})", "application/json");
      return;
    }
    if (prompt == "error" && n <= 2) {
      res.status = 500;
      res.set_content("internal error", "text/plain");
      return;
    }
    if (prompt == "slow" && n == 1) std::this_thread::sleep_for(std::chrono::milliseconds(2500));
    if (prompt == "garbage" && n == 1) {
      res.set_content("{\"choices\": [", "application/json");
      return;
    }
    if (prompt == "cut" && n == 1) {
      res.set_content_provider(1000, "application/json", [](size_t, size_t, httplib::DataSink& sink) {
        sink.write("{\"choices\": [{\"mess", 18);
        return false;  // the connection closes mid-body
      });
      return;
    }
    if (prompt == "fatal") {
      res.status = 400;
      res.set_content(R"({"error": {"message": "bad request"}})", "application/json");
      return;
    }
    // "ok": each character one token, with two alternatives
    const std::string answer = "ok " + prompt;
    json content = json::array();
    for (char c : answer) {
      const std::string t(1, c), alt = c == 'x' ? "y" : "x";
      content.push_back({{"token", t}, {"logprob", -0.1}, {"top_logprobs", {{{"token", t}, {"logprob", -0.1}}, {{"token", alt}, {"logprob", -2.4}}}}});
    }
    res.set_content(json{{"id", "chatcmpl-1"},
                         {"object", "chat.completion"},
                         {"choices", {{{"index", 0}, {"finish_reason", "stop"}, {"message", {{"role", "assistant"}, {"content", answer}}},
                                       {"logprobs", {{"content", content}}}}}}}
                        .dump(),
                    "application/json");
  }
  httplib::Server server_;
  int port_ = 0;
  std::thread thread_;
  std::mutex mu_;
};

}  // namespace

TEST(Label, RemoteTeacherSurvivesAMisbehavingServer) {
  test::TempDir dir;
  ASSERT_EQ(run("init --preset tiny --tokenizer bytes -o " + (dir / "student")), 0);
  {
    std::ofstream f(dir / "prompts.jsonl");
    for (const char* p : {"a", "rate", "error", "slow", "garbage", "cut", "fatal", "b"}) f << json{{"prompt", p}}.dump() << "\n";
  }
  FlakyServer server;
  std::string out;
  const std::string cmd = "label --teacher http://127.0.0.1:" + std::to_string(server.port()) + "/v1 --tokenizer " +
                          (dir / "student") + " --prompts " + (dir / "prompts.jsonl") + " -o " + (dir / "ds") +
                          " --top-k 2 --timeout 1 --retries 4 --backoff 0.05 --concurrency 3 --model teacher-x";
  const int code = run(cmd, &out, "SECRET_TEACHER_KEY=sk-test-123 ");
  EXPECT_EQ(code, 1) << "a prompt failed for good: the run says so\n" << out;
  EXPECT_NE(out.find("prompt 6: HTTP 400"), std::string::npos) << out;
  EXPECT_EQ(out.find("sk-test"), std::string::npos) << "the key never appears in the output";
  std::map<uint64_t, int> seen;
  int64_t soft = 0;
  read_records(dir / "ds/records.bin", [&](TeacherRecord&& r) {
    ++seen[r.prompt_index];
    for (uint8_t s : r.soft) soft += s;
  });
  EXPECT_EQ(seen.size(), 7u) << "every prompt but the fatal one, each exactly once";
  for (const auto& [idx, n] : seen) EXPECT_EQ(n, 1) << idx;
  EXPECT_EQ(seen.count(6), 0u);
  EXPECT_GT(soft, 0) << "the teacher's top-k mapped onto the student's byte tokens";
  EXPECT_GE(server.calls["rate"], 2);
  EXPECT_GE(server.calls["error"], 3);
  EXPECT_GE(server.calls["slow"], 2);
  EXPECT_EQ(server.calls["fatal"], 1) << "a 400 is not retried";
  const std::string manifest = test::read_bytes(dir / "ds/manifest.json");
  EXPECT_EQ(manifest.find("sk-test"), std::string::npos);
  EXPECT_NE(manifest.find("\"failed\""), std::string::npos);
  // with the key variable named, the key is sent
  EXPECT_EQ(run(cmd + " --resume --api-key-env SECRET_TEACHER_KEY", &out, "SECRET_TEACHER_KEY=sk-test-123 "), 1) << out;
  EXPECT_EQ(server.last_auth, "Bearer sk-test-123");
  read_records(dir / "ds/records.bin", [&](TeacherRecord&& r) { ++seen[r.prompt_index]; });
  for (const auto& [idx, n] : seen) EXPECT_EQ(n, 2) << "resume re-reads, and adds nothing twice: " << idx;
}

}  // namespace distill
