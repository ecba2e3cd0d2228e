#include "train/text_eval.h"

#include "core/error.h"
#include "model/decoder.h"
#include "train/losses.h"

#include <algorithm>
#include <cmath>

namespace distill {

void for_each_batch(const TokenDataset& data,
                    const std::function<void(const std::vector<int32_t>&, const std::vector<int32_t>&, int64_t)>& fn) {
  const int64_t B = 8, T = data.seq_len();
  std::vector<int32_t> in(size_t(B * T)), tg(size_t(B * T));
  for (int64_t r0 = 0; r0 < data.n_rows(); r0 += B) {
    const int64_t rows = std::min(B, data.n_rows() - r0);
    for (int64_t b = 0; b < rows; ++b) data.row(r0 + b, in.data() + b * T, tg.data() + b * T);
    fn(in, tg, rows);
  }
}

TextEval evaluate_text(const Model& model, const TokenDataset& data) {
  Decoder dec(model);
  TextEval r;
  double total = 0;
  const int64_t T = data.seq_len();
  for_each_batch(data, [&](const std::vector<int32_t>& in, const std::vector<int32_t>& tg, int64_t rows) {
    const Tensor logits = dec.forward_full(in.data(), rows, T);
    int64_t n = 0;
    for (int64_t i = 0; i < rows * T; ++i) n += tg[size_t(i)] != kIgnoreIndex;
    if (n == 0) return;
    total += cross_entropy_forward(logits.data<float>(), tg.data(), rows * T, model.config.n_vocab) * double(n);
    r.tokens += n;
  });
  if (r.tokens == 0) fail("the evaluation data has no target tokens");
  r.loss = total / double(r.tokens);
  r.perplexity = std::exp(r.loss);
  return r;
}

}  // namespace distill
