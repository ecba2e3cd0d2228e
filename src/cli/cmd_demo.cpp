// distill demo: what the engine can do today, on an embedded default, end to end on this
// machine: create a small random Llama, save it as a Hugging Face directory, load it back
// (mmap), prefill a prompt, decode greedily with the KV cache, and check that incremental
// decoding reproduces the full forward. (The full recipe — teacher, distillation, GRPO, eval —
// grows here as those stages land.)
#include "cli/commands.h"
#include "core/error.h"
#include "core/threads.h"
#include "kernels/kernels.h"
#include "model/decoder.h"

#include <CLI/CLI.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>

namespace distill {

namespace {

struct DemoArgs {
  std::string out_dir = "demo-out";
  int n_prompt = 128, n_decode = 64;
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

int32_t argmax(const float* row, int64_t n) { return int32_t(std::max_element(row, row + n) - row); }

void run_demo(const DemoArgs& a) {
  ModelConfig c;
  c.model_type = "llama";
  c.n_vocab = 32000, c.n_embd = 288, c.n_ff = 768, c.n_layer = 6, c.n_head = 6, c.n_kv_head = 6;
  c.head_dim = 48, c.max_position_embeddings = 1024, c.norm_eps = 1e-5;
  std::printf("distill demo — %d threads, %s kernels\n", num_threads(), kernel_variant_name(active_kernel_variant()));
  std::printf("[1/4] creating a random Llama of the stories15m shape (%.1f M parameters) in %s\n",
              double(c.n_params()) / 1e6, a.out_dir.c_str());
  Model::random(c, DType::F32, 42).save(a.out_dir + "/model-15m");

  std::printf("[2/4] loading it back from the Hugging Face layout (mmap, zero-copy)\n");
  const Model model = Model::load(a.out_dir + "/model-15m");
  Decoder decoder(model);

  const int64_t n_ctx = a.n_prompt + a.n_decode;
  KVCache cache(model.config, 1, n_ctx);
  std::vector<int32_t> tokens;
  for (int i = 0; i < a.n_prompt; ++i) tokens.push_back(int32_t((i * 7919 + 13) % c.n_vocab));
  Batch b;
  for (int i = 0; i < a.n_prompt; ++i) b.add(tokens[size_t(i)], i, 0, i == a.n_prompt - 1);
  auto t0 = std::chrono::steady_clock::now();
  const float* logits = decoder.forward(b, cache);
  const double prefill_s = seconds_since(t0);
  std::printf("[3/4] prefill %d tokens: %.0f tokens/s\n", a.n_prompt, a.n_prompt / prefill_s);

  t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < a.n_decode; ++i) {
    tokens.push_back(argmax(logits, c.n_vocab));
    b.clear();
    b.add(tokens.back(), int32_t(tokens.size() - 1), 0, true);
    logits = decoder.forward(b, cache);
  }
  const double decode_s = seconds_since(t0);
  std::printf("      greedy decode %d tokens: %.0f tokens/s\n", a.n_decode, a.n_decode / decode_s);

  // The same sequence in one full forward must give the same last-token logits.
  std::vector<float> last(logits, logits + c.n_vocab);
  const Tensor full = decoder.forward_full(tokens.data(), 1, int64_t(tokens.size()) - 0);
  const float* full_prev = full.data<float>() + (int64_t(tokens.size()) - 1) * c.n_vocab;
  float max_diff = 0.0f;
  for (int64_t v = 0; v < c.n_vocab; ++v) max_diff = std::max(max_diff, std::fabs(full_prev[v] - last[size_t(v)]));
  std::printf("[4/4] KV-cache decode vs full forward: max |Δlogit| = %.2e %s\n", max_diff,
              max_diff < 1e-3f ? "(match)" : "(MISMATCH)");
  if (!(max_diff < 1e-3f)) fail("incremental decode does not reproduce the full forward");
  std::printf("\nTry: distill forward %s/model-15m --ids IDS.safetensors -o logits.safetensors\n", a.out_dir.c_str());
}

}  // namespace

void register_demo(CLI::App& app) {
  auto args = std::make_shared<DemoArgs>();
  CLI::App* cmd = app.add_subcommand("demo", "Show the engine end to end on an embedded default");
  cmd->add_option("-o,--out", args->out_dir, "Directory for the demo's models")->capture_default_str();
  cmd->add_option("--prompt-tokens", args->n_prompt, "Prompt length")->capture_default_str()->check(CLI::Range(1, 4096));
  cmd->add_option("--decode-tokens", args->n_decode, "Tokens to decode")->capture_default_str()->check(CLI::Range(1, 4096));
  cmd->callback([args] { run_demo(*args); });
}

}  // namespace distill
