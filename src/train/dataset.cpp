#include "train/dataset.h"

#include "core/error.h"
#include "core/rng.h"
#include "train/losses.h"

#include <algorithm>

namespace distill {

TokenDataset TokenDataset::build(const std::vector<Example>& examples, int64_t seq_len, int64_t n_vocab) {
  TokenDataset d;
  d.seq_len_ = seq_len;
  const int64_t W = seq_len + 1;
  std::vector<int32_t> stream;
  for (const Example& ex : examples) {
    if (ex.k > 0) {
      if (d.k_ != 0 && d.k_ != ex.k) fail("{}: top-{} soft labels among top-{} ones", ex.where, ex.k, d.k_);
      if (ex.mask.empty()) fail("{}: soft labels need a masked (non-packed) example", ex.where);
      d.k_ = ex.k;
    }
  }
  for (const Example& ex : examples) {
    for (int32_t id : ex.ids)
      if (id >= n_vocab) fail("{}: token id {} is outside the model's vocabulary [0, {})", ex.where, id, n_vocab);
    if (ex.mask.empty()) {
      stream.insert(stream.end(), ex.ids.begin(), ex.ids.end());
      continue;
    }
    if (int64_t(ex.ids.size()) > W)
      fail("{}: example of {} tokens is longer than the context (--seq-len {} + 1)", ex.where, ex.ids.size(), seq_len);
    d.ids_.insert(d.ids_.end(), ex.ids.begin(), ex.ids.end());
    d.ids_.resize(size_t((d.n_rows_ + 1) * W), 0);  // pad
    d.mask_.insert(d.mask_.end(), ex.mask.begin(), ex.mask.end());
    d.mask_.resize(size_t((d.n_rows_ + 1) * W), 0);
    if (d.k_ > 0) {
      const size_t k = size_t(d.k_);
      if (ex.k > 0) {
        d.soft_.insert(d.soft_.end(), ex.soft.begin(), ex.soft.end());
        d.soft_ids_.insert(d.soft_ids_.end(), ex.topk_ids.begin(), ex.topk_ids.end());
        d.soft_logp_.insert(d.soft_logp_.end(), ex.topk_logp.begin(), ex.topk_logp.end());
      }
      d.soft_.resize(size_t((d.n_rows_ + 1) * W), 0);
      d.soft_ids_.resize(size_t((d.n_rows_ + 1) * W) * k, 0);
      d.soft_logp_.resize(size_t((d.n_rows_ + 1) * W) * k, 0.0f);
    }
    ++d.n_rows_;
  }
  if (d.k_ > 0 && !stream.empty()) fail("soft-labelled datasets cannot be mixed with packed plain text");
  // windows of W tokens, overlapping by one: the last token of a window is the first input of the next
  for (size_t start = 0; start + size_t(W) <= stream.size(); start += size_t(seq_len)) {
    d.ids_.insert(d.ids_.end(), stream.begin() + int64_t(start), stream.begin() + int64_t(start) + W);
    d.mask_.insert(d.mask_.end(), size_t(W), 1);
    ++d.n_rows_;
  }
  if (d.n_rows_ == 0)
    fail("the data holds {} packable tokens, fewer than one row of --seq-len {} + 1", stream.size(), seq_len);
  return d;
}

int64_t TokenDataset::n_target_tokens() const {
  int64_t n = 0;
  for (int64_t r = 0; r < n_rows_; ++r)
    for (int64_t t = 1; t <= seq_len_; ++t) n += mask_[size_t(r * (seq_len_ + 1) + t)];
  return n;
}

void TokenDataset::row(int64_t r, int32_t* ids, int32_t* targets) const {
  DISTILL_ASSERT(r >= 0 && r < n_rows_);
  const int32_t* src = ids_.data() + r * (seq_len_ + 1);
  const uint8_t* m = mask_.data() + r * (seq_len_ + 1);
  for (int64_t t = 0; t < seq_len_; ++t) {
    ids[t] = src[t];
    targets[t] = m[t + 1] ? src[t + 1] : kIgnoreIndex;  // position t predicts token t+1
  }
}

void TokenDataset::row_soft(int64_t r, uint8_t* soft, int32_t* ids, float* logp) const {
  DISTILL_ASSERT(k_ > 0 && r >= 0 && r < n_rows_);
  const size_t W = size_t(seq_len_ + 1), k = size_t(k_);
  for (int64_t t = 0; t < seq_len_; ++t) {  // position t predicts token t+1: its soft label
    const size_t src = size_t(r) * W + size_t(t) + 1;
    soft[t] = soft_[src] && mask_[src];
    std::copy_n(soft_ids_.begin() + int64_t(src * k), k, ids + t * int64_t(k));
    std::copy_n(soft_logp_.begin() + int64_t(src * k), k, logp + t * int64_t(k));
  }
}

int64_t TokenDataset::n_soft_targets() const {
  int64_t n = 0;
  for (size_t i = 0; i < soft_.size(); ++i) n += soft_[i] && mask_[i];
  return n;
}

TokenDataset TokenDataset::split_off(double fraction, uint64_t seed) {
  const int64_t n_held = std::min<int64_t>(n_rows_ - 1, int64_t(double(n_rows_) * fraction + 0.5));
  TokenDataset held;
  held.seq_len_ = seq_len_;
  held.k_ = k_;
  if (n_held <= 0) return held;
  const std::vector<int64_t> order = shuffled_indices(n_rows_, seed ^ 0x5eed5eedull, 0);
  std::vector<uint8_t> is_held(size_t(n_rows_), 0);
  for (int64_t i = 0; i < n_held; ++i) is_held[size_t(order[size_t(i)])] = 1;
  const int64_t W = seq_len_ + 1;
  TokenDataset kept;
  kept.seq_len_ = seq_len_;
  kept.k_ = k_;
  const size_t k = size_t(k_);
  for (int64_t r = 0; r < n_rows_; ++r) {
    TokenDataset& dst = is_held[size_t(r)] ? held : kept;
    dst.ids_.insert(dst.ids_.end(), ids_.begin() + r * W, ids_.begin() + (r + 1) * W);
    dst.mask_.insert(dst.mask_.end(), mask_.begin() + r * W, mask_.begin() + (r + 1) * W);
    if (k_ > 0) {
      dst.soft_.insert(dst.soft_.end(), soft_.begin() + r * W, soft_.begin() + (r + 1) * W);
      dst.soft_ids_.insert(dst.soft_ids_.end(), soft_ids_.begin() + r * W * int64_t(k), soft_ids_.begin() + (r + 1) * W * int64_t(k));
      dst.soft_logp_.insert(dst.soft_logp_.end(), soft_logp_.begin() + r * W * int64_t(k), soft_logp_.begin() + (r + 1) * W * int64_t(k));
    }
    ++dst.n_rows_;
  }
  *this = std::move(kept);
  return held;
}

}  // namespace distill
