// A tiny random Llama-shaped model with the byte-level tokenizer: what the generation, scheduler
// and server tests run (4 heads over 2 KV heads, head_dim = width / 4, weights N(0, 0.5²)).
#pragma once

#include "model/model.h"
#include "tokenizer/byte_vocab.h"
#include "tokenizer/tokenizer.h"
#include "test_util.h"

namespace distill::test {

struct TinyModel {
  TokenizerFiles files = make_byte_level_tokenizer();
  std::shared_ptr<const Tokenizer> tok = Tokenizer::from_json(files.tokenizer_json, files.tokenizer_config_json, "bytes");
  Model model;

  explicit TinyModel(int64_t width = 32, int64_t layers = 2, uint64_t seed = 11, int64_t max_positions = 1024) {
    ModelConfig c;
    c.model_type = "llama";
    c.n_vocab = tok->vocab_size(), c.n_embd = width, c.n_ff = 2 * width, c.n_layer = layers, c.n_head = 4, c.n_kv_head = 2;
    c.head_dim = width / 4;
    c.max_position_embeddings = max_positions;
    model = Model::random(c, DType::F32, seed, 0.5f);
  }
  // A model directory the CLI can load.
  void save(const std::string& dir) const {
    model.save(dir);
    write_bytes(dir + "/tokenizer.json", files.tokenizer_json);
    write_bytes(dir + "/tokenizer_config.json", files.tokenizer_config_json);
  }
};

// Random values (N(0, 0.5²), from `seed` on) in every bias and attention sink of `m`, which a
// random model starts at 0: so a test sees each term (gpt_oss has them everywhere).
inline void randomize_biases(Model& m, uint64_t seed) {
  for (ParamRef& p : list_params(m.config, m.weights))
    if (!p.is_matrix && p.name.find("norm") == std::string::npos) {
      const auto r = random_vector(size_t(p.tensor->numel()), seed++, 0.5f);
      std::copy(r.begin(), r.end(), p.tensor->data<float>());
    }
}

}  // namespace distill::test
