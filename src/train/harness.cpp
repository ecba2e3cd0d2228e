#include "train/harness.h"

#include "core/atomic_file.h"
#include "core/data_parallel.h"
#include "core/error.h"
#include "core/progress.h"
#include "core/rng.h"
#include "train/lora_training.h"
#include "train/report.h"

#include <fmt/format.h>
#include <fmt/ranges.h>

#include <algorithm>
#include <cinttypes>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>

#include <sys/resource.h>

namespace distill {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

// metrics.jsonl: lines of earlier runs are kept up to the step being resumed from.
std::vector<json> read_metrics(const std::string& path, int64_t up_to_step) {
  std::vector<json> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    try {
      json j = json::parse(line);
      if (!j.is_object() || !j.contains("step") || !j["step"].is_number_integer()) break;
      if (j["step"].get<int64_t>() <= up_to_step) out.push_back(std::move(j));
    } catch (const json::exception&) {
      break;  // a line cut by a kill: the rest is rewritten
    }
  }
  return out;
}

void write_metrics(const std::string& path, const std::vector<json>& lines) {
  std::string text;
  for (const json& j : lines) text += j.dump() + "\n";
  write_file_atomic(path, text.data(), text.size());
}

// Each layer's parameters as one range of the arena, [begin, end) in floats; empty when some
// layer's are not contiguous (then the gradients are summed at once, after the backward).
std::vector<std::pair<int64_t, int64_t>> layer_ranges(const ParamArena& arena, int64_t n_layer) {
  std::vector<std::pair<int64_t, int64_t>> r(size_t(n_layer), {INT64_MAX, 0});
  std::vector<int64_t> count(size_t(n_layer), 0);
  for (const ParamEntry& e : arena.entries()) {
    int64_t il = -1;
    if (std::sscanf(e.name.c_str(), "model.layers.%" SCNd64 ".", &il) != 1 || il < 0 || il >= n_layer) continue;
    r[size_t(il)].first = std::min(r[size_t(il)].first, int64_t(e.offset));
    r[size_t(il)].second = std::max(r[size_t(il)].second, int64_t(e.offset + e.numel));
    count[size_t(il)] += int64_t(e.numel);
  }
  for (size_t il = 0; il < r.size(); ++il)
    if (count[il] == 0 || r[il].second - r[il].first != count[il] || (il > 0 && r[il].first < r[il - 1].second)) return {};
  return r;
}

}  // namespace

TrainingHarness::TrainingHarness(Model& model, const HarnessOptions& opt)
    : model_(model),
      opt_(opt),
      arena_(opt.lora.rank > 0 ? ParamArena() : ParamArena::adopt(model)),  // LoRA: the base stays as loaded
      lora_(opt.lora.rank > 0 ? std::make_unique<LoraTraining>(model, opt.lora, opt.seed) : nullptr),
      adamw_(trainable(), opt.adamw, opt.shard_optimizer) {
  if (opt_.total_steps <= 0) fail("{}: the number of steps must be positive", opt_.name);
  if (lora_ && !opt_.settings.contains("lora")) fail("internal: {} trains an adapter its settings do not record", opt_.name);
  if (opt_.n_items <= 0) fail("{}: no training data", opt_.name);
  opt_.lr.total_steps = opt_.total_steps * std::max<int64_t>(1, opt_.updates_per_step);
  const fs::path out(opt_.out_dir);
  ckpt_dir_ = (out / "checkpoint").string(), metrics_path_ = (out / "metrics.jsonl").string();
  grads_ = trainable().new_buffer();
  grad_views_ = lora_ ? lora_->grad_views(grads_) : arena_.views(grads_);
  if (DataParallel::size() > 1 && opt_.overlap_comm && !opt_.shard_optimizer && !lora_) {
    layer_grads_ = layer_ranges(arena_, model_.config.n_layer);
    if (DataParallel::leader() && !layer_grads_.empty())
      std::fprintf(stderr, "%s: each layer's gradient sum over the ranks starts as its backward ends (%zu of %zu floats overlap the backward)\n",
                   opt_.name.c_str(), size_t(layer_grads_.back().second - layer_grads_.front().first), arena_.size());
  }
  if (opt_.resume && (train_checkpoint_exists(ckpt_dir_) || train_checkpoint_exists(ckpt_dir_ + ".old"))) {
    state_ = load_train_checkpoint(ckpt_dir_, trainable(), adamw_, opt_.settings);
    metrics_ = read_metrics(metrics_path_, state_.step);
    if (DataParallel::leader())
      std::fprintf(stderr, "%s: resumed from %s at step %lld\n", opt_.name.c_str(), ckpt_dir_.c_str(), (long long)state_.step);
  } else if (opt_.resume) {
    std::fprintf(stderr, "%s: --resume given but %s holds no checkpoint; starting from step 0\n", opt_.name.c_str(),
                 ckpt_dir_.c_str());
  }
  order_ = shuffled_indices(opt_.n_items, opt_.seed, state_.epoch);
}

