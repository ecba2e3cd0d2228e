// distill compare MODEL --llama-logits FILE: this engine against llama.cpp on the same tokens.
// `llama-perplexity -m MODEL.gguf -f TEXT -c N --kl-divergence-base FILE` saves llama.cpp's
// distributions (and the tokens it used); here the model runs over each of the file's chunks and
// its distributions are compared position by position, as llama-perplexity --kl-divergence
// compares two of its own runs: mean / max KL(llama.cpp ‖ distill), how often the most likely
// token is the same, and both perplexities. --max-kl / --min-top1 turn it into a check (exit 1).
#include "cli/commands.h"
#include "core/error.h"
#include "formats/llama_kld.h"
#include "model/decoder.h"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <algorithm>
#include <cmath>
#include <cstdio>

namespace distill {

namespace {

struct CompareArgs {
  std::string model, logits;
  double max_kl = -1, min_top1 = -1;
  bool json = false;
};

struct Agreement {
  int64_t n = 0, same_top1 = 0;
  double kl_sum = 0, kl_max = 0, nll_llama = 0, nll_ours = 0, top_p = 0;
};

// One scored position: llama.cpp's log-probabilities `ref` against our logits, next token `next`.
void score(Agreement& a, const float* ref, const float* logits, int64_t V, int32_t next) {
  double mx = -1e300, z = 0;
  for (int64_t i = 0; i < V; ++i) mx = std::max(mx, double(logits[i]));
  for (int64_t i = 0; i < V; ++i) z += std::exp(double(logits[i]) - mx);
  const double log_z = mx + std::log(z);  // ours: log p_i = logit_i − log Z
  // llama.cpp's values are log-probabilities rounded to 16 bits: renormalise them
  double rmx = -1e300, rz = 0;
  for (int64_t i = 0; i < V; ++i) rmx = std::max(rmx, double(ref[i]));
  for (int64_t i = 0; i < V; ++i) rz += std::exp(double(ref[i]) - rmx);
  const double ref_log_z = rmx + std::log(rz);
  double kl = 0;
  int64_t top_ref = 0, top_ours = 0;
  for (int64_t i = 0; i < V; ++i) {
    const double lp_ref = double(ref[i]) - ref_log_z, lp_ours = double(logits[i]) - log_z;
    kl += std::exp(lp_ref) * (lp_ref - lp_ours);
    if (ref[i] > ref[top_ref]) top_ref = i;
    if (logits[i] > logits[top_ours]) top_ours = i;
  }
  a.n += 1, a.same_top1 += top_ref == top_ours;
  a.kl_sum += kl, a.kl_max = std::max(a.kl_max, kl), a.top_p += std::exp(double(ref[top_ref]) - ref_log_z);
  a.nll_llama -= double(ref[next]) - ref_log_z, a.nll_ours -= double(logits[next]) - log_z;
}

void run_compare(const CompareArgs& a) {
  const LlamaLogitsFile f = LlamaLogitsFile::open(a.logits);
  const Model model = Model::load(a.model);
  const int64_t V = model.config.n_vocab;
  if (f.n_vocab() != V) fail("{}: {} tokens in the vocabulary, but {} has {}", a.logits, f.n_vocab(), a.model, V);
  for (int64_t c = 0; c < f.n_chunk(); ++c)
    for (int64_t i = 0; i < f.n_ctx(); ++i)
      if (f.tokens(c)[i] < 0 || f.tokens(c)[i] >= V) fail("{}: token {} is outside the vocabulary", a.logits, f.tokens(c)[i]);
  Decoder dec(model);
  Agreement agg;
  std::vector<float> ref(static_cast<size_t>(V));
  for (int64_t c = 0; c < f.n_chunk(); ++c) {
    const Tensor logits = dec.forward_full(f.tokens(c), 1, f.n_ctx());
    for (int64_t r = 0; r < f.rows_per_chunk(); ++r) {
      const int64_t pos = f.first() + r;
      f.log_probs(c, r, ref.data());
      score(agg, ref.data(), logits.data<float>() + pos * V, V, f.tokens(c)[pos + 1]);
    }
  }
  const double mean_kl = agg.kl_sum / double(agg.n), top1 = double(agg.same_top1) / double(agg.n);
  const double ppl_llama = std::exp(agg.nll_llama / double(agg.n)), ppl_ours = std::exp(agg.nll_ours / double(agg.n));
  if (a.json) {
    const nlohmann::json j = {{"positions", agg.n}, {"mean_kl", mean_kl}, {"max_kl", agg.kl_max}, {"same_top1", top1}, {"mean_top_p", agg.top_p / double(agg.n)},
                              {"ppl_llama_cpp", ppl_llama}, {"ppl_distill", ppl_ours}};
    std::printf("%s\n", j.dump().c_str());
  } else {
    std::printf("compare: %lld positions (%lld chunks of %lld, second halves scored) of %s against %s\n", (long long)agg.n,
                (long long)f.n_chunk(), (long long)f.n_ctx(), a.model.c_str(), a.logits.c_str());
    std::printf("  KL(llama.cpp || distill)  mean %.3g, max %.3g\n", mean_kl, agg.kl_max);
    std::printf("  same most likely token    %.2f %% (llama.cpp gives it %.3f on average)\n", 100.0 * top1, agg.top_p / double(agg.n));
    std::printf("  perplexity                llama.cpp %.4f, distill %.4f (llama.cpp's file clamps very unlikely tokens)\n",
                ppl_llama, ppl_ours);
  }
  if (a.max_kl >= 0 && mean_kl > a.max_kl) fail("compare: mean KL {:.3g} is above --max-kl {}", mean_kl, a.max_kl);
  if (a.min_top1 >= 0 && 100.0 * top1 < a.min_top1) fail("compare: same top token {:.2f} % is below --min-top1 {}", 100.0 * top1, a.min_top1);
}

}  // namespace

void register_compare(CLI::App& app) {
  auto a = std::make_shared<CompareArgs>();
  CLI::App* cmd = app.add_subcommand("compare", "Compare this engine's output distributions with llama.cpp's on the same tokens");
  cmd->add_option("model", a->model, "Model directory or GGUF file (the one llama.cpp ran)")->required();
  cmd->add_option("--llama-logits", a->logits, "File written by llama-perplexity --kl-divergence-base")->required();
  cmd->add_option("--max-kl", a->max_kl, "Fail (exit 1) if the mean KL is above this");
  cmd->add_option("--min-top1", a->min_top1, "Fail (exit 1) if the same-top-token percentage is below this");
  cmd->add_flag("--json", a->json, "One JSON line");
  cmd->callback([a] { run_compare(*a); });
}

}  // namespace distill
