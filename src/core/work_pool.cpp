#include "core/work_pool.h"

#include "core/threads.h"

#include <omp.h>
#include <sched.h>
#include <strings.h>

#include <algorithm>
#include <atomic>
#include <cstdlib>
#include <exception>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace distill {

namespace {

thread_local bool t_in_pool = false;

// How long a worker spins for the next loop before it sleeps: none under OMP_WAIT_POLICY=passive
// (processes sharing the cores, as ctest's side-by-side tests; the same setting as OpenMP's).
int worker_spins() {
  static const int spins = [] {
    const char* p = std::getenv("OMP_WAIT_POLICY");
    return p && strcasecmp(p, "passive") == 0 ? 0 : 20000;
  }();
  return spins;
}

inline void cpu_relax() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#endif
}

// The loop being run is published as (generation, next chunk) in one 64-bit word: a thread claims
// chunk c of generation g by moving (g, c) to (g, c + 1). The loop's fields (function, context,
// chunk count) are written before (g, 0) is published and rewritten only after every chunk of g
// has finished; a claim of g succeeds only while chunks of g are left, so whoever claims a chunk
// of g read g's fields.
constexpr int kChunkBits = 32;
inline uint64_t make_state(uint64_t gen, uint64_t next) { return gen << kChunkBits | next; }
inline uint64_t gen_of(uint64_t s) { return s >> kChunkBits; }
inline int64_t next_of(uint64_t s) { return int64_t(s & ((uint64_t(1) << kChunkBits) - 1)); }

class Pool {
 public:
  explicit Pool(int n_workers) {
    for (int i = 0; i < n_workers; ++i) workers_.emplace_back([this] { work(); });
  }
  ~Pool() {
    stop_.store(true);
    epoch_.fetch_add(1);
    epoch_.notify_all();
    for (auto& t : workers_) t.join();
  }
  int threads() const { return int(workers_.size()) + 1; }
  std::mutex& busy() { return busy_; }

  void run(int64_t n, void (*fn)(void*, int64_t), void* ctx) {
    fn_.store(fn, std::memory_order_relaxed);
    ctx_.store(ctx, std::memory_order_relaxed);
    n_.store(n, std::memory_order_relaxed);
    done_.store(0, std::memory_order_relaxed);
    failed_.store(false, std::memory_order_relaxed);
    error_ = nullptr;
    const uint64_t gen = ++gen_;
    state_.store(make_state(gen, 0));  // seq_cst: ordered before the sleepers check below
    epoch_.fetch_add(1);
    if (sleepers_.load() > 0) epoch_.notify_all();
    claim_chunks(gen);
    // Wait for chunks other threads claimed; yield the core after a while (their thread may be the
    // one waiting for it).
    for (int spins = 0; done_.load(std::memory_order_acquire) < n; ++spins) {
      if (spins < 4096) cpu_relax();
      else sched_yield();
    }
    if (error_) std::rethrow_exception(error_);
  }

 private:
  // Claims and runs chunks of generation `gen` until none are left.
  void claim_chunks(uint64_t gen) {
    uint64_t s = state_.load(std::memory_order_acquire);
    for (;;) {
      if (gen_of(s) != gen) return;
      auto* fn = fn_.load(std::memory_order_relaxed);
      void* ctx = ctx_.load(std::memory_order_relaxed);
      const int64_t n = n_.load(std::memory_order_relaxed);
      if (next_of(s) >= n) return;
      if (!state_.compare_exchange_weak(s, s + 1, std::memory_order_acq_rel, std::memory_order_acquire)) continue;
      if (!failed_.load(std::memory_order_relaxed)) {
        try {
          fn(ctx, next_of(s));
        } catch (...) {
          std::lock_guard<std::mutex> lock(error_mutex_);
          if (!error_) error_ = std::current_exception();
          failed_.store(true, std::memory_order_relaxed);
        }
      }
      done_.fetch_add(1, std::memory_order_release);
      s = state_.load(std::memory_order_acquire);
    }
  }

  void work() {
    t_in_pool = true;
    uint64_t seen = 0;  // the last generation this worker took part in
    for (;;) {
      uint64_t s = state_.load(std::memory_order_acquire);
      // Spin a while for the next loop (a decode step's loops follow each other by microseconds),
      // then sleep until run() or the destructor bumps the epoch.
      for (int spins = 0; gen_of(s) == seen && !stop_.load(std::memory_order_relaxed); ++spins) {
        if (spins < worker_spins()) {
          cpu_relax();
        } else {
          const uint32_t e = epoch_.load();
          sleepers_.fetch_add(1);
          if (gen_of(state_.load()) == seen && !stop_.load()) epoch_.wait(e);
          sleepers_.fetch_sub(1);
          spins = 0;
        }
        s = state_.load(std::memory_order_acquire);
      }
      if (stop_.load()) return;
      seen = gen_of(s);
      claim_chunks(seen);
    }
  }

  std::vector<std::thread> workers_;
  std::mutex busy_;  // one run() at a time
  uint64_t gen_ = 0;  // the caller's count (under busy_)
  // Claims, completions and the loop's fields each on their own cache line: a thread polling one
  // does not pull the line another thread is writing.
  alignas(64) std::atomic<uint64_t> state_{0};
  alignas(64) std::atomic<int64_t> done_{0};
  alignas(64) std::atomic<void (*)(void*, int64_t)> fn_{nullptr};
  std::atomic<void*> ctx_{nullptr};
  std::atomic<int64_t> n_{0};
  std::atomic<bool> failed_{false}, stop_{false};
  std::mutex error_mutex_;
  std::exception_ptr error_;
  std::atomic<uint32_t> epoch_{0};
  std::atomic<int> sleepers_{0};
};

// The pool for num_threads(), replaced when that count changes. Pools are never destroyed (a
// thread may still hold the old one; its workers sleep): counts change at start-up and in tests.
std::mutex g_pool_guard;
std::atomic<Pool*> g_pool{nullptr};

Pool* pool_for(int threads) {
  Pool* p = g_pool.load(std::memory_order_acquire);
  if (p && p->threads() == threads) return p;
  std::lock_guard<std::mutex> lock(g_pool_guard);
  p = g_pool.load();
  if (!p || p->threads() != threads) g_pool.store(p = new Pool(threads - 1));
  return p;
}

}  // namespace

bool in_work_pool() { return t_in_pool; }

int64_t chunks_for(int64_t n) { return std::min<int64_t>(n, int64_t(num_threads()) * 4); }

void run_chunks(int64_t n_chunks, void (*chunk)(void*, int64_t), void* ctx) {
  const int threads = num_threads();
  auto serial = [&] {
    for (int64_t c = 0; c < n_chunks; ++c) chunk(ctx, c);
  };
  if (n_chunks <= 1 || threads <= 1 || t_in_pool || omp_in_parallel()) return serial();
  static const bool use_openmp = [] { const char* e = std::getenv("DISTILL_WORK_POOL"); return e && std::string(e) == "0"; }();
  if (use_openmp) {  // DISTILL_WORK_POOL=0: OpenMP's static split instead (to compare)
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < n_chunks; ++c) chunk(ctx, c);
    return;
  }
  Pool* pool = pool_for(threads);
  std::unique_lock<std::mutex> lock(pool->busy(), std::try_to_lock);
  if (!lock.owns_lock()) return serial();
  t_in_pool = true;
  struct Leave {
    ~Leave() { t_in_pool = false; }
  } leave;
  pool->run(n_chunks, chunk, ctx);
}

}  // namespace distill