TrainingHarness::~TrainingHarness() = default;

ParamArena& TrainingHarness::trainable() { return lora_ ? lora_->arena() : arena_; }

namespace {
std::string mib(size_t bytes) {
  const double m = double(bytes) / (1024.0 * 1024.0);
  return m < 100 ? fmt::format("{:.1f} MiB", m) : fmt::format("{:.0f} MiB", m);
}
}  // namespace

void TrainingHarness::print_memory_estimate(size_t activation_bytes, const std::vector<std::pair<std::string, size_t>>& others) const {
  if (!DataParallel::leader()) return;
  TrainingMemory m;
  // the weights as the model holds them: the f32 arena, or under LoRA the frozen base as stored
  // (quantized: a fraction of f32) plus the adapter
  m.weights = model_.held_bytes();  // with the kernels' load-time forms (int8 panels of quantized weights)
  if (lora_) m.weights += lora_->arena().size() * sizeof(float);
  m.gradients = (lora_ ? lora_->arena() : arena_).size() * sizeof(float);
  m.optimizer = adamw_.state_bytes();  // AdamW's m and v (this rank's shard under ZeRO-1)
  m.activations = activation_bytes;
  std::string rest;
  for (const auto& [name, bytes] : others)
    if (bytes > 0) m.others.emplace_back(name, bytes), rest += ", " + name + " " + mib(bytes);
  std::fprintf(stderr, "%s: memory estimate %s: weights %s, gradients %s, optimizer %s, activations %s%s\n", opt_.name.c_str(),
               mib(m.total()).c_str(), mib(m.weights).c_str(), mib(m.gradients).c_str(), mib(m.optimizer).c_str(),
               mib(m.activations).c_str(), rest.c_str());
  if (lora_)
    std::fprintf(stderr, "%s: LoRA rank %lld (alpha %g) on %s: %zu trainable parameters of %lld, base frozen as stored (%s)\n",
                 opt_.name.c_str(), (long long)opt_.lora.rank, double(opt_.lora.alpha),
                 fmt::format("{}", fmt::join(opt_.lora.targets, ",")).c_str(), lora_->arena().size(),
                 (long long)model_.config.n_params(), std::string(dtype_name(model_.weights.layers[0].wq.dtype())).c_str());
}

// The items form one stream over the epochs; each call takes the next `ranks` of it, one per rank
// (rank r the r-th), so that N ranks see together what one process would, and the cursor means the
// same whatever the number of ranks a run is resumed with.
int64_t TrainingHarness::next_item() {
  const int64_t ranks = DataParallel::size();
  if (state_.cursor >= opt_.n_items) {
    ++state_.epoch, state_.cursor -= opt_.n_items;
    order_ = shuffled_indices(opt_.n_items, opt_.seed, state_.epoch);
  }
  const int64_t at = state_.cursor + DataParallel::rank();
  state_.cursor += ranks;
  if (at < opt_.n_items) return order_[size_t(at)];
  return shuffled_indices(opt_.n_items, opt_.seed, state_.epoch + 1)[size_t(at - opt_.n_items)];  // a call across epochs
}

