#include "generate/scheduler.h"

#include "core/threads.h"

#include "core/error.h"
#include "generate/text_stream.h"
#include "kernels/logprobs.h"

#include <algorithm>
#include <chrono>
#include <cmath>

namespace distill {

uint64_t JobSignal::wait(uint64_t seen, double timeout_s) {
  std::unique_lock<std::mutex> lock(mu);
  cv.wait_for(lock, std::chrono::duration<double>(timeout_s), [&] { return version > seen; });
  return version;
}

std::vector<int32_t> GenerationJob::tokens() const {
  std::vector<int32_t> out;
  for (const Piece& p : pieces)
    for (const TokenLogprob& t : p.tokens) out.push_back(t.id);
  return out;
}

struct Scheduler::Slot {
  std::shared_ptr<GenerationJob> job;   // null: free
  std::vector<int32_t> cached;          // tokens whose K/V are in this slot, in order
  size_t prefilled = 0;                 // prompt tokens in the cache so far
  std::vector<int32_t> history;         // prompt + generated (for the penalties)
  std::unique_ptr<Sampler> sampler;
  std::vector<float> marked;            // the logits row with the job's watermark added
  std::unique_ptr<StopTextStream> text;
  std::vector<TokenLogprob> pending;    // tokens whose text is still held back
  int32_t next = -1;                    // sampled, not yet in the cache
  bool generating = false;
  // Shared prefill: the slot whose K/V rows this one will copy, the job it must still hold
  // (else the rows may be gone), and how many prompt tokens to take from it.
  Slot* donor = nullptr;
  const GenerationJob* donor_job = nullptr;
  size_t donor_len = 0;
};

Scheduler::Scheduler(const Model& model, const Tokenizer& tok, const SchedulerOptions& opt)
    : model_(model), tok_(tok), opt_(opt), decoder_(model), cache_(model.config, opt.n_slots, opt.n_ctx, default_kv_cache_type(), opt.kv_window_slack) {
  if (opt.n_slots < 1 || opt.n_ctx < 2) fail("the scheduler needs at least 1 slot and a context of 2 tokens");
  slots_.resize(size_t(opt.n_slots));
  if (opt.threaded) {
    // The engine's thread becomes the process's compute thread: this one's idle OpenMP workers
    // would otherwise make libgomp's barriers sleep instead of spin (core/threads.h).
    release_idle_openmp_workers();
    worker_ = std::thread([this] { loop(); });
  }
}

Scheduler::~Scheduler() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  cv_.notify_all();
  if (worker_.joinable()) worker_.join();
  // Whatever is left ends as cancelled so that no client thread waits forever.
  for (Slot& s : slots_)
    if (s.job) finish(s, "cancelled");
  for (auto& job : queue_) {
    std::lock_guard<std::mutex> lock(job->signal->mu);
    job->done = true, job->finish_reason = "cancelled";
    job->signal->changed_locked();
  }
}

bool Scheduler::submit(const std::vector<std::shared_ptr<GenerationJob>>& jobs) {
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (stopping_ || int64_t(queue_.size() + jobs.size()) > opt_.max_queue) return false;
    for (const auto& j : jobs) {
      if (j->prompt.empty()) fail("a job's prompt is empty");
      if (int64_t(j->prompt.size()) >= opt_.n_ctx)
        fail("the prompt has {} tokens; the context holds {}", j->prompt.size(), opt_.n_ctx);
    }
    for (const auto& j : jobs) queue_.push_back(j);
    stats_.queued = int64_t(queue_.size());
  }
  cv_.notify_all();
  return true;
}

SchedulerStats Scheduler::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  return stats_;
}

void Scheduler::forget_cached() {
  std::lock_guard<std::mutex> lock(mu_);
  for (Slot& s : slots_)
    if (!s.job) s.cached.clear();
}

bool Scheduler::busy_locked() const {
  return !queue_.empty() || std::any_of(slots_.begin(), slots_.end(), [](const Slot& s) { return s.job != nullptr; });
}

