#include "train/trainer.h"

#include "core/error.h"
#include "core/progress.h"
#include "core/rng.h"
#include "core/threads.h"
#include "core/atomic_file.h"
#include "model/decoder.h"
#include "train/losses.h"
#include "train/param_arena.h"
#include "train/report.h"
#include "train/train_checkpoint.h"
#include "train/training_pass.h"

#include <chrono>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <numeric>

namespace distill {

namespace fs = std::filesystem;
using nlohmann::json;

json TrainSettings::to_json() const {
  const char* div[] = {"fkl", "rkl", "jsd", "tvd"};
  const char* decay[] = {"constant", "cosine", "linear"};
  return {{"batch", batch}, {"seq_len", seq_len}, {"grad_accum", grad_accum}, {"steps", steps},
          {"lr", lr.lr}, {"min_lr_ratio", lr.min_lr_ratio}, {"warmup_steps", lr.warmup_steps},
          {"lr_decay", decay[int(lr.decay)]}, {"beta1", adamw.beta1}, {"beta2", adamw.beta2}, {"eps", adamw.eps},
          {"weight_decay", adamw.weight_decay}, {"decay_vectors", adamw.decay_vectors}, {"clip", clip},
          {"seed", seed}, {"kd_alpha", kd_alpha}, {"kd_divergence", div[int(kd.divergence)]},
          {"temperature", kd.temperature}, {"beta", kd.beta}, {"t2_scale", kd.t2_scale},
          {"topk_mode", topk_mode == TopKMode::Tail ? "tail" : "renormalize"}};
}

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// Mean cross-entropy of `model` over every row of `data` (batches padded with ignored rows).
double evaluate(TrainingPass& pass, const TokenDataset& data, int64_t n_vocab) {
  const int64_t B = pass.n_seq(), T = pass.seq_len();
  std::vector<int32_t> ids(size_t(B * T)), targets(size_t(B * T));
  double total = 0.0;
  int64_t counted = 0;
  for (int64_t r0 = 0; r0 < data.n_rows(); r0 += B) {
    for (int64_t b = 0; b < B; ++b) {
      if (r0 + b < data.n_rows()) {
        data.row(r0 + b, ids.data() + b * T, targets.data() + b * T);
      } else {
        std::fill(ids.begin() + b * T, ids.begin() + (b + 1) * T, 0);
        std::fill(targets.begin() + b * T, targets.begin() + (b + 1) * T, kIgnoreIndex);
      }
    }
    int64_t n = 0;
    for (int32_t t : targets) n += t != kIgnoreIndex;
    if (n == 0) continue;
    total += cross_entropy_forward(pass.forward(ids.data()), targets.data(), B * T, n_vocab) * double(n);
    counted += n;
  }
  return counted ? total / double(counted) : 0.0;
}

// metrics.jsonl: lines of earlier runs are kept up to the step being resumed from.
std::vector<json> read_metrics(const std::string& path, int64_t up_to_step) {
  std::vector<json> out;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    try {
      json j = json::parse(line);
      if (j.value("step", int64_t(0)) <= up_to_step) out.push_back(std::move(j));
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

}  // namespace

TrainSummary train_model(Model& student, const TokenDataset& train, const TokenDataset& eval, const Model* teacher,
                         const TrainSettings& s, bool resume) {
  const ModelConfig& c = student.config;
  const fs::path out(s.out_dir);
  const std::string ckpt_dir = (out / "checkpoint").string(), metrics_path = (out / "metrics.jsonl").string();
  if (train.seq_len() != s.seq_len) fail("internal: dataset rows are {} tokens, settings say {}", train.seq_len(), s.seq_len);
  if (s.batch <= 0 || s.grad_accum <= 0) fail("--batch and --grad-accum must be positive");

  const int64_t rows_per_step = s.batch * s.grad_accum;
  const int64_t total_steps =
      s.steps > 0 ? s.steps : std::max<int64_t>(1, int64_t(std::ceil(s.epochs * double(train.n_rows()) / double(rows_per_step))));
  LrSchedule lr = s.lr;
  lr.total_steps = total_steps;
  json settings = s.to_json();
  settings["steps"] = total_steps;
  settings["teacher"] = teacher != nullptr;

  ParamArena arena = ParamArena::adopt(student);
  AdamW opt(arena, s.adamw);
  TrainState state;
  std::vector<json> metrics;
  if (resume && (train_checkpoint_exists(ckpt_dir) || train_checkpoint_exists(ckpt_dir + ".old"))) {
    state = load_train_checkpoint(ckpt_dir, arena, opt, settings);
    metrics = read_metrics(metrics_path, state.step);
    std::fprintf(stderr, "train: resumed from %s at step %lld\n", ckpt_dir.c_str(), (long long)state.step);
  } else if (resume) {
    std::fprintf(stderr, "train: --resume given but %s holds no checkpoint; starting from step 0\n", ckpt_dir.c_str());
  }

  TrainingPass pass(student, s.batch, s.seq_len);
  Tensor grads = arena.new_buffer();
  ModelWeights grad_views = arena.views(grads);
  std::unique_ptr<Decoder> teacher_decoder;
  if (teacher) teacher_decoder = std::make_unique<Decoder>(*teacher);
  const bool soft_kd = !teacher && train.k() > 0 && s.kd_alpha > 0;  // top-k from a label dataset
  const bool use_kd = (teacher || soft_kd) && s.kd_alpha > 0;
  const float ce_weight = use_kd ? 1.0f - s.kd_alpha : 1.0f;
  settings["soft_labels"] = soft_kd;

  const int64_t B = s.batch, T = s.seq_len, N = B * T, V = c.n_vocab;
  std::vector<int32_t> ids(static_cast<size_t>(N)), targets(static_cast<size_t>(N));
  std::vector<uint8_t> mask(static_cast<size_t>(N));
  const int64_t K = train.k();
  std::vector<int32_t> soft_ids(size_t(N * K));
  std::vector<float> soft_logp(size_t(N * K));
  std::vector<int64_t> order = shuffled_indices(train.n_rows(), s.seed, state.epoch);

  std::fprintf(stderr, "train: %lld rows of %lld tokens (%lld held out), %lld steps of %lld×%lld×%lld tokens, %d threads\n",
               (long long)train.n_rows(), (long long)T, (long long)eval.n_rows(), (long long)total_steps, (long long)B,
               (long long)T, (long long)s.grad_accum, num_threads());
  Progress progress("train", total_steps);
  const auto t_start = std::chrono::steady_clock::now();
  int64_t tokens_this_run = 0;
  double last_loss = 0.0;
  // Tests simulate a kill (no cleanup, nothing flushed) at a given step to prove resume exact.
  const char* kill_at = std::getenv("DISTILL_TEST_KILL_AT_STEP");
  for (; state.step < total_steps; ++state.step) {
    if (kill_at && state.step == std::atoll(kill_at)) std::_Exit(137);
    const auto t0 = std::chrono::steady_clock::now();
    std::memset(grads.raw(), 0, grads.nbytes());
    double ce_sum = 0.0, kd_sum = 0.0;
    for (int64_t micro = 0; micro < s.grad_accum; ++micro) {
      for (int64_t b = 0; b < B; ++b) {
        if (state.cursor >= train.n_rows()) {
          ++state.epoch, state.cursor = 0;
          order = shuffled_indices(train.n_rows(), s.seed, state.epoch);
        }
        const int64_t row = order[size_t(state.cursor++)];
        train.row(row, ids.data() + b * T, targets.data() + b * T);
        if (soft_kd) train.row_soft(row, mask.data() + b * T, soft_ids.data() + b * T * K, soft_logp.data() + b * T * K);
      }
      const float* logits = pass.forward(ids.data());
      float* d = pass.d_logits_buffer();
      ce_sum += cross_entropy_backward(d, logits, targets.data(), N, V);
      // d now holds d(mean CE)/d logits; weight it for the mix and the accumulation
      const float w = ce_weight / float(s.grad_accum);
#pragma omp parallel for schedule(static)
      for (int64_t i = 0; i < N * V; ++i) d[i] *= w;
      if (soft_kd) {
        kd_sum += kd_loss_topk(logits, V, soft_ids.data(), soft_logp.data(), K, mask.data(), N, s.kd, s.topk_mode, d,
                               s.kd_alpha / float(s.grad_accum));
      } else if (use_kd) {
        for (int64_t i = 0; i < N; ++i) mask[size_t(i)] = targets[size_t(i)] != kIgnoreIndex;
        const Tensor t_logits = teacher_decoder->forward_full(ids.data(), B, T);
        kd_sum += kd_loss_full(logits, V, t_logits.data<float>(), teacher->config.n_vocab, mask.data(), N, s.kd, d,
                               s.kd_alpha / float(s.grad_accum));
      }
      pass.backward(d, grad_views);
    }
    const double grad_norm = s.clip > 0 ? clip_grad_norm(grads.data<float>(), arena.size(), s.clip)
                                        : global_grad_norm(grads.data<float>(), arena.size());
    const float step_lr = lr.at(state.step);
    opt.step(arena.data(), grads.data<float>(), step_lr);

    const double ce = ce_sum / double(s.grad_accum), kd = kd_sum / double(s.grad_accum);
    last_loss = use_kd ? ce_weight * ce + s.kd_alpha * kd : ce;
    const double dt = seconds_since(t0);
    tokens_this_run += N * s.grad_accum;
    const double tps = double(N * s.grad_accum) / dt;
    json m = {{"step", state.step + 1}, {"loss", last_loss}, {"ce", ce}, {"lr", step_lr}, {"grad_norm", grad_norm},
              {"tokens_per_s", tps}, {"epoch", state.epoch}};
    if (use_kd) m["kd"] = kd;
    if (!std::isfinite(last_loss)) fail("the loss became {} at step {}: lower --lr or check the data", last_loss, state.step + 1);
    const bool last = state.step + 1 == total_steps;
    if (eval.n_rows() > 0 && (last || (s.eval_every > 0 && (state.step + 1) % s.eval_every == 0))) {
      const double el = evaluate(pass, eval, V);
      m["eval_loss"] = el;
      m["eval_ppl"] = std::exp(el);
    }
    metrics.push_back(m);
    char info[160];
    std::snprintf(info, sizeof info, "loss %.4f%s lr %.2e", last_loss,
                  m.contains("eval_loss") ? fmt::format(" eval {:.4f}", m["eval_loss"].get<double>()).c_str() : "", step_lr);
    progress.update(state.step + 1, info, tps, "tok/s");
    if (last || (s.save_every > 0 && (state.step + 1) % s.save_every == 0)) {
      TrainState next = state;
      ++next.step;
      save_train_checkpoint(ckpt_dir, arena, opt, next, settings);
      write_metrics(metrics_path, metrics);
    }
  }
  progress.finish();

  // The result: a normal model directory (config.json + model.safetensors) beside the run's records.
  student.save(out.string());
  TrainSummary sum;
  sum.steps = total_steps;
  sum.final_loss = last_loss;
  sum.seconds = seconds_since(t_start);
  sum.tokens = tokens_this_run;
  sum.tokens_per_s = sum.seconds > 0 ? double(tokens_this_run) / sum.seconds : 0;
  for (auto it = metrics.rbegin(); it != metrics.rend(); ++it)
    if (it->contains("eval_loss")) {
      sum.eval_loss = (*it)["eval_loss"];
      break;
    }
  const json summary = {{"steps", sum.steps}, {"final train loss", sum.final_loss},
                        {"held-out loss", sum.eval_loss >= 0 ? json(sum.eval_loss) : json("n/a")},
                        {"held-out perplexity", sum.eval_loss >= 0 ? json(std::exp(sum.eval_loss)) : json("n/a")},
                        {"parameters", c.n_params()}, {"tokens/s (this run)", sum.tokens_per_s},
                        {"wall time (this run)", format_duration(sum.seconds)}};
  write_metrics(metrics_path, metrics);
  write_training_report((out / "report.html").string(), "distill train: " + out.filename().string(), metrics, summary, settings);
  return sum;
}

}  // namespace distill
