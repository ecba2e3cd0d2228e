// core/work_pool: chunks claimed by the caller and the pool's workers — each chunk runs exactly
// once, nested loops stay on their thread, a chunk's exception reaches the caller, and two callers
// at once both finish.
#include "core/threads.h"
#include "core/work_pool.h"

#include <gtest/gtest.h>

#include <atomic>
#include <chrono>
#include <stdexcept>
#include <thread>
#include <vector>

namespace distill {

namespace {
struct Threads {  // a thread count for one test, restored after
  explicit Threads(int n) : saved(num_threads()) { set_num_threads(n); }
  ~Threads() { set_num_threads(saved); }
  int saved;
};
}  // namespace

TEST(WorkPool, EveryChunkRunsExactlyOnce) {
  const Threads threads(3);
  for (int n : {2, 7, 64, 1000}) {
    for (int round = 0; round < 50; ++round) {  // many loops: generations follow each other
      std::vector<std::atomic<int>> runs(static_cast<size_t>(n));
      run_chunks(n, [&](int64_t c) { runs[size_t(c)].fetch_add(1); });
      for (int c = 0; c < n; ++c) ASSERT_EQ(runs[size_t(c)].load(), 1) << "chunk " << c << " of " << n << ", round " << round;
    }
  }
}

// A worker takes part: whichever thread claims chunk 0 waits there until another thread has run
// chunk 1 (10 s at most: a pool whose workers never wake fails here).
TEST(WorkPool, WorkersClaimChunksBesideTheCaller) {
  const Threads threads(2);
  for (int round = 0; round < 20; ++round) {
    std::atomic<bool> second_done{false}, timed_out{false};
    std::thread::id ran[2];
    run_chunks(2, [&](int64_t c) {
      ran[c] = std::this_thread::get_id();
      if (c == 1) {
        second_done = true;
        return;
      }
      const auto until = std::chrono::steady_clock::now() + std::chrono::seconds(10);
      while (!second_done && std::chrono::steady_clock::now() < until) std::this_thread::yield();
      timed_out = !second_done;
    });
    EXPECT_FALSE(timed_out.load()) << "round " << round << ": no other thread ran chunk 1";
    EXPECT_NE(ran[0], ran[1]) << "round " << round;
  }
}

TEST(WorkPool, NestedLoopsRunOnTheirOwnThread) {
  const Threads threads(2);
  std::atomic<int> elsewhere{0}, inner_runs{0};
  run_chunks(8, [&](int64_t) {
    EXPECT_TRUE(in_work_pool());
    const auto me = std::this_thread::get_id();
    run_chunks(5, [&](int64_t) {
      elsewhere += std::this_thread::get_id() != me;
      ++inner_runs;
    });
  });
  EXPECT_EQ(inner_runs.load(), 40);
  EXPECT_EQ(elsewhere.load(), 0);
  EXPECT_FALSE(in_work_pool()) << "the caller leaves the pool when its loop ends";
}

TEST(WorkPool, AChunksExceptionReachesTheCallerAndThePoolGoesOn) {
  const Threads threads(2);
  for (int round = 0; round < 10; ++round) {
    EXPECT_THROW(run_chunks(16, [&](int64_t c) {
                   if (c == 5) throw std::runtime_error("chunk 5");
                 }),
                 std::runtime_error);
    std::atomic<int> runs{0};
    run_chunks(16, [&](int64_t) { ++runs; });
    EXPECT_EQ(runs.load(), 16);
  }
}

TEST(WorkPool, TwoCallersAtOnceBothFinish) {
  const Threads threads(2);
  std::atomic<int64_t> sum[2] = {0, 0};
  std::vector<std::thread> callers;
  for (int k = 0; k < 2; ++k)
    callers.emplace_back([&, k] {
      for (int round = 0; round < 200; ++round) run_chunks(10, [&](int64_t c) { sum[k] += c + 1; });
    });
  for (auto& t : callers) t.join();
  EXPECT_EQ(sum[0].load(), 200 * 55);
  EXPECT_EQ(sum[1].load(), 200 * 55);
}

}  // namespace distill
