// distill watermark detect: is a text watermarked with our key? distill provenance test: was a
// suspect model trained on our watermarked answers (the radioactivity test)?
#include "cli/commands.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "eval/radioactivity.h"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cctype>
#include <cstdio>
#include <sstream>

namespace distill {

namespace {

// The watermark's secret and shape: the same flags as `distill serve`.
struct WatermarkArgs {
  std::string key, key_file;
  WatermarkSettings w;
  bool json_out = false;

  void add_to(CLI::App* cmd) {
    cmd->add_option("--key-file", key_file, "File holding the watermark's secret (as given to `serve --watermark-key-file`)");
    cmd->add_option("--key", key, "The watermark's secret itself");
    cmd->add_option("--gamma", w.gamma, "Share of green tokens (as served)")->capture_default_str()->check(CLI::Range(0.01f, 0.99f));
    cmd->add_option("--context", w.context, "Previous tokens hashed into the green list (as served)")->capture_default_str()->check(CLI::Range(1, 8));
    cmd->add_flag("--json", json_out, "One JSON object instead of the text report");
  }
  WatermarkSettings settings() const {
    if (key.empty() == key_file.empty()) fail("give the watermark's secret: --key-file FILE or --key SECRET");
    std::string secret = key;
    if (!key_file.empty()) {
      secret = read_text_file(key_file, "watermark key file");
      while (!secret.empty() && std::isspace(uint8_t(secret.back()))) secret.pop_back();
    }
    if (secret.empty()) fail("the watermark's secret is empty");
    WatermarkSettings s = w;
    s.key = watermark_key_from_secret(secret);
    return s;
  }
};

nlohmann::json score_json(const WatermarkScore& s) {
  return {{"tokens", s.tokens}, {"green", s.green}, {"repeats_skipped", s.repeats}, {"z", s.z}, {"p_value", s.p_value}};
}

struct DetectArgs {
  WatermarkArgs wm;
  std::string text, file, tokenizer;
};

void detect(const DetectArgs& a) {
  const WatermarkSettings w = a.wm.settings();
  if (a.text.empty() == a.file.empty()) fail("give the text to test: TEXT or --file FILE");
  const std::string text = a.file.empty() ? a.text : read_text_file(a.file, "text to test");
  const auto tok = Tokenizer::load(a.tokenizer);
  WatermarkDetector d(w);
  d.add(tok->encode(text, false));
  const WatermarkScore s = d.score();
  const bool marked = s.p_value < 1e-3;
  if (a.wm.json_out) {
    nlohmann::json j = score_json(s);
    j["watermarked"] = marked;
    std::printf("%s\n", j.dump(2).c_str());
    return;
  }
  std::printf("scored tokens %lld (%lld repeats skipped), green %lld (%.1f%%, %.0f%% expected without the watermark)\n",
              (long long)s.tokens, (long long)s.repeats, (long long)s.green, s.tokens ? 100.0 * double(s.green) / double(s.tokens) : 0.0,
              100.0 * w.gamma);
  std::printf("z = %.2f, p = %.3g: %s\n", s.z, s.p_value,
              marked ? "watermarked with this key" : s.tokens < 50 ? "not enough tokens to tell (50+ recommended)" : "no watermark of this key");
}

struct ProvenanceArgs {
  WatermarkArgs wm;
  std::string model, prompts;
  RadioactivityOptions o;
};

void provenance_test(ProvenanceArgs& a) {
  const WatermarkSettings w = a.wm.settings();
  const Model model = Model::load(a.model);
  const auto tok = Tokenizer::load(a.model);
  if (!a.prompts.empty()) {
    std::istringstream in(read_text_file(a.prompts, "prompts file"));
    std::string line;
    while (std::getline(in, line))
      if (!line.empty()) a.o.prompts.push_back(tok->encode(line, true));
    if (a.o.prompts.empty()) fail("{}: no prompts (one per line)", a.prompts);
  }
  const RadioactivityResult r = radioactivity_test(model, *tok, w, a.o);
  if (a.wm.json_out) {
    const nlohmann::json j = {{"contexts", r.contexts}, {"green_mass", r.green_mass}, {"z", r.z}, {"p_value", r.p_value},
                              {"sampled_tokens", r.sampled_tokens}, {"sampled_test", score_json(r.sampled)},
                              {"verdict", radioactivity_verdict(r.p_value)}};
    std::printf("%s\n", j.dump(2).c_str());
    return;
  }
  std::printf("%s: %lld tokens sampled and read back in %.1f s\n", a.model.c_str(), (long long)r.sampled_tokens, r.seconds);
  std::printf("  next-token distributions at %lld distinct contexts: %.2f%% of the probability on green tokens (%.0f%% by chance)\n",
              (long long)r.contexts, 100.0 * r.green_mass, 100.0 * w.gamma);
  std::printf("  sampled tokens: %lld distinct (context, token) pairs, %lld green (z %.2f, p %.3g)\n", (long long)r.sampled.tokens,
              (long long)r.sampled.green, r.sampled.z, r.sampled.p_value);
  std::printf("z = %.2f, p = %.3g: %s\n", r.z, r.p_value, radioactivity_verdict(r.p_value));
}

}  // namespace

void register_watermark(CLI::App& app) {
  auto d = std::make_shared<DetectArgs>();
  CLI::App* wm = app.add_subcommand("watermark", "Watermarks of `distill serve` answers");
  wm->require_subcommand(1);
  CLI::App* det = wm->add_subcommand("detect", "Does a text carry the watermark of a key? (z-score, p-value)");
  det->add_option("text", d->text, "The text (or --file)");
  det->add_option("--file", d->file, "Read the text from a file");
  det->add_option("--tokenizer", d->tokenizer, "Model directory or GGUF whose tokenizer the server used")->required();
  d->wm.add_to(det);
  det->callback([d] { detect(*d); });

  auto p = std::make_shared<ProvenanceArgs>();
  CLI::App* prov = app.add_subcommand("provenance", "Evidence of who trained on our answers");
  prov->require_subcommand(1);
  CLI::App* test = prov->add_subcommand("test", "Radioactivity test: was SUSPECT trained on our watermarked answers? (p-value)");
  test->add_option("suspect", p->model, "The suspect model (directory or GGUF; its tokenizer must be the server's)")->required();
  test->add_option("--prompts", p->prompts, "Prompts to sample from, one per line (default: the BOS token alone)");
  test->add_option("--samples", p->o.samples, "Sequences to sample")->capture_default_str()->check(CLI::Range(1, 1000000));
  test->add_option("--tokens", p->o.max_new_tokens, "Tokens per sequence")->capture_default_str()->check(CLI::Range(1, 1 << 20));
  test->add_option("--temperature", p->o.temperature, "Sampling temperature")->capture_default_str()->check(CLI::Range(0.05f, 5.0f));
  test->add_option("--seed", p->o.seed, "Sampling seed")->capture_default_str();
  p->wm.add_to(test);
  test->callback([p] { provenance_test(*p); });
}

}  // namespace distill
