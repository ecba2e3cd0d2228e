// Logits saved by llama.cpp's `llama-perplexity --kl-divergence-base FILE` (its "_logits_" file):
// the other engine's output distributions, read so `distill compare` can measure ours against
// them on the very same tokens. Layout (little-endian):
//   "_logits_"  uint32 n_ctx  int32 n_vocab  int32 n_chunk  int32 tokens[n_chunk · n_ctx]
//   then per chunk, for positions first .. n_ctx − 2 (first = n_ctx / 2; each row predicts the
//   next token): float scale, float min, uint16 q[n_vocab rounded up to even], with
//   log p(token i) = min + scale · q[i].
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace distill {

class MappedFile;

class LlamaLogitsFile {
public:
  // Throws distill::Error naming the file and what is wrong (magic, sizes, truncation).
  static LlamaLogitsFile open(const std::string& path);

  int64_t n_ctx() const { return n_ctx_; }
  int64_t n_vocab() const { return n_vocab_; }
  int64_t n_chunk() const { return n_chunk_; }
  int64_t first() const { return n_ctx_ / 2; }                      // first scored position of a chunk
  int64_t rows_per_chunk() const { return n_ctx_ - 1 - first(); }
  const int32_t* tokens(int64_t chunk) const;                        // [n_ctx]
  // The log-probabilities [n_vocab] predicted at position first() + row of the chunk.
  void log_probs(int64_t chunk, int64_t row, float* out) const;

private:
  std::shared_ptr<MappedFile> file_;
  int64_t n_ctx_ = 0, n_vocab_ = 0, n_chunk_ = 0;
  size_t tokens_at_ = 0, rows_at_ = 0, row_bytes_ = 0;
};

}  // namespace distill
