#include "model/kv_cache.h"

namespace distill {

KVCache::KVCache(const ModelConfig& c, int64_t slots, int64_t ctx) : n_slots(slots), n_ctx(ctx) {
  for (int64_t il = 0; il < c.n_layer; ++il) {
    k.push_back(Tensor::zeros(DType::F32, {n_slots, n_ctx, c.n_kv_head, c.head_dim}));
    v.push_back(Tensor::zeros(DType::F32, {n_slots, n_ctx, c.n_kv_head, c.head_dim}));
  }
}

size_t KVCache::nbytes() const {
  size_t n = 0;
  for (const Tensor& t : k) n += t.nbytes();
  return 2 * n;
}

}  // namespace distill
