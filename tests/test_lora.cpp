// LoRA: the adapter's gradients (projected from the full ones) against finite differences; a
// LoRA run learns while the frozen weights stay as they were, resumes bit for bit and writes a
// PEFT-layout adapter; `run --lora` equals running the merged model; bad adapters are refused.
#include "formats/safetensors.h"
#include "model/lora.h"
#include "model/model.h"
#include "train/lora_training.h"
#include "train/param_arena.h"
#include "train/training_pass.h"
#include "model/decoder.h"
#include "model/kv_cache.h"
#include "kernels/kernels.h"
#include "test_util.h"
#include "tiny_model.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>
#include <fstream>

namespace distill {
using test::TempDir;
namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// A tiny model whose matrices are stored as `dtype` (the frozen base of QLoRA when quantized).
Model base_of(DType dtype, int64_t width) {
  test::TinyModel tm(width, 2, 7);
  // weights N(0, (2/√width)²): activations of one scale whatever the width, so central differences
  // stay accurate on the wide (K-quant) base too
  Model m = Model::random(tm.model.config, DType::F32, 7, 2.0f / std::sqrt(float(width)));
  for (ParamRef& p : list_params(m.config, m.weights))
    if (p.is_matrix) *p.tensor = converted(*p.tensor, dtype);
  tie_lm_head(m.config, m.weights);
  return m;
}

// B starts at zero (so dA would be 0 and a forward would show no adapter): give it values.
void randomize_b(LoraTraining& lora) {
  float* p = lora.arena().data();
  const auto noise = test::random_vector(lora.arena().size(), 9, 0.3f);
  for (const ParamEntry& e : lora.arena().entries())
    if (e.name.find("lora_B") != std::string::npos)
      for (size_t i = 0; i < e.numel; ++i) p[e.offset + i] = noise[e.offset + i];
}

}  // namespace

// The adapter's gradients from the layer graph's backward (d_A, d_B formed directly, no gradient of
// the frozen base) against central differences of the loss, on an f32, a bf16 and quantized bases:
// the backward through a quantized frozen matrix widens it chunk by chunk. The forward runs the
// scalar kernels: the fast ones quantize activations to int8 against quantized weights, a rounding
// whose noise central differences would divide by 2h (it is the backward's math checked here).
TEST(Lora, AdapterGradientsMatchFiniteDifferencesOnEveryBase) {
  force_kernel_variant(KernelVariant::Ref);
  for (const auto& [dtype, width] : {std::pair{DType::F32, 16}, {DType::BF16, 16}, {DType::Q8_0, 32}, {DType::Q4_K, 256}}) {
    SCOPED_TRACE(dtype_name(dtype));
    Model m = base_of(dtype, width);
    LoraConfig cfg;
    cfg.rank = 3, cfg.alpha = 6, cfg.targets = {"q_proj", "v_proj", "down_proj"};
    LoraTraining lora(m, cfg, 5);
    randomize_b(lora);
    EXPECT_EQ(m.weights.layers[1].wq.dtype(), dtype) << "the base stays as stored";

    const int64_t T = 6;
    const int32_t ids[T] = {3, 70, 101, 9, 44, 200};
    TrainingPass pass(m, 1, T);
    const auto r = test::random_vector(size_t(T * m.config.n_vocab), 13);
    // loss = Σ logits · r: d loss / d logits = r
    auto loss = [&] {
      const float* logits = pass.forward(ids);
      double s = 0;
      for (size_t i = 0; i < r.size(); ++i) s += double(logits[i]) * r[i];
      return s;
    };
    loss();
    Tensor grads = lora.arena().new_buffer();
    ModelWeights gv = lora.grad_views(grads);
    pass.backward(r.data(), gv);
    EXPECT_FALSE(gv.layers[0].wq.defined()) << "no gradient of the frozen base";

    float* p = lora.arena().data();
    double max_fd = 0, max_err = 0;
    const float h = 1e-2f;
    const size_t stride = width > 32 ? 97 : 7;
    for (const ParamEntry& e : lora.arena().entries())
      for (size_t i = 0; i < e.numel; i += stride) {  // a spread of entries of every A and B
        const size_t at = e.offset + i;
        const double fd = test::central_difference(p[at], h, loss);
        max_fd = std::max(max_fd, std::fabs(fd));
        max_err = std::max(max_err, std::fabs(fd - double(grads.data<float>()[at])));
      }
    EXPECT_GT(max_fd, 0.1) << "the check must see real gradients";
    EXPECT_LT(max_err, 5e-3 * max_fd) << "largest |fd| " << max_fd;
  }
  force_kernel_variant(best_kernel_variant());
}