void Scheduler::run_until_done(const std::function<void()>& after_step) {
  DISTILL_ASSERT(!opt_.threaded);
  for (;;) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (!busy_locked()) return;
    }
    step();  // errors propagate to the caller, who owns this engine
    if (after_step) after_step();
  }
}

void Scheduler::loop() {
  for (;;) {
    {
      std::unique_lock<std::mutex> lock(mu_);
      cv_.wait(lock, [&] { return stopping_ || busy_locked(); });
      if (stopping_) return;
    }
    try {
      step();
    } catch (const std::exception& e) {
      // A failed forward fails the jobs it held; the worker carries on with the next ones.
      for (Slot& s : slots_)
        if (s.job) {
          finish(s, "error", e.what());
          s.cached.clear();
        }
    }
  }
}

// Moves queued jobs into free slots: the slot whose cached tokens share the longest prefix
// with the job's prompt (its previous turn), else the least useful one.
void Scheduler::admit() {
  std::lock_guard<std::mutex> lock(mu_);
  while (!queue_.empty()) {
    auto job = queue_.front();
    if (job->cancel) {  // the client left while waiting
      queue_.pop_front();
      std::lock_guard<std::mutex> jl(job->signal->mu);
      job->done = true, job->finish_reason = "cancelled";
      job->signal->changed_locked();
      ++stats_.cancelled;
      continue;
    }
    if (std::chrono::steady_clock::now() >= job->deadline) {  // waited out its whole time limit
      queue_.pop_front();
      std::lock_guard<std::mutex> jl(job->signal->mu);
      job->done = true, job->finish_reason = "error";
      job->error = "the request's time limit passed while it waited for a free slot";
      job->signal->changed_locked();
      continue;
    }
    Slot* best = nullptr;
    size_t best_common = 0;
    for (Slot& s : slots_) {
      if (s.job) continue;
      size_t c = 0;
      if (!job->prompt_logprobs)  // scoring needs the logits of every prompt token: no reuse
        while (c < s.cached.size() && c < job->prompt.size() && s.cached[c] == job->prompt[c]) ++c;
      c = std::min(c, job->prompt.size() - 1);  // the last prompt token gives the logits
      if (!cache_.holds_prefix(&s - slots_.data(), int64_t(c))) c = 0;  // a sliding window moved past it
      if (!best || c > best_common) best = &s, best_common = c;
    }
    if (!best) break;
    queue_.pop_front();
    Slot& s = *best;
    s.cached.resize(best_common);
    s.prefilled = best_common;
    s.history = job->prompt;
    s.sampler = std::make_unique<Sampler>(job->sampler);
    s.text = std::make_unique<StopTextStream>(tok_, job->stop, !job->special_text);
    s.pending.clear();
    s.generating = false;
    s.next = -1;
    s.donor = nullptr;
    job->n_reused = int64_t(best_common);
    if (job->prompt_logprobs) job->prompt_scores.resize(job->prompt.size() - 1);
    s.job = std::move(job);
    assign_donor(s);
  }
  stats_.queued = int64_t(queue_.size());
  stats_.active = std::count_if(slots_.begin(), slots_.end(), [](const Slot& s) { return s.job != nullptr; });
}

// Another active slot whose prompt shares a longer prefix than this slot's own cache (and is not
// itself waiting for a donor) prefills that prefix once for both.
void Scheduler::assign_donor(Slot& s) {
  if (!opt_.share_prefill || s.job->prompt_logprobs) return;
  const auto& prompt = s.job->prompt;
  const size_t want = prompt.size() - 1;  // the last prompt token is run by each slot for its logits
  size_t best = s.prefilled;
  for (Slot& d : slots_) {
    if (&d == &s || !d.job || d.donor || d.job->prompt_logprobs) continue;
    const auto& dp = d.job->prompt;
    size_t c = 0;
    while (c < want && c < dp.size() && dp[c] == prompt[c]) ++c;
    if (c > best + 1) best = c, s.donor = &d;  // worth it only beyond a token or two
  }
  if (s.donor) s.donor_job = s.donor->job.get(), s.donor_len = best;
}