double TrainingHarness::update() {
  // The gradients of what is trained: the model's, or (LoRA) the adapter's.
  float* g = grads_.data<float>();
  const int64_t n = int64_t(trainable().size());
  // Data parallel: the ranks' gradients (each the mean over its rows) summed, then averaged: the
  // mean over the global batch, as one process would have it (up to summation order). ZeRO-1
  // steps only this rank's shard, so only the shard's sum is needed: a reduce-scatter (half an
  // all-reduce's traffic), the shards' norms then added in rank order.
  const int ranks = DataParallel::size();
  const auto [b, e] = adamw_.sharded() ? DataParallel::shard(n, DataParallel::rank()) : std::pair<int64_t, int64_t>{0, n};
  if (ranks > 1) {
    if (adamw_.sharded()) DataParallel::reduce_scatter(g, n);
    else sum_gradients_over_ranks(g, n);
    const float inv = 1.0f / float(ranks);
#pragma omp parallel for schedule(static)
    for (int64_t i = b; i < e; ++i) g[i] *= inv;
  }
  // The norm as the sum of every rank's shard's squares in rank order: the same number whether the
  // optimizer is sharded or not (sharded and replicated runs take bit-identical steps).
  double squares = 0.0;
  if (adamw_.sharded()) {
    squares = DataParallel::sum_in_rank_order(sum_of_squares(g + b, size_t(e - b)));
  } else {
    for (int r = 0; r < ranks; ++r) {
      const auto [rb, re] = DataParallel::shard(n, r);
      squares += sum_of_squares(g + rb, size_t(re - rb));
    }
  }
  const double norm = std::sqrt(squares);
  if (opt_.clip > 0 && norm > opt_.clip) {
    const float scale = float(opt_.clip / norm);
#pragma omp parallel for schedule(static)
    for (int64_t i = b; i < e; ++i) g[i] *= scale;
  }
  last_lr_ = opt_.lr.at(adamw_.steps());
  adamw_.step(trainable().data(), g, last_lr_);
  // ZeRO-1: each rank stepped its shard; every rank gets the others' (the same values a
  // replicated step computes: the same math on the same averaged gradients)
  if (adamw_.sharded()) DataParallel::all_gather(trainable().data(), int64_t(trainable().size()));
  std::memset(grads_.raw(), 0, grads_.nbytes());
  ++updates_this_step_;
  return norm;
}

float TrainingHarness::lr_now() const { return last_lr_; }

void TrainingHarness::overlap_next_backward() {
  if (layer_grads_.empty()) return;
  overlap_armed_ = true;
  layer_started_.assign(layer_grads_.size(), false);
}

void TrainingHarness::layer_grads_done(int64_t layer) {
  if (!overlap_armed_) return;
  const auto [b, e] = layer_grads_[size_t(layer)];
  DataParallel::sum_start(grads_.data<float>() + b, e - b);  // every rank starts the same sums in the same order
  layer_started_[size_t(layer)] = true;
  DataParallel::progress();  // MPI moves started sums only inside its calls: one per layer
}

// The started layers' sums are waited for; what no backward reported (the embedding, the final
// norm, the head; every layer when nothing was started) is summed now, range by range in order.
void TrainingHarness::sum_gradients_over_ranks(float* g, int64_t n) {
  DataParallel::wait_all();
  int64_t at = 0;
  for (size_t il = 0; il < layer_started_.size() && overlap_armed_; ++il) {
    if (!layer_started_[il]) continue;
    if (layer_grads_[il].first > at) DataParallel::sum(g + at, layer_grads_[il].first - at);
    at = layer_grads_[il].second;
  }
  if (n > at) DataParallel::sum(g + at, n - at);
  overlap_armed_ = false;
}

// On every rank: with a sharded optimizer the moments are gathered to the leader, which writes.
void TrainingHarness::save_checkpoint() {
  const AdamW::Moments moments = adamw_.full_moments();
  if (!DataParallel::leader()) return;
  save_train_checkpoint(ckpt_dir_, trainable(), moments, adamw_.steps(), state_, opt_.settings);
  write_metrics(metrics_path_, metrics_);
}

