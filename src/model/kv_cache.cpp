#include "model/kv_cache.h"

#include "core/error.h"

#include <atomic>

namespace distill {

namespace {
std::atomic<DType> g_default_type{DType::F16};

void check_cache_type(DType t) {
  if (t != DType::F16 && t != DType::F32) fail("a KV cache holds f16 or f32, not {}", dtype_name(t));
}
}  // namespace

DType default_kv_cache_type() { return g_default_type.load(); }

void set_default_kv_cache_type(DType t) {
  check_cache_type(t);
  g_default_type.store(t);
}

KVCache::KVCache(const ModelConfig& c, int64_t slots, int64_t ctx, DType t) : n_slots(slots), n_ctx(ctx), type(t) {
  check_cache_type(t);
  for (int64_t il = 0; il < c.n_layer; ++il) {
    k.push_back(Tensor::zeros(type, {n_slots, n_ctx, c.n_kv_head, c.head_dim}));
    v.push_back(Tensor::zeros(type, {n_slots, n_ctx, c.n_kv_head, c.head_dim}));
  }
}

size_t KVCache::nbytes() const {
  size_t n = 0;
  for (const Tensor& t : k) n += t.nbytes();
  return 2 * n;
}

size_t KVCache::row_bytes() const { return k.empty() ? 0 : k[0].nbytes() / size_t(n_slots * n_ctx); }

}  // namespace distill
