// Held-out cross-entropy: the one definition used by `train` (its eval steps) and `eval`
// (perplexity). Runs the inference decoder, which shares the layer graph with training.
#pragma once

#include "model/model.h"
#include "train/dataset.h"

#include <functional>

namespace distill {

struct TextEval {
  double loss = 0;        // mean cross-entropy per predicted token (nats)
  double perplexity = 0;  // exp(loss)
  int64_t tokens = 0;
};

// Mean cross-entropy over the targets of every row of `data` (a plain text: every token; prompt /
// completion examples: the completions only). Throws if `data` has no target token.
TextEval evaluate_text(const Model& model, const TokenDataset& data);

// Calls fn(ids, targets, n_rows) for batches of up to 8 rows of `data` ([n_rows, seq_len] each).
void for_each_batch(const TokenDataset& data,
                    const std::function<void(const std::vector<int32_t>&, const std::vector<int32_t>&, int64_t)>& fn);

}  // namespace distill
