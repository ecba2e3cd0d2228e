// distill bench MODEL: llama-bench's tests for any model directory or GGUF file, in its table
// shape, so the two engines are compared on the same file with the same words:
//   pp N   prefill of N tokens in one batch (after a context of -d tokens), tokens/s
//   tg N   N single-token decode steps (after -d tokens), tokens/s
// Each test runs -r times after one warm-up; the table shows mean ± standard deviation.
// Token ids are random (speed does not depend on them); no sampling is timed, as in llama-bench.
#include "cli/commands.h"
#include "core/error.h"
#include "core/rng.h"
#include "core/threads.h"
#include "kernels/kernels.h"
#include "model/decoder.h"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <cstdio>
#include <filesystem>

namespace distill {

namespace {

struct BenchArgs {
  std::string model;
  std::vector<int64_t> prompt{512}, gen{128}, depth{0};
  int64_t reps = 5;
  bool json_out = false;
};

struct BenchResult {
  std::string test;
  int64_t n_prompt = 0, n_gen = 0, depth = 0;
  double mean = 0, sd = 0;
  std::vector<double> samples;
};

double now_s() { return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count(); }

// Fills slot 0 of the cache with `depth` tokens (not timed).
void fill_context(Decoder& dec, KVCache& cache, int64_t depth, Rng& rng, int64_t vocab) {
  Batch b;
  for (int64_t p = 0; p < depth; p += 512) {
    b.clear();
    for (int64_t i = p; i < std::min(depth, p + 512); ++i) b.add(int32_t(rng.next_u64() % uint64_t(vocab)), int32_t(i), 0, false);
    dec.forward(b, cache);
  }
}

// One timed run of a test: seconds for `n_prompt` prefilled or `n_gen` decoded tokens.
double run_once(Decoder& dec, const Model& model, int64_t n_prompt, int64_t n_gen, int64_t depth, uint64_t seed) {
  const int64_t vocab = model.config.n_vocab;
  KVCache cache(model.config, 1, depth + std::max(n_prompt, n_gen) + 1);
  Rng rng(seed);
  fill_context(dec, cache, depth, rng, vocab);
  Batch b;
  const double t0 = now_s();
  if (n_prompt > 0) {
    for (int64_t i = 0; i < n_prompt; ++i) b.add(int32_t(rng.next_u64() % uint64_t(vocab)), int32_t(depth + i), 0, i + 1 == n_prompt);
    dec.forward(b, cache);
  } else {
    for (int64_t i = 0; i < n_gen; ++i) {
      b.clear();
      b.add(int32_t(rng.next_u64() % uint64_t(vocab)), int32_t(depth + i), 0, true);
      dec.forward(b, cache);
    }
  }
  return now_s() - t0;
}

BenchResult run_test(Decoder& dec, const Model& model, int64_t n_prompt, int64_t n_gen, int64_t depth, int64_t reps) {
  BenchResult r;
  r.n_prompt = n_prompt, r.n_gen = n_gen, r.depth = depth;
  r.test = (n_prompt > 0 ? fmt::format("pp{}", n_prompt) : fmt::format("tg{}", n_gen)) +
           (depth > 0 ? fmt::format(" @ d{}", depth) : "");
  run_once(dec, model, n_prompt, n_gen, depth, 1);  // warm-up: page-in, buffers
  const double n = double(n_prompt > 0 ? n_prompt : n_gen);
  for (int64_t i = 0; i < reps; ++i) r.samples.push_back(n / run_once(dec, model, n_prompt, n_gen, depth, uint64_t(i + 2)));
  for (double x : r.samples) r.mean += x / double(reps);
  for (double x : r.samples) r.sd += (x - r.mean) * (x - r.mean);
  r.sd = reps > 1 ? std::sqrt(r.sd / double(reps - 1)) : 0.0;
  return r;
}

void run_bench(const BenchArgs& a) {
  if (a.reps < 1) fail("-r must be at least 1");
  const Model model = Model::load(a.model);
  Decoder dec(model);
  std::vector<BenchResult> results;
  for (int64_t d : a.depth) {
    if (d < 0) fail("-d {}: a depth cannot be negative", d);
    for (int64_t p : a.prompt)
      if (p > 0) results.push_back(run_test(dec, model, p, 0, d, a.reps));
    for (int64_t g : a.gen)
      if (g > 0) results.push_back(run_test(dec, model, 0, g, d, a.reps));
  }
  const std::string name = std::filesystem::path(a.model).filename().string();
  const double size_mib = double(model.stored_bytes()) / (1024.0 * 1024.0);
  const double params_m = double(model.config.n_params()) / 1e6;
  const std::string isa = kernel_variant_name(active_kernel_variant());
  // decode is bound by the weight bytes a token reads: tg's t/s times them is the read rate
  const double read_mb = double(model.decode_bytes_per_token()) / 1e6;
  auto decode_gb_s = [&](const BenchResult& r) { return r.n_gen > 0 ? r.mean * read_mb / 1e3 : 0.0; };
  if (a.json_out) {
    nlohmann::json out = nlohmann::json::array();
    for (const BenchResult& r : results)
      out.push_back({{"model", name}, {"size_mib", size_mib}, {"params_m", params_m}, {"isa", isa},
                     {"threads", num_threads()}, {"test", r.test}, {"n_prompt", r.n_prompt}, {"n_gen", r.n_gen},
                     {"depth", r.depth}, {"avg_ts", r.mean}, {"stddev_ts", r.sd}, {"samples_ts", r.samples},
                     {"weight_mb_per_token", read_mb}, {"decode_weight_gb_s", decode_gb_s(r)}});
    std::printf("%s\n", out.dump(2).c_str());
    return;
  }
  std::printf("| %-24s | %10s | %8s | %-8s | %7s | %14s | %20s |\n", "model", "size", "params", "isa", "threads", "test", "t/s");
  std::printf("| %s | %s | %s | %s | %s | %s | %s |\n", std::string(24, '-').c_str(), std::string(10, '-').c_str(),
              std::string(8, '-').c_str(), std::string(8, '-').c_str(), std::string(7, '-').c_str(),
              std::string(14, '-').c_str(), std::string(20, '-').c_str());
  for (const BenchResult& r : results)
    std::printf("| %-24s | %6.2f MiB | %6.2f M | %-8s | %7d | %14s | %12.2f ± %5.2f |\n", name.c_str(), size_mib, params_m,
                isa.c_str(), num_threads(), r.test.c_str(), r.mean, r.sd);
  std::printf("\ndecode reads %.1f MB of weights per token", read_mb);
  for (const BenchResult& r : results)
    if (r.n_gen > 0) std::printf("; %s: %.1f GB/s", r.test.c_str(), decode_gb_s(r));
  std::printf("\n");
}

}  // namespace

void register_bench(CLI::App& app) {
  auto a = std::make_shared<BenchArgs>();
  CLI::App* cmd = app.add_subcommand("bench", "Prefill and decode speed of a model (llama-bench's pp/tg tests and table)");
  cmd->add_option("model", a->model, "Model directory or GGUF file")->required();
  cmd->add_option("-p,--n-prompt", a->prompt, "Prompt lengths to prefill (pp tests; 0 for none)")->delimiter(',')->capture_default_str();
  cmd->add_option("-n,--n-gen", a->gen, "Tokens to decode (tg tests; 0 for none)")->delimiter(',')->capture_default_str();
  cmd->add_option("-d,--n-depth", a->depth, "Context already in the cache before each test")->delimiter(',')->capture_default_str();
  cmd->add_option("-r,--repetitions", a->reps, "Timed runs of each test")->capture_default_str();
  cmd->add_flag("--json", a->json_out, "One JSON array instead of the table");
  cmd->fallthrough();  // `-t N` after the model, as llama-bench takes it
  cmd->callback([a] { run_bench(*a); });
}

}  // namespace distill