// Running W and the adapter side by side (prompt and one-token decode paths) gives the logits of
// the merged model W + s·B A.
TEST(Lora, UnmergedAdapterEqualsTheMergedModel) {
  Model m = base_of(DType::F32, 32);
  LoraConfig cfg;
  cfg.rank = 4, cfg.alpha = 8, cfg.targets = lora_modules();
  LoraTraining lora(m, cfg, 3);
  randomize_b(lora);
  const TempDir dir;
  lora.save_merged((dir / "merged"));
  const Model merged = Model::load((dir / "merged"));
  EXPECT_FALSE(merged.weights.layers[0].lora.q_proj.defined());

  const std::vector<int32_t> ids = {5, 17, 99, 3, 250, 41, 8};
  const Model base = base_of(DType::F32, 32);
  Decoder with_adapter(m), as_merged(merged), without(base);
  for (int64_t step : {int64_t(7), int64_t(1)}) {  // one prompt batch; then decode one token at a time
    KVCache c1(m.config, 1, 16, DType::F32), c2(m.config, 1, 16, DType::F32), c3(m.config, 1, 16, DType::F32);
    double max_diff = 0, max_abs = 0, adapter_effect = 0;
    for (int64_t i = 0; i < int64_t(ids.size()); i += step) {
      Batch b;
      for (int64_t t = i; t < i + step; ++t) b.add(ids[size_t(t)], int32_t(t), 0, true);
      const size_t n = size_t(b.size() * m.config.n_vocab);
      const float* g = with_adapter.forward(b, c1);
      const std::vector<float> got(g, g + n);
      const float* w = as_merged.forward(b, c2);
      const std::vector<float> want(w, w + n);
      const float* o = without.forward(b, c3);
      for (size_t j = 0; j < n; ++j) {
        max_diff = std::max(max_diff, double(std::fabs(got[j] - want[j])));
        max_abs = std::max(max_abs, double(std::fabs(want[j])));
        adapter_effect = std::max(adapter_effect, double(std::fabs(got[j] - o[j])));
      }
    }
    EXPECT_GT(adapter_effect, 0.1 * max_abs) << "the adapter must change the logits for the check to mean anything";
    EXPECT_LT(max_diff, 1e-4 * max_abs) << "step " << step;
  }
}

namespace {

test::CliResult run(const std::string& args, const std::string& env = "") { return test::run_distill(args, env); }

// Byte-level text with a strong pattern: what a tiny model can learn in a few dozen steps.
void write_text(const std::string& path) {
  std::ofstream out(path);
  for (int i = 0; i < 400; ++i) out << "the cat sat on the mat. the dog sat on the log. ";
}

const char* kArgs = " --steps 60 --batch 4 --seq-len 32 --lr 0.01 --warmup 3 --save-every 10 --eval-every 30 --seed 2";

}  // namespace

