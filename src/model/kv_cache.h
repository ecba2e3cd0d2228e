// KVCache: keys and values of every layer for a number of sequence slots, each holding up to
// n_ctx positions. Slot s position p of layer il lives at k[il][s][p] ([n_kv_head, head_dim]).
// Keys are stored after RoPE, so decoding never re-reads or re-rotates the prompt. Elements are
// f16 by default (half the memory, and half the bytes each decode step reads at depth; rounded
// once when stored, as llama.cpp's default cache) or f32 (`distill --kv-cache f32 …`, and the
// full-sequence scoring of Decoder::forward_full).
#pragma once

#include "core/tensor.h"
#include "model/config.h"

#include <vector>

namespace distill {

// The element type new caches get unless told otherwise: F16, or what set_default_kv_cache_type
// chose (the CLI's --kv-cache, once, before any work).
DType default_kv_cache_type();
void set_default_kv_cache_type(DType t);  // F16 or F32

struct KVCache {
  KVCache() = default;
  KVCache(const ModelConfig& c, int64_t n_slots, int64_t n_ctx, DType type = default_kv_cache_type());

  int64_t n_slots = 0;
  int64_t n_ctx = 0;
  DType type = DType::F16;
  std::vector<Tensor> k, v;  // per layer, [n_slots, n_ctx, n_kv_head, head_dim] of `type`

  size_t nbytes() const;
  // Bytes of one position of one layer's keys (or values).
  size_t row_bytes() const;
};

}  // namespace distill
