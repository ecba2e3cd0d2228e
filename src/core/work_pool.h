// The decode's parallel loops: a pool whose loop ends when the work is done, not when every thread
// has arrived.
//
// An OpenMP region splits its work over a fixed team and ends at a barrier every member must reach.
// When another process (or a server's other threads) holds a core, one member is descheduled and
// the whole team waits for the kernel to run it again — milliseconds, against a decode step's
// ~25 µs regions: two 2-thread decodes on 2 cores ran at 0.38–0.58 of one alone. Here the work is
// cut into chunks that the calling thread and whichever workers are running claim one at a time;
// the caller returns once every chunk has finished, so a worker that is not running holds up
// nothing it has not claimed.
//
// Chunks are claimed in order (chunk c before c + 1), each a contiguous range the caller defines, so
// a thread still streams long runs of weight rows. Workers spin briefly after a loop (decode steps
// follow each other closely), then sleep on a futex. Exceptions thrown by a chunk are caught; the
// rest of the chunks are skipped and the first exception is rethrown on the caller.
// DISTILL_WORK_POOL=0 runs the chunks as an OpenMP loop instead (static split), to compare.
#pragma once

#include <cstdint>
#include <type_traits>

namespace distill {

// True on a pool worker and on a caller inside run(): nested loops run on the calling thread.
bool in_work_pool();

// chunk(c) for c in [0, n_chunks), spread over num_threads() threads (the caller is one of them).
// On one thread, inside another loop (of this pool or an OpenMP region), or while another thread
// is running the pool: a plain loop on the calling thread.
void run_chunks(int64_t n_chunks, void (*chunk)(void* ctx, int64_t c), void* ctx);

template <class Fn>
void run_chunks(int64_t n_chunks, Fn&& fn) {
  run_chunks(n_chunks, [](void* ctx, int64_t c) { (*static_cast<std::remove_reference_t<Fn>*>(ctx))(c); }, &fn);
}

// How many chunks a loop over `n` items is cut into: a few per thread (a late thread finds some
// left; an early one is not idle), at most n.
int64_t chunks_for(int64_t n);

}  // namespace distill