TEST(Lora, TrainsAnAdapterInPeftLayoutThatRunAndServeMerge) {
  TempDir dir;
  test::TinyModel tm(32, 2, 3);
  tm.save(dir / "base");
  write_text(dir / "text.txt");
  const std::string train = "train --student " + (dir / "base") + " --data " + (dir / "text.txt") + kArgs;

  test::CliResult r = run(train + " --lora-rank 4 -o " + (dir / "a"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("memory estimate"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("peak memory (RSS)"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("LoRA rank 4"), std::string::npos) << r.output;

  // It learned: the held-out loss far below the random base's (ln 256 ≈ 5.5 at chance).
  const double lora_loss = test::last_eval_loss(dir / "a/metrics.jsonl");
  EXPECT_GT(lora_loss, 0.0);
  EXPECT_LT(lora_loss, 2.0) << "a rank-4 adapter on every projection learns the repeated text";
  std::printf("held-out loss after 60 steps of LoRA: %.3f\n", lora_loss);

  // Only the adapted matrices changed; embeddings, norms and the head are the base's bit for bit.
  const SafetensorsFile base = SafetensorsFile::open(dir / "base/model.safetensors");
  const SafetensorsFile merged = SafetensorsFile::open(dir / "a/model.safetensors");
  int changed = 0;
  for (const std::string& name : base.names()) {
    const Tensor b = base.get(name), t = merged.get(name);
    ASSERT_EQ(b.shape(), t.shape()) << name;
    const bool same = b.nbytes() == t.nbytes() && std::memcmp(b.raw(), t.raw(), b.nbytes()) == 0;
    const bool adapted = name.find("_proj.weight") != std::string::npos;
    if (!adapted) {
      EXPECT_TRUE(same) << name << " is frozen under LoRA";
    }
    changed += adapted && !same;
  }
  EXPECT_EQ(changed, 2 * 7) << "all seven projections of both layers";

  // PEFT's layout: adapter_config.json and base_model.model.<module>.lora_{A,B}.weight, A [r, in], B [out, r].
  const json cfg = json::parse(test::read_bytes(dir / "a/adapter/adapter_config.json"));
  EXPECT_EQ(cfg["peft_type"], "LORA");
  EXPECT_EQ(cfg["task_type"], "CAUSAL_LM");
  EXPECT_EQ(cfg["r"], 4);
  EXPECT_EQ(cfg["lora_alpha"], 8.0) << "default alpha = 2 × rank";
  EXPECT_EQ(cfg["target_modules"].size(), 7u);
  EXPECT_EQ(cfg["bias"], "none");
  EXPECT_EQ(cfg["fan_in_fan_out"], false);
  const SafetensorsFile adapter = SafetensorsFile::open(dir / "a/adapter/adapter_model.safetensors");
  EXPECT_EQ(adapter.names().size(), 2u * 7 * 2);
  const Tensor qa = adapter.get("base_model.model.model.layers.1.self_attn.q_proj.lora_A.weight");
  const Tensor ub = adapter.get("base_model.model.model.layers.0.mlp.down_proj.lora_B.weight");
  EXPECT_EQ(qa.shape(), (Shape{4, 32}));
  EXPECT_EQ(ub.shape(), (Shape{32, 4}));
  EXPECT_EQ(qa.dtype(), DType::F32);

  // Base + adapter merged at load = the merged model written by train (same weights, same text).
  Model loaded = Model::load(dir / "base");
  apply_peft_adapter(loaded, dir / "a/adapter");
  const Model out = Model::load(dir / "a");
  const Tensor& w1 = loaded.weights.layers[1].w_up;
  const Tensor& w2 = out.weights.layers[1].w_up;
  EXPECT_LT(test::max_abs_diff(w1.data<float>(), w2.data<float>(), size_t(w1.numel())), 1e-6f);
  const std::string gen = " -p 'the cat' --raw --temp 0 -n 24";
  const test::CliResult with_adapter = run("run " + (dir / "base") + " --lora " + (dir / "a/adapter") + gen);
  const test::CliResult with_merged = run("run " + (dir / "a") + gen);
  ASSERT_EQ(with_adapter.exit_code, 0) << with_adapter.output;
  ASSERT_EQ(with_merged.exit_code, 0) << with_merged.output;
  const std::string note = "lora: merged " + (dir / "a/adapter") + " (rank 4, alpha 8) into " + (dir / "base") + "\n";
  ASSERT_EQ(with_adapter.output.rfind(note, 0), 0u) << with_adapter.output;
  const auto text = [](const std::string& s) { return s.substr(0, s.find("\n[prompt")); };  // not the speed line
  EXPECT_EQ(text(with_adapter.output.substr(note.size())), text(with_merged.output)) << "the same 24 greedy tokens";
  EXPECT_NE(with_merged.output.find("generated 24 tokens"), std::string::npos) << with_merged.output;

  // Killed mid-run and resumed: the same adapter bit for bit; another rank is refused on resume.
  r = run(train + " --lora-rank 4 -o " + (dir / "b"), "DISTILL_TEST_KILL_AT_STEP=37");
  EXPECT_EQ(r.exit_code, 137) << r.output;
  r = run(train + " --lora-rank 4 --resume -o " + (dir / "b"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(test::read_bytes(dir / "a/adapter/adapter_model.safetensors"), test::read_bytes(dir / "b/adapter/adapter_model.safetensors"));
  EXPECT_EQ(test::read_bytes(dir / "a/model.safetensors"), test::read_bytes(dir / "b/model.safetensors"));
  r = run(train + " --lora-rank 8 --resume -o " + (dir / "b"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("lora"), std::string::npos) << r.output;
}

// QLoRA: the adapter trained on a quantized GGUF base that stays quantized (no f32 copy of it, no
// gradient of it); the adapter alone is written, and `run` applies it beside the quantized weights.
TEST(Lora, TrainsAnAdapterOnAQuantizedGgufBase) {
  TempDir dir;
  test::TinyModel tm(32, 2, 3);
  tm.save(dir / "base");
  write_text(dir / "text.txt");
  test::CliResult r = run("convert " + (dir / "base") + " -o " + (dir / "base-q8.gguf") + " --type q8_0");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = run("train --student " + (dir / "base-q8.gguf") + " --data " + (dir / "text.txt") + kArgs + " --lora-rank 4 -o " + (dir / "q"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("base frozen as stored (Q8_0)"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("the base is quantized (Q8_0): wrote the adapter only"), std::string::npos) << r.output;
  const double loss = test::last_eval_loss(dir / "q/metrics.jsonl");
  EXPECT_GT(loss, 0.0);
  EXPECT_LT(loss, 2.0) << "the adapter learns the repeated text on the quantized base as on the f32 one";
  EXPECT_TRUE(fs::exists(dir / "q/adapter/adapter_model.safetensors"));
  EXPECT_FALSE(fs::exists(dir / "q/model.safetensors")) << "no merged model of a quantized base";

  // The adapter file on the quantized base reproduces what training measured (the text at the
  // trained length); the base alone knows nothing of it.
  auto eval_loss = [&](const std::string& lora) {
    const test::CliResult e = run("eval " + (dir / "base-q8.gguf") + lora + " --text " + (dir / "text.txt") + " --seq-len 32 --json --no-speed");
    EXPECT_EQ(e.exit_code, 0) << e.output;
    const size_t at = e.output.find('{');
    return at == std::string::npos ? -1.0 : json::parse(e.output.substr(at))["text"]["loss"].get<double>();
  };
  const double with_adapter = eval_loss(" --lora " + (dir / "q/adapter")), without = eval_loss("");
  EXPECT_NEAR(with_adapter, loss, 0.25) << "train's held-out loss " << loss;
  EXPECT_GT(without, loss + 1.0);
  const test::CliResult r2 = run("run " + (dir / "base-q8.gguf") + " --lora " + (dir / "q/adapter") + " -p 'the cat' --raw --temp 0 -n 4");
  ASSERT_EQ(r2.exit_code, 0) << r2.output;
  EXPECT_NE(r2.output.find("lora: applied " + (dir / "q/adapter") + " (rank 4, alpha 8) beside the quantized weights"), std::string::npos)
      << r2.output;
}

TEST(Lora, BadAdaptersAndOptionsAreRefusedWithTheirName) {
  TempDir dir;
  test::TinyModel tm(32, 2, 3);
  tm.save(dir / "base");
  write_text(dir / "text.txt");
  test::CliResult r = run("train --student " + (dir / "base") + " --data " + (dir / "text.txt") + kArgs +
                          " --lora-rank 4 --lora-targets q_proj,wq -o " + (dir / "x"));
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.output.find("unknown module 'wq'"), std::string::npos) << r.output;
  r = run("train --student " + (dir / "base") + " --data " + (dir / "text.txt") + kArgs + " --lora-alpha 16 -o " + (dir / "x"));
  EXPECT_EQ(r.exit_code, 1) << "an adapter option without a rank would be ignored silently";
  EXPECT_NE(r.output.find("give --lora-rank"), std::string::npos) << r.output;

  // An adapter of another model's shape, DoRA, a tensor that adapts nothing: refused, named.
  const auto write_adapter = [&](const std::string& name, const json& config, const std::string& key, Shape a_shape) {
    fs::create_directories(dir / name);
    test::write_bytes(dir / name + "/adapter_config.json", config.dump());
    SafetensorsWriter w;
    w.add(key + ".lora_A.weight", Tensor::zeros(DType::F32, a_shape));
    w.add(key + ".lora_B.weight", Tensor::zeros(DType::F32, {32, 4}));
    w.write(dir / name + "/adapter_model.safetensors");
  };
  const json ok = {{"peft_type", "LORA"}, {"r", 4}, {"lora_alpha", 8}, {"target_modules", {"q_proj"}}};
  const std::string q = "base_model.model.model.layers.0.self_attn.q_proj";
  write_adapter("shape", ok, q, {4, 64});
  json dora = ok;
  dora["use_dora"] = true;
  write_adapter("dora", dora, q, {4, 32});
  write_adapter("nothing", ok, "base_model.model.model.layers.9.self_attn.q_proj", {4, 32});
  write_adapter("good", ok, q, {4, 32});
  const std::vector<std::pair<std::string, std::string>> cases = {
      {"shape", "has A [4, 64]"}, {"dora", "DoRA"}, {"nothing", "adapts nothing"}};
  for (const auto& [name, message] : cases) {
    r = run("run " + (dir / "base") + " --lora " + (dir / name) + " -p hi -n 2 --raw");
    EXPECT_EQ(r.exit_code, 1) << name;
    EXPECT_NE(r.output.find(message), std::string::npos) << name << ": " << r.output;
  }
  r = run("run " + (dir / "base") + " --lora " + (dir / "good") + " -p hi -n 2 --raw");
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

}  // namespace distill