// Copies the donor's K/V rows [0, donor_len) once the donor has them; gives up (prefilling
// normally) if the donor's job has ended and its cache no longer holds them.
void Scheduler::copy_from_donor(Slot& s) {
  Slot& d = *s.donor;
  size_t n = 0;
  while (n < s.donor_len && n < d.cached.size() && d.cached[n] == s.job->prompt[n]) ++n;
  const bool donor_still_working = d.job.get() == s.donor_job && !d.generating;
  if (n < s.donor_len && donor_still_working) return;  // not there yet: wait a step
  s.donor = nullptr;
  if (n <= s.prefilled) return;
  const int64_t from = int64_t(&d - slots_.data()), to = int64_t(&s - slots_.data());
  if (!cache_.copy_prefix(from, to, int64_t(n))) return;  // a sliding window moved past it: prefill
  s.cached.assign(s.job->prompt.begin(), s.job->prompt.begin() + int64_t(n));
  s.job->n_copied = int64_t(n - s.prefilled);
  std::lock_guard<std::mutex> lock(mu_);
  stats_.copied_prompt_tokens += s.job->n_copied;
  s.prefilled = n;
}

void Scheduler::finish(Slot& s, const std::string& reason, const std::string& error) {
  auto job = std::move(s.job);
  s.job.reset();
  s.donor = nullptr;
  std::string rest = reason == "cancelled" || reason == "error" ? "" : s.text->finish();
  std::lock_guard<std::mutex> lock(job->signal->mu);
  if (!rest.empty() || !s.pending.empty()) job->pieces.push_back({std::move(rest), std::move(s.pending)});
  s.pending.clear();
  job->done = true;
  job->finish_reason = reason;
  job->error = error;
  job->signal->changed_locked();
}

namespace {
TokenLogprob score(const float* logits, int64_t n_vocab, int32_t id, int k, float temperature) {
  TokenLogprob t;
  t.id = id;
  t.logprob = float(token_logprob(logits, n_vocab, id, temperature));
  if (k > 0) {
    std::vector<int32_t> ids(static_cast<size_t>(k));
    std::vector<float> lp(static_cast<size_t>(k));
    top_k_logprobs(logits, n_vocab, k, ids.data(), lp.data());
    for (int i = 0; i < k; ++i)
      if (ids[size_t(i)] >= 0) t.top.emplace_back(ids[size_t(i)], lp[size_t(i)]);
  }
  return t;
}
}  // namespace

// The next token of a slot whose prompt is fully in the cache, from its logits row.
bool Scheduler::on_logits(Slot& s, const float* logits) {
  GenerationJob& job = *s.job;
  const int64_t n_vocab = model_.config.n_vocab;
  if (job.n_generated >= job.max_new_tokens || int64_t(s.cached.size()) >= opt_.n_ctx) return finish(s, "length"), false;
  if (job.watermark.enabled()) {
    s.marked.assign(logits, logits + n_vocab);
    watermark_logits(job.watermark, s.history, s.marked.data(), n_vocab);
    logits = s.marked.data();
  }
  const int32_t next = s.sampler->sample(logits, n_vocab, s.history);
  const auto& stop_ids = tok_.stop_ids();
  const bool eos = job.stop_at_eos && std::find(stop_ids.begin(), stop_ids.end(), next) != stop_ids.end();
  if (eos && !job.keep_stop_token) return finish(s, "stop"), false;
  s.pending.push_back(job.logprobs ? score(logits, n_vocab, next, job.top_logprobs, job.logprob_temperature)
                                   : TokenLogprob{next, 0, {}});
  s.history.push_back(next);
  std::string text = eos ? "" : s.text->push(next);
  {
    std::lock_guard<std::mutex> lock(job.signal->mu);
    ++job.n_generated;
    if (!text.empty()) {
      job.pieces.push_back({std::move(text), std::move(s.pending)});
      s.pending.clear();
      job.signal->changed_locked();
    }
  }
  if (eos || s.text->stopped()) return finish(s, "stop"), true;
  // The last token allowed: done now, without running it through the model for logits no one uses.
  if (job.n_generated >= job.max_new_tokens) return finish(s, "length"), true;
  s.next = next;
  s.generating = true;
  return true;
}

