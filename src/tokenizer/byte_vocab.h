// A self-contained byte-level tokenizer: the 256 ByteLevel byte characters as tokens 0..255,
// optional merges learned from a text, and ChatML special tokens. It needs no download, so
// `distill init --tokenizer bytes`, the tests and the demo can make real tokenizer files on any
// machine; the files are ordinary tokenizer.json / tokenizer_config.json.
#pragma once

#include <cstdint>
#include <string>

namespace distill {

struct TokenizerFiles {
  std::string tokenizer_json;
  std::string tokenizer_config_json;
};

// `n_merges` BPE merges learned greedily from `training_text` (most frequent adjacent pair within
// pre-tokenised words first); 0 gives a pure byte tokenizer.
// Without `chat_template` the config has none (plain prompt/completion formats). With vocab_size
// > 0, synthetic merges of letters pad the vocabulary to exactly that many tokens (benchmark
// models of a real model's shape that llama.cpp can load).
TokenizerFiles make_byte_level_tokenizer(const std::string& training_text = "", int n_merges = 0, bool chat_template = true,
                                         int64_t vocab_size = 0);

// Writes DIR/tokenizer.json and DIR/tokenizer_config.json (atomically).
void write_tokenizer_files(const std::string& dir, const TokenizerFiles& files);

}  // namespace distill
