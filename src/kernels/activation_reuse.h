// Decode matvecs that read the same input row (q/k/v, gate/up, a mixture's chosen experts) run as
// one batch (matvec_batch, kernels/matmul.cpp): one parallel region instead of one per matrix. Inside
// a batch the inputs do not change, so each thread quantizes an input once per form a kernel reads
// (Q8_0 pairs, Q8_K in Q4_K's order, …) and reuses it for every matrix of its share. Outside a batch
// nothing is reused: a caller may rewrite x between two calls at the same address.
#pragma once

#include <atomic>
#include <cstdint>

namespace distill {

// The batch this thread is running (0: none).
inline thread_local uint64_t t_activation_scope = 0;

// Which input a kernel's prepared-activation buffers hold.
struct PreparedActivationKey {
  uint64_t scope = 0;
  const float* x = nullptr;
  int64_t K = 0;
};

// True when `key`'s buffers already hold x (same batch, same address and length); otherwise
// records x as what the caller is about to prepare into them and returns false.
inline bool activation_prepared(PreparedActivationKey& key, const float* x, int64_t K) {
  if (t_activation_scope != 0 && key.scope == t_activation_scope && key.x == x && key.K == K) return true;
  key = {t_activation_scope, x, K};
  return false;
}

// Marks this thread as running batch `id` for the scope's lifetime; every thread of the batch's
// region enters with the same id (new_id(), taken once per batch).
class ActivationScope {
 public:
  explicit ActivationScope(uint64_t id) : saved_(t_activation_scope) { t_activation_scope = id; }
  ~ActivationScope() { t_activation_scope = saved_; }
  ActivationScope(const ActivationScope&) = delete;
  ActivationScope& operator=(const ActivationScope&) = delete;
  static uint64_t new_id() { return next().fetch_add(1) + 1; }

 private:
  static std::atomic<uint64_t>& next() {
    static std::atomic<uint64_t> n{0};
    return n;
  }
  uint64_t saved_;
};

}  // namespace distill
