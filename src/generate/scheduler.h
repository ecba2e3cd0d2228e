// Scheduler: the decode engine — the one loop that turns prompts into tokens, for every client
// (`run`'s Generator, `generate_batch` for rl/eval/label, and `serve`).
//
// It owns the decoder and a KV cache of n_slots sequence slots. Each step it admits queued jobs
// into free slots, then runs ONE batched forward holding a decode token for every generating
// slot plus prompt chunks of slots still prefilling (at most prefill_chunk prompt tokens per step,
// so a long prompt does not stall the others), and samples each slot's next token. Jobs join and
// leave between steps; a cancelled job frees its slot at the next step.
//
// Prefill is never done twice for the same tokens:
//  - a slot keeps its tokens after its job ends: a later job whose prompt starts the same way
//    (the next turn of a chat) only prefills what is new;
//  - jobs admitted together that share a prompt prefix (GRPO groups, `n > 1`, `--samples`) prefill
//    it once: the first becomes the donor, the others wait for it and copy its K/V rows, then
//    run only their last prompt token to get their own logits.
//
// Two ways to drive it: `Scheduler(..., threaded = true)` runs the loop on its own worker thread
// (the server: clients submit and wait on the job's signal); threaded = false leaves the loop to
// the caller (`run_until_done`), for clients that own the engine in one thread.
#pragma once

#include "model/decoder.h"
#include "sample/sampler.h"
#include "sample/watermark.h"
#include "tokenizer/tokenizer.h"

#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

namespace distill {

struct TokenLogprob {
  int32_t id = -1;
  float logprob = 0;                              // log softmax(logits / T)[id], T = the job's logprob_temperature
  std::vector<std::pair<int32_t, float>> top;     // the most likely alternatives at T = 1, best first
};

// Wakes whoever waits on the jobs that share it (the choices of one request): every change to a
// job's output bumps `version` under `mu` and notifies `cv`.
struct JobSignal {
  std::mutex mu;
  std::condition_variable cv;
  uint64_t version = 0;
  void changed_locked() { ++version, cv.notify_all(); }
  // Waits until version > seen or the timeout; returns the version now.
  uint64_t wait(uint64_t seen, double timeout_s);
};

// One completion: the request's input, and its output as the engine produces it.
struct GenerationJob {
  // --- input, fixed before submit ---
  std::vector<int32_t> prompt;
  SamplerSettings sampler;
  // A keyed green-list bias (off unless delta != 0): added to the logits before the draw and
  // before the log-probs are taken, so soft labels carry the watermark as sampled tokens do.
  WatermarkSettings watermark;
  int64_t max_new_tokens = 16;   // 0: only score the prompt
  std::vector<std::string> stop;
  bool stop_at_eos = true;       // the tokenizer's end-of-turn ids end the completion
  bool keep_stop_token = false;  // ...and are part of its tokens (RL needs the EOS it chose)
  bool special_text = false;     // special tokens appear in the text (harmony's channel markup)
  bool logprobs = false;         // log-prob of each generated token
  float logprob_temperature = 1.0f;  // of that log-prob (RL: the sampling temperature)
  int top_logprobs = 0;          // alternatives per generated (and, with prompt_logprobs, prompt) token
  bool prompt_logprobs = false;  // log-probs of prompt tokens 1.. (echo scoring)
  // Wall-clock limit: a job still generating then ends with "length" (keeping what it has); one
  // still waiting for a slot ends with "error".
  std::chrono::steady_clock::time_point deadline = std::chrono::steady_clock::time_point::max();

  // --- output, guarded by signal->mu ---
  struct Piece {
    std::string text;                   // text decided by these tokens (may be empty at the end)
    std::vector<TokenLogprob> tokens;   // the tokens (with log-probs if asked)
  };
  std::shared_ptr<JobSignal> signal = std::make_shared<JobSignal>();
  std::vector<Piece> pieces;
  std::vector<TokenLogprob> prompt_scores;  // [prompt.size() - 1] when prompt_logprobs
  bool done = false;
  std::string finish_reason;   // stop | length | cancelled | error
  std::string error;
  int64_t n_generated = 0;
  int64_t n_reused = 0;        // prompt tokens found already in the slot's cache
  int64_t n_copied = 0;        // prompt tokens whose K/V were copied from another slot

  std::atomic<bool> cancel{false};  // set by the client side; the engine drops the job

  // Every generated token, in order (call once done, or under signal->mu).
  std::vector<int32_t> tokens() const;
};

struct SchedulerOptions {
  int64_t n_slots = 4;
  int64_t n_ctx = 2048;        // positions per slot
  int64_t max_queue = 64;      // jobs waiting for a slot; more are refused
  int64_t prefill_chunk = 256; // prompt tokens per step across slots
  bool threaded = true;        // run the loop on a worker thread
  bool share_prefill = true;   // jobs with a common prompt prefix prefill it once (off: for benchmarks)
  // Positions a sliding-window layer keeps past its window (model/kv_cache.h): memory against
  // how often the window's rows are slid to the front.
  int64_t kv_window_slack = KVCache::kDefaultSlack;
};

struct SchedulerStats {
  int64_t queued = 0, active = 0;
  int64_t steps = 0, prompt_tokens = 0, generated_tokens = 0, cancelled = 0;
  int64_t copied_prompt_tokens = 0;  // prefill saved by copying a donor's K/V rows
  double busy_s = 0;           // time spent in forward passes and sampling
};

class Scheduler {
public:
  Scheduler(const Model& model, const Tokenizer& tok, const SchedulerOptions& opt);
  ~Scheduler();
  Scheduler(const Scheduler&) = delete;
  Scheduler& operator=(const Scheduler&) = delete;

  // Queues the jobs together (the choices of one request), or none if the queue has no room.
  // Throws distill::Error for an empty prompt or one that does not fit the context.
  bool submit(const std::vector<std::shared_ptr<GenerationJob>>& jobs);
  // Unthreaded engines: runs steps until every submitted job is done. `after_step` (if set) is
  // called after each step (streaming clients read new pieces there).
  void run_until_done(const std::function<void()>& after_step = {});
  SchedulerStats stats() const;
  const SchedulerOptions& options() const { return opt_; }
  // Idle slots forget their cached tokens (a new conversation must not reuse the old one).
  void forget_cached();

private:
  struct Slot;
  void loop();
  void step();
  void admit();
  void assign_donor(Slot& s);
  void copy_from_donor(Slot& s);
  bool busy_locked() const;
  void finish(Slot& s, const std::string& reason, const std::string& error = "");
  bool on_logits(Slot& s, const float* logits);  // true if a token was sampled

  const Model& model_;
  const Tokenizer& tok_;
  SchedulerOptions opt_;
  Decoder decoder_;
  KVCache cache_;
  std::vector<Slot> slots_;
  Batch batch_;

  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::deque<std::shared_ptr<GenerationJob>> queue_;
  bool stopping_ = false;
  SchedulerStats stats_;
  std::thread worker_;
};

}  // namespace distill
