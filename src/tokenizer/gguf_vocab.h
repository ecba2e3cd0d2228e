// The tokenizer in GGUF metadata (tokenizer.ggml.*), in both directions:
//
//   tokenizer.ggml.model        "gpt2" (byte-level BPE) | "llama" (SentencePiece BPE, byte fallback)
//   tokenizer.ggml.pre          gpt2 pre-tokenizer: "llama-bpe" (Llama 3), "qwen2", "gpt-2", ...
//   tokenizer.ggml.tokens       [string] every token by id (added tokens included)
//   tokenizer.ggml.token_type   [i32] 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused, 6 byte
//   tokenizer.ggml.merges       [string] "a b", gpt2 only, best first
//   tokenizer.ggml.scores       [f32] llama only: merge priority of each token (higher first)
//   tokenizer.ggml.{bos,eos,unknown,padding}_token_id, add_bos_token, add_eos_token,
//   add_space_prefix (llama); tokenizer.chat_template; tokenizer.huggingface.json (optional)
//
// Reading rebuilds an ordinary tokenizer.json + tokenizer_config.json from these fields (the
// embedded tokenizer.huggingface.json is used as is when present, unless told not to), so one
// tokenizer implementation serves both formats.
#pragma once

#include "tokenizer/byte_vocab.h"

namespace distill {

class GgufFile;
class GgufWriter;

TokenizerFiles tokenizer_files_from_gguf(const GgufFile& g, bool use_embedded_json = true);

// Adds the tokenizer.ggml.* fields for these files (which must load as a Tokenizer); with
// embed_json also tokenizer.huggingface.json. Throws for a tokenizer GGUF cannot describe.
void add_tokenizer_to_gguf(GgufWriter& w, const TokenizerFiles& files, bool embed_json = true);

}  // namespace distill
