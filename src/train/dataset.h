// Training data as fixed-length rows of token ids with a loss mask (examples.h reads the files).
//
// Packing: packable examples are concatenated (each followed by nothing: documents carry their
// own BOS/EOS) and cut into windows of seq_len + 1 tokens, consecutive windows sharing one token.
// Masked examples get a row each, padded; one longer than seq_len + 1 is refused.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace distill {

struct Example {
  std::vector<int32_t> ids;
  std::vector<uint8_t> mask;  // empty: every position is a target and the example is packable
  std::string where;          // "file.jsonl:12", for messages
  // Teacher soft labels (from a `distill label` dataset): for token t, the teacher's top-k over
  // what token t should be, where soft[t] is 1.
  int k = 0;
  std::vector<uint8_t> soft;        // [ids.size()]
  std::vector<int32_t> topk_ids;    // [ids.size(), k]
  std::vector<float> topk_logp;     // [ids.size(), k]
};

class TokenDataset {
public:
  // Builds rows of seq_len + 1 ids. Throws for ids outside [0, n_vocab) and over-long examples.
  static TokenDataset build(const std::vector<Example>& examples, int64_t seq_len, int64_t n_vocab);

  int64_t n_rows() const { return n_rows_; }
  int64_t seq_len() const { return seq_len_; }
  int64_t n_target_tokens() const;
  // Input ids [seq_len] and targets [seq_len] (-100 where no loss) of row r.
  void row(int64_t r, int32_t* ids, int32_t* targets) const;
  // Soft labels of row r's targets: soft [seq_len], ids/logp [seq_len, k]. Only when k() > 0.
  void row_soft(int64_t r, uint8_t* soft, int32_t* ids, float* logp) const;
  int k() const { return k_; }
  int64_t n_soft_targets() const;
  // Moves every k-th row (by a seeded shuffle) into a held-out set; returns it.
  TokenDataset split_off(double fraction, uint64_t seed);

private:
  int64_t seq_len_ = 0, n_rows_ = 0;
  std::vector<int32_t> ids_;   // [n_rows, seq_len + 1]
  std::vector<uint8_t> mask_;  // [n_rows, seq_len + 1]: 1 = this token is a target
  int k_ = 0;
  std::vector<uint8_t> soft_;       // [n_rows, seq_len + 1]
  std::vector<int32_t> soft_ids_;   // [n_rows, seq_len + 1, k]
  std::vector<float> soft_logp_;    // [n_rows, seq_len + 1, k]
};

}  // namespace distill
