// KVCache: keys and values of every layer for a number of sequence slots, each holding up to
// n_ctx positions. Slot s position p of layer il lives at k[il][s][p] ([n_kv_head, head_dim]).
// Keys are stored after RoPE, so decoding never re-reads or re-rotates the prompt.
#pragma once

#include "core/tensor.h"
#include "model/config.h"

#include <vector>

namespace distill {

struct KVCache {
  KVCache() = default;
  KVCache(const ModelConfig& c, int64_t n_slots, int64_t n_ctx);

  int64_t n_slots = 0;
  int64_t n_ctx = 0;
  std::vector<Tensor> k, v;  // per layer, f32 [n_slots, n_ctx, n_kv_head, head_dim]

  size_t nbytes() const;
};

}  // namespace distill
