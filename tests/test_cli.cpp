// The distill binary end to end: `distill forward` on a Hugging Face directory built from the
// reference tensors, and clean failures (message + exit 1) on bad input.
#include "formats/checkpoint.h"
#include "test_util.h"

#include <cstdio>
#include <filesystem>
#include <sys/wait.h>

namespace distill {
using test::TempDir;

namespace {

using CliRun = test::CliResult;
CliRun run(const std::string& args) { return test::run_distill(args); }

// A Hugging Face model directory holding the reference llama weights under their plain names.
void make_model_dir(const std::string& dir, const TensorStore& ref) {
  std::filesystem::create_directories(dir);
  std::filesystem::copy_file(test::reference_path("llama-tiny.config.json"), dir + "/config.json");
  SafetensorsWriter w;
  for (const std::string& n : ref.names())
    if (n.rfind("param.", 0) == 0) w.add(n.substr(6), ref.get(n));
  w.write(dir + "/model.safetensors");
}

}  // namespace

TEST(Cli, ForwardReproducesReferenceLogits) {
  TempDir dir;
  const std::string ref_path = test::reference_path("llama-tiny.safetensors");
  const TensorStore ref = TensorStore::open_file(ref_path);
  make_model_dir(dir / "model", ref);
  SafetensorsWriter ids;
  ids.add("input_ids", ref.get("input_ids"));
  ids.write(dir / "ids.safetensors");

  CliRun r = run("forward " + (dir / "model") + " --ids " + (dir / "ids.safetensors") + " -o " + (dir / "out.safetensors"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("tokens/s"), std::string::npos) << r.output;
  Tensor got = SafetensorsFile::open(dir / "out.safetensors").get("logits");
  Tensor want = ref.get("logits");
  ASSERT_EQ(got.shape(), want.shape());
  EXPECT_LT(test::max_abs_diff(got.data<float>(), want.data<float>(), size_t(got.numel())), 1e-4f);

  // The reference file itself, through --config and --prefix, with one thread.
  r = run("--threads 1 forward " + ref_path + " --config " + test::reference_path("llama-tiny.config.json") +
          " --prefix param. --ids " + ref_path + " -o " + (dir / "out2.safetensors"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  Tensor got2 = SafetensorsFile::open(dir / "out2.safetensors").get("logits");
  EXPECT_LT(test::max_abs_diff(got2.data<float>(), want.data<float>(), size_t(got.numel())), 1e-4f);
}

TEST(Cli, ForwardWithTargetsDumpsReferenceGradients) {
  TempDir dir;
  const std::string ref_path = test::reference_path("qwen2-tiny.safetensors");
  const TensorStore ref = TensorStore::open_file(ref_path);
  CliRun r = run("forward " + ref_path + " --config " + test::reference_path("qwen2-tiny.config.json") +
              " --prefix param. --ids " + ref_path + " --targets " + ref_path + " -o " + (dir / "g.safetensors"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const SafetensorsFile out = SafetensorsFile::open(dir / "g.safetensors");
  EXPECT_NEAR(out.get("loss").data<float>()[0], ref.get("loss").data<float>()[0], 1e-4);
  int n_grads = 0;
  for (const std::string& name : out.names()) {
    if (name.rfind("grad.", 0) != 0) continue;
    ++n_grads;
    const Tensor got = out.get(name), want = ref.get(name);
    ASSERT_EQ(got.shape(), want.shape()) << name;
    const float scale = test::max_abs(want.data<float>(), size_t(want.numel()));
    EXPECT_LT(test::max_abs_diff(got.data<float>(), want.data<float>(), size_t(got.numel())), 1e-4f * scale) << name;
  }
  EXPECT_EQ(n_grads, 38);  // embeddings + 3 layers × 12 + final norm (tied head)
}

TEST(Cli, RunGeneratesReproduciblyAndReportsSpeed) {
  TempDir dir;
  ASSERT_EQ(run("init --preset tiny --tokenizer bytes -o " + (dir / "m")).exit_code, 0);
  CliRun a = run("run " + (dir / "m") + " -p 'Hello there' -n 16 --seed 5 --no-color");
  ASSERT_EQ(a.exit_code, 0) << a.output;
  EXPECT_NE(a.output.find("generated 16 tokens"), std::string::npos) << a.output;
  EXPECT_NE(a.output.find("decode"), std::string::npos);
  CliRun b = run("run " + (dir / "m") + " -p 'Hello there' -n 16 --seed 5 --no-color");
  EXPECT_EQ(a.output.substr(0, a.output.find("[prompt")), b.output.substr(0, b.output.find("[prompt")))
      << "the same seed gives the same text";
  CliRun chat = run("run " + (dir / "m") + " --chat -n 4 --no-color < /dev/null");
  EXPECT_EQ(chat.exit_code, 0) << chat.output;
  CliRun bad = run("run " + (dir / "missing") + " -p hi");
  EXPECT_EQ(bad.exit_code, 1);
  EXPECT_NE(bad.output.find("missing"), std::string::npos);
  CliRun tmpl = run("run " + (dir / "m") + " -p hi --chat-template nope");
  EXPECT_EQ(tmpl.exit_code, 1);
  EXPECT_NE(tmpl.output.find("known: chatml"), std::string::npos) << tmpl.output;
}

TEST(Cli, BadInputFailsCleanly) {
  TempDir dir;
  const TensorStore ref = TensorStore::open_file(test::reference_path("llama-tiny.safetensors"));
  make_model_dir(dir / "model", ref);

  CliRun r = run("forward " + (dir / "nowhere") + " --ids x -o y");
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("distill: error:"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("nowhere"), std::string::npos) << r.output;

  Tensor bad = Tensor::zeros(DType::I32, {1, 3});
  bad.data<int32_t>()[2] = 96;  // vocab is 96
  SafetensorsWriter w;
  w.add("input_ids", bad);
  w.write(dir / "bad.safetensors");
  r = run("forward " + (dir / "model") + " --ids " + (dir / "bad.safetensors") + " -o " + (dir / "o.safetensors"));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("token 96"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("bad.safetensors"), std::string::npos) << r.output;
  EXPECT_FALSE(std::filesystem::exists(dir / "o.safetensors"));

  test::write_bytes(dir / "garbage.safetensors", "not a safetensors file at all");
  r = run("forward " + (dir / "model") + " --ids " + (dir / "garbage.safetensors") + " -o " + (dir / "o.safetensors"));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("garbage.safetensors"), std::string::npos) << r.output;

  r = run("forward --no-such-flag");
  EXPECT_NE(r.exit_code, 0);
  r = run("--help");
  EXPECT_EQ(r.exit_code, 0);
  EXPECT_NE(r.output.find("forward"), std::string::npos);
}

}  // namespace distill

namespace distill {

// A GPT-OSS-shaped model straight to GGUF, MXFP4 experts: info describes it, run generates from it;
// and as a directory (the Hugging Face release layout), which run reads too.
TEST(Cli, InitWritesGptOssGgufWithMxfp4Experts) {
  TempDir dir;
  const std::string gguf = dir / "go.gguf";
  test::CliResult r = test::run_distill("init --preset tiny --arch gpt_oss --experts 8 --experts-used 2 --tokenizer bytes "
                                        "--dtype q8_0 --expert-type mxfp4 -o " + gguf);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = test::run_distill("info " + gguf);
  ASSERT_EQ(r.exit_code, 0) << r.output;
  for (const char* want : {"gpt_oss", "MXFP4", "8 per layer", "top k of the logits", "active per token"})
    EXPECT_NE(r.output.find(want), std::string::npos) << want << "\n" << r.output;
  // run as it is, and with the harmony chat format (the byte vocabulary has no channel tokens: the
  // reply is all answer); a bad effort, an effort for another format and a directory output refused
  struct Case {
    std::string args;
    int exit_code;
    const char* expect;
  };
  const Case cases[] = {
      {"run " + gguf + " -p hello -n 4 --raw --temp 0", 0, "generated 4 tokens"},
      {"run " + gguf + " -p hello -n 4 --chat-template harmony --reasoning-effort high --temp 0", 0, "generated 4 tokens"},
      {"run " + gguf + " -p hello -n 4 --chat-template harmony --reasoning-effort extreme", 1, "extreme"},
      {"run " + gguf + " -p hello -n 4 --chat-template chatml --reasoning-effort high", 1, "harmony"},
      // a directory is the Hugging Face release layout: MXFP4 experts need widths in blocks of 32
      {"init --preset tiny --arch gpt_oss --tokenizer bytes -o " + (dir / "dir"), 1, "multiples of 32"},
      {"init --preset tiny --arch gpt_oss --expert-ffn 64 --tokenizer bytes -o " + (dir / "hf"), 0, "gpt_oss"},
      {"run " + (dir / "hf") + " -p hello -n 4 --raw --temp 0", 0, "generated 4 tokens"}};
  for (const Case& c : cases) {
    r = test::run_distill(c.args);
    EXPECT_EQ(r.exit_code, c.exit_code) << c.args << "\n" << r.output;
    EXPECT_NE(r.output.find(c.expect), std::string::npos) << c.args << "\n" << r.output;
  }
}

}  // namespace distill
