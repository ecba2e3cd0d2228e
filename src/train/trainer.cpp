#include "train/trainer.h"

#include "core/error.h"
#include "core/progress.h"
#include "core/rng.h"
#include "core/threads.h"
#include "core/atomic_file.h"
#include "model/decoder.h"
#include "train/harness.h"
#include "train/kd_loss.h"
#include "train/losses.h"
#include "train/text_eval.h"
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

}  // namespace

TrainSummary train_model(Model& student, const TokenDataset& train, const TokenDataset& eval, const Model* teacher,
                         const TrainSettings& s, bool resume) {
  const ModelConfig& c = student.config;
  if (train.seq_len() != s.seq_len) fail("internal: dataset rows are {} tokens, settings say {}", train.seq_len(), s.seq_len);
  if (s.batch <= 0 || s.grad_accum <= 0) fail("--batch and --grad-accum must be positive");
  const int64_t rows_per_step = s.batch * s.grad_accum;
  const int64_t total_steps =
      s.steps > 0 ? s.steps : std::max<int64_t>(1, int64_t(std::ceil(s.epochs * double(train.n_rows()) / double(rows_per_step))));
  const bool soft_kd = !teacher && train.k() > 0 && s.kd_alpha > 0;  // top-k from a label dataset
  const bool use_kd = (teacher || soft_kd) && s.kd_alpha > 0;
  const float ce_weight = use_kd ? 1.0f - s.kd_alpha : 1.0f;

  HarnessOptions ho;
  ho.name = "train";
  ho.out_dir = s.out_dir;
  ho.total_steps = total_steps;
  ho.n_items = train.n_rows();
  ho.seed = s.seed;
  ho.save_every = s.save_every, ho.eval_every = s.eval_every;
  ho.clip = s.clip;
  ho.lr = s.lr;
  ho.adamw = s.adamw;
  ho.settings = s.to_json();
  ho.settings["steps"] = total_steps;
  ho.settings["teacher"] = teacher != nullptr;
  ho.settings["soft_labels"] = soft_kd;
  ho.resume = resume;
  TrainingHarness h(student, ho);

  TrainingPass pass(student, s.batch, s.seq_len);
  std::unique_ptr<Decoder> teacher_decoder;
  if (teacher) teacher_decoder = std::make_unique<Decoder>(*teacher);
  const int64_t B = s.batch, T = s.seq_len, N = B * T, V = c.n_vocab, K = train.k();
  std::vector<int32_t> ids(static_cast<size_t>(N)), targets(static_cast<size_t>(N));
  std::vector<uint8_t> mask(static_cast<size_t>(N));
  std::vector<int32_t> soft_ids(size_t(N * K));
  std::vector<float> soft_logp(size_t(N * K));

  std::fprintf(stderr, "train: %lld rows of %lld tokens (%lld held out), %lld steps of %lld×%lld×%lld tokens, %d threads\n",
               (long long)train.n_rows(), (long long)T, (long long)eval.n_rows(), (long long)total_steps, (long long)B,
               (long long)T, (long long)s.grad_accum, num_threads());
  const auto t_start = std::chrono::steady_clock::now();
  int64_t tokens_this_run = 0;

  // One optimizer step: grad_accum micro-batches of CE (+ KD) gradients.
  const auto step = [&]() -> json {
    const auto t0 = std::chrono::steady_clock::now();
    double ce_sum = 0.0, kd_sum = 0.0;
    for (int64_t micro = 0; micro < s.grad_accum; ++micro) {
      for (int64_t b = 0; b < B; ++b) {
        const int64_t row = h.next_item();
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
      pass.backward(d, h.grads());
    }
    const double grad_norm = h.update();
    const double ce = ce_sum / double(s.grad_accum), kd = kd_sum / double(s.grad_accum);
    tokens_this_run += N * s.grad_accum;
    json m = {{"loss", use_kd ? ce_weight * ce + s.kd_alpha * kd : ce}, {"ce", ce}, {"lr", h.lr_now()},
              {"grad_norm", grad_norm}, {"tokens_per_s", double(N * s.grad_accum) / seconds_since(t0)}};
    if (use_kd) m["kd"] = kd;
    return m;
  };
  const auto held_out = [&]() -> json {
    if (eval.n_rows() == 0) return json::object();
    const TextEval e = evaluate_text(student, eval);
    return {{"eval_loss", e.loss}, {"eval_ppl", e.perplexity}};
  };
  const auto info = [](const json& m) {
    return fmt::format("loss {:.4f}{} lr {:.2e}", m["loss"].get<double>(),
                       m.contains("eval_loss") ? fmt::format(" eval {:.4f}", m["eval_loss"].get<double>()) : "",
                       m["lr"].get<double>());
  };
  const std::vector<json>& metrics = h.run(step, held_out, info, "tokens_per_s", "tok/s");

  TrainSummary sum;
  sum.steps = total_steps;
  sum.final_loss = metrics.empty() ? 0.0 : metrics.back()["loss"].get<double>();
  sum.seconds = seconds_since(t_start);
  sum.tokens = tokens_this_run;
  sum.tokens_per_s = sum.seconds > 0 ? double(tokens_this_run) / sum.seconds : 0;
  for (auto it = metrics.rbegin(); it != metrics.rend(); ++it)
    if (it->contains("eval_loss")) {
      sum.eval_loss = (*it)["eval_loss"];
      break;
    }
  h.finish({{"steps", sum.steps}, {"final train loss", sum.final_loss},
            {"held-out loss", sum.eval_loss >= 0 ? json(sum.eval_loss) : json("n/a")},
            {"held-out perplexity", sum.eval_loss >= 0 ? json(std::exp(sum.eval_loss)) : json("n/a")},
            {"parameters", c.n_params()}, {"tokens/s (this run)", sum.tokens_per_s},
            {"wall time (this run)", format_duration(sum.seconds)}});
  return sum;
}

}  // namespace distill
