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
// completion examples: the completions only). Throws if `data` has no target token. The logits
// are made `part_rows` tokens at a time (0: about 64 MiB of them, logit_part_rows), never
// [batch tokens, vocabulary] whole.
TextEval evaluate_text(const Model& model, const TokenDataset& data, int64_t part_rows = 0);

// How closely a student follows its teacher on held-out targets.
struct Fidelity {
  double top1_agreement = 0;  // fraction of positions where the argmaxes agree
  double kl = 0;              // mean KL(teacher‖student) per position, nats
  int64_t positions = 0;
};

// Against a teacher model, on the targets of `data`. Student and teacher share the token space
// (vocabularies may differ by padding rows).
Fidelity evaluate_fidelity(const Model& student, const Model& teacher, const TokenDataset& data, int64_t part_rows = 0);
// Against the soft labels of a `distill label` dataset: the teacher's top-k (both renormalised over
// those k ids) and its top-1, on the positions that have them; positions = 0 when there are none.
Fidelity evaluate_fidelity(const Model& student, const TokenDataset& labelled);

// Calls fn(ids, targets, n_rows) for batches of up to 8 rows of `data` ([n_rows, seq_len] each).
void for_each_batch(const TokenDataset& data,
                    const std::function<void(const std::vector<int32_t>&, const std::vector<int32_t>&, int64_t)>& fn);

}  // namespace distill