void Scheduler::step() {
  admit();
  // Clients that left: free their slots before spending compute on them. Jobs out of time end
  // with what they have.
  const auto now = std::chrono::steady_clock::now();
  for (Slot& s : slots_)
    if (s.job && s.job->cancel) {
      finish(s, "cancelled");
      std::lock_guard<std::mutex> lock(mu_);
      ++stats_.cancelled;
    } else if (s.job && now >= s.job->deadline) {
      finish(s, "length");
    }

  // Shared prefill first, while every slot's `cached` still matches the rows in the cache (the
  // tokens added below are written by this step's forward).
  for (Slot& s : slots_)
    if (s.job && s.donor) copy_from_donor(s);

  const auto t0 = std::chrono::steady_clock::now();
  struct Row {
    Slot* slot;
    int64_t prompt_index;  // position of this token in the prompt, or -1 for a decode token
  };
  std::vector<Row> rows;
  batch_.clear();
  for (Slot& s : slots_) {
    if (!s.job || !s.generating) continue;
    batch_.add(s.next, int32_t(s.cached.size()), int32_t(&s - slots_.data()), true);
    rows.push_back({&s, -1});
    s.cached.push_back(s.next);
  }
  int64_t budget = opt_.prefill_chunk;
  int64_t n_prompt_tokens = 0;
  for (Slot& s : slots_) {
    if (!s.job || s.generating) continue;
    if (s.donor || budget <= 0) continue;  // still waiting for the donor's rows
    const auto& prompt = s.job->prompt;
    const size_t end = std::min(prompt.size(), s.prefilled + size_t(budget));
    for (size_t i = s.prefilled; i < end; ++i) {
      const bool want = s.job->prompt_logprobs || i + 1 == prompt.size();
      batch_.add(prompt[i], int32_t(i), int32_t(&s - slots_.data()), want);
      if (want) rows.push_back({&s, int64_t(i)});
      s.cached.push_back(prompt[i]);
    }
    budget -= int64_t(end - s.prefilled);
    n_prompt_tokens += int64_t(end - s.prefilled);
    s.prefilled = end;
  }
  if (batch_.size() == 0) return;
  const float* logits = decoder_.forward(batch_, cache_);

  const int64_t n_vocab = model_.config.n_vocab;
  int64_t n_sampled = 0;
  for (size_t r = 0; r < rows.size(); ++r) {
    Slot& s = *rows[r].slot;
    if (!s.job) continue;
    const float* row = logits + int64_t(r) * n_vocab;
    const int64_t i = rows[r].prompt_index;
    if (i >= 0 && i + 1 < int64_t(s.job->prompt.size())) {  // scoring: this row predicts prompt token i+1
      TokenLogprob t = score(row, n_vocab, s.job->prompt[size_t(i + 1)], s.job->top_logprobs, 1.0f);
      std::lock_guard<std::mutex> lock(s.job->signal->mu);
      s.job->prompt_scores[size_t(i)] = std::move(t);
      continue;
    }
    n_sampled += on_logits(s, row) ? 1 : 0;
  }
  std::lock_guard<std::mutex> lock(mu_);
  ++stats_.steps;
  stats_.prompt_tokens += n_prompt_tokens;
  stats_.generated_tokens += n_sampled;
  stats_.busy_s += std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  stats_.active = std::count_if(slots_.begin(), slots_.end(), [](const Slot& s) { return s.job != nullptr; });
}

}  // namespace distill
