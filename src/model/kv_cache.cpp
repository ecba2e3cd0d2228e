#include "model/kv_cache.h"

#include "core/error.h"

#include <algorithm>
#include <atomic>
#include <cstring>

namespace distill {

namespace {
std::atomic<DType> g_default_type{DType::F16};

void check_cache_type(DType t) {
  if (t != DType::F16 && t != DType::F32) fail("a KV cache holds f16 or f32, not {}", dtype_name(t));
}
}  // namespace

int64_t kv_rows_per_slot(const ModelConfig& c, int64_t il, int64_t n_ctx, int64_t slack) {
  const int64_t w = c.window_of(il);
  return w > 0 ? std::min(n_ctx, w + slack) : n_ctx;
}

DType default_kv_cache_type() { return g_default_type.load(); }

void set_default_kv_cache_type(DType t) {
  check_cache_type(t);
  g_default_type.store(t);
}

KVCache::KVCache(const ModelConfig& c, int64_t slots, int64_t ctx, DType t, int64_t slack)
    : n_slots(slots), n_ctx(ctx), type(t) {
  check_cache_type(t);
  DISTILL_ASSERT(slack > 0);
  row_bytes_ = dtype_bytes(type, c.kv_dim());
  for (int64_t il = 0; il < c.n_layer; ++il) {
    rows.push_back(kv_rows_per_slot(c, il, n_ctx, slack));
    window.push_back(c.window_of(il));
    first_pos.emplace_back(size_t(n_slots), 0);
    k.push_back(Tensor::zeros(type, {n_slots, rows.back(), c.n_kv_head, c.head_dim}));
    v.push_back(Tensor::zeros(type, {n_slots, rows.back(), c.n_kv_head, c.head_dim}));
  }
}

int64_t KVCache::max_run() const {
  int64_t run = n_ctx;
  for (size_t il = 0; il < rows.size(); ++il)
    if (windowed(il)) run = std::min(run, rows[il] - window[il] + 1);  // hi − first < rows with first = lo − window + 1
  return run;
}

void KVCache::make_room(int64_t slot, int64_t lo, int64_t hi) {
  for (size_t il = 0; il < rows.size(); ++il) {
    if (!windowed(il)) continue;
    int64_t& first = first_pos[il][size_t(slot)];
    const int64_t keep = std::max<int64_t>(0, lo - window[il] + 1);  // the window of position lo starts here
    if (keep < first && keep < lo)
      fail("KV cache slot {} continued at position {}, but its sliding-window layers only kept positions from {}",
           slot, lo, first);
    if (keep < first) first = keep;  // nothing before lo is needed: start over
    if (hi - first < rows[il]) continue;
    DISTILL_ASSERT(hi - keep < rows[il]);
    // Slide rows keep..lo−1 (those written) to the front of the slot.
    const int64_t from = keep - first, n = std::max<int64_t>(0, std::min(lo, first + rows[il]) - keep);
    for (Tensor* t : {&k[il], &v[il]}) {
      auto* base = static_cast<uint8_t*>(t->raw()) + size_t(slot * rows[il]) * row_bytes_;
      if (n > 0) std::memmove(base, base + size_t(from) * row_bytes_, size_t(n) * row_bytes_);
    }
    first = keep;
  }
}

bool KVCache::holds_prefix(int64_t slot, int64_t n) const {
  for (size_t il = 0; il < rows.size(); ++il)
    if (windowed(il) && n > 0 && first_pos[il][size_t(slot)] > std::max<int64_t>(0, n - window[il] + 1)) return false;
  return true;
}

bool KVCache::copy_prefix(int64_t from, int64_t to, int64_t n) {
  if (!holds_prefix(from, n)) return false;
  for (size_t il = 0; il < rows.size(); ++il) {
    const int64_t first = first_pos[il][size_t(from)], count = n - first;  // rows 0..count−1 of `from`
    DISTILL_ASSERT(count <= rows[il]);
    for (Tensor* t : {&k[il], &v[il]}) {
      auto* base = static_cast<uint8_t*>(t->raw());
      if (count > 0)
        std::memcpy(base + size_t(to * rows[il]) * row_bytes_, base + size_t(from * rows[il]) * row_bytes_,
                    size_t(count) * row_bytes_);
    }
    first_pos[il][size_t(to)] = first;
  }
  return true;
}

size_t KVCache::nbytes() const {
  size_t n = 0;
  for (const Tensor& t : k) n += t.nbytes();
  return 2 * n;
}

size_t kv_cache_bytes(const ModelConfig& c, int64_t n_slots, int64_t n_ctx, DType type, int64_t slack) {
  size_t rows = 0;
  for (int64_t il = 0; il < c.n_layer; ++il) rows += size_t(kv_rows_per_slot(c, il, n_ctx, slack));
  return 2 * size_t(n_slots) * rows * dtype_bytes(type, c.kv_dim());
}

}  // namespace distill
