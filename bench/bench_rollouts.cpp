// Rollout sampling speed (what `distill rl` spends most of its time on): P prompts × G samples
// through generate_batch, with the prompt's prefill shared by its G samples (the decode engine's
// default) and without. Prints completion tokens/s and the ratio, same run, same model.
//   ./build/bench_rollouts [--prompts P] [--group G] [--prompt-len N] [--new N] [--reps R]
#include "core/threads.h"
#include "generate/batch_generate.h"
#include "model/model.h"
#include "tokenizer/byte_vocab.h"

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>

using namespace distill;

int main(int argc, char** argv) {
  int64_t P = 4, G = 8, prompt_len = 192, n_new = 48, reps = 3;
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string a = argv[i];
    const int64_t v = std::atoll(argv[i + 1]);
    if (a == "--prompts") P = v;
    else if (a == "--group") G = v;
    else if (a == "--prompt-len") prompt_len = v;
    else if (a == "--new") n_new = v;
    else if (a == "--reps") reps = v;
    else return std::fprintf(stderr, "unknown option %s\n", argv[i]), 2;
  }
  // A 15M-parameter Llama shape (stories15m: dim 288, 6 layers) over the byte-level vocabulary.
  const TokenizerFiles files = make_byte_level_tokenizer();
  const auto tok = Tokenizer::from_json(files.tokenizer_json, files.tokenizer_config_json, "bytes");
  ModelConfig c;
  c.model_type = "llama";
  c.n_vocab = tok->vocab_size(), c.n_embd = 288, c.n_ff = 768, c.n_layer = 6, c.n_head = 6, c.n_kv_head = 6, c.head_dim = 48;
  c.max_position_embeddings = 1024;
  const Model model = Model::random(c, DType::F32, 1, 0.02f);
  std::vector<std::vector<int32_t>> prompts;
  for (int64_t p = 0; p < P; ++p) {
    std::vector<int32_t> ids;
    for (int64_t i = 0; i < prompt_len; ++i) ids.push_back(int32_t(32 + (p * 31 + i * 7) % 90));
    prompts.push_back(ids);
  }
  std::printf("rollouts: %lld prompts x %lld samples, prompt %lld tokens, %lld new tokens, %d threads\n", (long long)P,
              (long long)G, (long long)prompt_len, (long long)n_new, num_threads());
  std::printf("%-16s %12s %14s %14s\n", "prefill", "seconds", "new tok/s", "prompt copied");
  double best[2] = {0, 0};
  for (int64_t r = 0; r < reps; ++r)
    for (int share = 0; share < 2; ++share) {  // alternated: both see the same machine state
      BatchGenerateOptions o;
      o.group = G, o.max_new_tokens = n_new, o.share_prefill = share == 1;
      o.sampler.temperature = 1.0f, o.sampler.top_k = 0, o.sampler.top_p = 1.0f, o.sampler.min_p = 0.0f;
      o.sampler.seed = uint64_t(r);
      BatchGenerateStats st;
      generate_batch(model, *tok, prompts, o, &st);
      const double tps = double(st.tokens) / st.seconds;
      best[share] = std::max(best[share], tps);
      std::printf("%-16s %12.3f %14.1f %14lld\n", share ? "shared" : "per sample", st.seconds, tps,
                  (long long)st.prompt_tokens_copied);
    }
  std::printf("best of %lld: per sample %.1f tok/s, shared %.1f tok/s: %.2fx\n", (long long)reps, best[0], best[1],
              best[1] / best[0]);
  return 0;
}