const std::vector<json>& TrainingHarness::run(const std::function<json()>& step_fn, const std::function<json()>& eval_fn,
                                              const std::function<std::string(const json&)>& info_fn,
                                              const std::string& rate_key, const std::string& rate_unit) {
  Progress progress(opt_.name, opt_.total_steps);
  // Tests simulate a kill (no cleanup, nothing flushed) at a given step to prove resume exact.
  const char* kill_at = std::getenv("DISTILL_TEST_KILL_AT_STEP");
  std::memset(grads_.raw(), 0, grads_.nbytes());
  for (; state_.step < opt_.total_steps;) {
    const char* kill_rank = std::getenv("DISTILL_TEST_KILL_RANK");  // with MPI: only this rank dies
    if (kill_at && state_.step == std::atoll(kill_at) && (!kill_rank || std::atoi(kill_rank) == DataParallel::rank())) std::_Exit(137);
    updates_this_step_ = 0;
    json m = step_fn();
    if (updates_this_step_ == 0) m["grad_norm"] = update();
    average_over_ranks(m);
    if (!m.contains("lr")) m["lr"] = last_lr_;
    const double loss = m.value("loss", 0.0);
    if (!std::isfinite(loss))
      fail("{}: the loss became {} at step {}: lower --lr or check the data", opt_.name, loss, state_.step + 1);
    ++state_.step;
    m["step"] = state_.step;
    m["epoch"] = state_.epoch;
    const bool last = state_.step == opt_.total_steps;
    // Held-out evaluation, records and checkpoints: the leader's (every rank holds the same weights;
    // a sharded optimizer's moments are gathered from every rank).
    if (DataParallel::leader()) {
      if (eval_fn && (last || (opt_.eval_every > 0 && state_.step % opt_.eval_every == 0))) m.update(eval_fn());
      metrics_.push_back(m);
      progress.update(state_.step, info_fn(m), m.value(rate_key, 0.0), rate_unit.c_str());
    }
    if (last || (opt_.save_every > 0 && state_.step % opt_.save_every == 0)) save_checkpoint();
  }
  if (DataParallel::leader()) progress.finish();
  return metrics_;
}

// A step's metrics over the global batch: means of the ranks' means (their rows are equal in
// number); rates add up; lr and grad_norm are the same on every rank already.
void TrainingHarness::average_over_ranks(json& m) {
  if (DataParallel::size() == 1) return;
  for (auto& [key, v] : m.items()) {  // sorted keys: every rank makes the same calls in the same order
    if (!v.is_number() || key == "lr" || key == "grad_norm") continue;
    const double total = DataParallel::sum(v.get<double>());
    v = key.find("per_s") != std::string::npos || key.find("rows") != std::string::npos ? total : total / DataParallel::size();
  }
}

void TrainingHarness::finish(const json& summary) {
  if (!DataParallel::leader()) return;
  // The result: a normal model directory (config.json + model.safetensors) beside the run's records.
  const fs::path out(opt_.out_dir);
  if (!lora_) {
    model_.save(out.string());
  } else {
    lora_->write_peft((out / "adapter").string());  // the adapter alone, in PEFT's layout
    if (lora_->base_is_float()) {
      lora_->save_merged(out.string());  // and the model with it merged
    } else {
      std::fprintf(stderr, "%s: the base is quantized (%s): wrote the adapter only; run it with --lora %s\n", opt_.name.c_str(),
                   std::string(dtype_name(model_.weights.layers[0].wq.dtype())).c_str(), (out / "adapter").string().c_str());
    }
  }
  write_metrics(metrics_path_, metrics_);
  // The measured peak (resident set, this process) beside the estimate printed at the start.
  rusage ru{};
  getrusage(RUSAGE_SELF, &ru);
  json s = summary;
  s["peak memory (RSS)"] = mib(size_t(ru.ru_maxrss) * 1024);
  std::fprintf(stderr, "%s: peak memory (RSS) %s\n", opt_.name.c_str(), mib(size_t(ru.ru_maxrss) * 1024).c_str());
  write_training_report((out / "report.html").string(), "distill " + opt_.name + ": " + out.filename().string(), metrics_, s,
                        opt_.settings);
}

}  // namespace distill
