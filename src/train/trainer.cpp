#include "train/trainer.h"

#include "core/data_parallel.h"

#include "core/error.h"
#include "core/progress.h"
#include "core/rng.h"
#include "core/threads.h"
#include "core/atomic_file.h"
#include "generate/batch_generate.h"
#include "model/decoder.h"
#include "train/harness.h"
#include "train/kd_loss.h"
#include "train/losses.h"
#include "train/text_eval.h"
#include "train/teacher_scorer.h"
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
  json j = {{"batch", batch}, {"seq_len", seq_len}, {"grad_accum", grad_accum}, {"steps", steps},
          {"lr", lr.lr}, {"min_lr_ratio", lr.min_lr_ratio}, {"warmup_steps", lr.warmup_steps},
          {"lr_decay", decay[int(lr.decay)]}, {"beta1", adamw.beta1}, {"beta2", adamw.beta2}, {"eps", adamw.eps},
          {"weight_decay", adamw.weight_decay}, {"decay_vectors", adamw.decay_vectors}, {"clip", clip},
          {"seed", seed}, {"kd_alpha", kd_alpha}, {"kd_divergence", div[int(kd.divergence)]},
          {"temperature", kd.temperature}, {"beta", kd.beta}, {"t2_scale", kd.t2_scale},
          {"topk_mode", topk_mode == TopKMode::Tail ? "tail" : "renormalize"}, {"on_policy", on_policy},
          {"on_policy_temperature", on_policy_temperature}};
  if (uld_weight != 1.0f) j["uld_weight"] = uld_weight;  // (absent at the default: earlier runs resume)
  if (on_policy_from > 0) j["on_policy_from"] = on_policy_from;
  if (lora.rank > 0) j["lora"] = lora.to_json();  // a resumed run must train the same adapter
  if (bf16_matmuls) j["precision"] = "bf16";      // (absent at f32: earlier runs resume)
  return j;
}

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// One optimizer step of `train`: grad_accum micro-batches of CE (+ KD) gradients.
class TrainStep {
public:
  TrainStep(const Model& student, const Tokenizer* tok, const TokenDataset& train, const Model* teacher, TeacherScorer* scorer,
            const TrainSettings& s, TrainingHarness& h)
      : student_(student), tok_(tok), train_(train), teacher_(teacher), scorer_(scorer), s_(s), h_(h),
        B_(s.batch / DataParallel::size()), pass_(student, B_, s.seq_len, s.recompute_layers, 0, s.bf16_matmuls), V_(student.config.n_vocab), N_(B_ * s.seq_len), K_(train.k() > 0 ? train.k() : scorer ? scorer->k() : 0) {
    if (s.on_policy > 0 && (!(teacher || scorer) || !tok))
      fail("on-policy distillation needs a teacher to grade the student's samples (--teacher DIR or URL) and the student's tokenizer");
    if (scorer && train.k() > 0 && train.k() != scorer->k())
      fail("the dataset's soft labels are top-{} and the remote teacher's top-{}: use the same k", train.k(), scorer->k());
    pass_.set_layer_done([this](int64_t il) { h_.layer_grads_done(il); });
    // top-k KD: from a label dataset, and/or from a remote teacher's grades of on-policy samples
    soft_kd_ = !teacher && (train.k() > 0 || scorer) && s.kd_alpha > 0;
    use_kd_ = (teacher || soft_kd_) && s.kd_alpha > 0;
    ce_weight_ = use_kd_ ? 1.0f - s.kd_alpha : 1.0f;
    if (teacher) {
      teacher_logits_ = std::make_unique<LogitParts>(*teacher);
      teacher_rows_ = logit_part_rows(teacher->config.n_vocab);
      if (const char* r = std::getenv("DISTILL_TEST_TEACHER_ROWS")) teacher_rows_ = std::max(1, std::atoi(r));  // tests: several parts per chunk
    }
    ids_.resize(size_t(N_)), targets_.resize(size_t(N_)), mask_.resize(size_t(N_));
    soft_ids_.resize(size_t(N_ * K_)), soft_logp_.resize(size_t(N_ * K_));
    uld_mask_.assign(size_t(N_), 0), uld_logp_.resize(size_t(N_ * K_));
  }
  bool use_kd() const { return use_kd_; }
  int64_t tokens() const { return tokens_; }
  size_t activation_bytes() const { return pass_.activation_bytes(); }
  // A local teacher: its weights, its forward over a micro-batch and one part of its logits.
  size_t teacher_bytes() const {
    if (!teacher_logits_) return 0;
    const int64_t part = std::min(teacher_rows_, N_);
    return teacher_->held_bytes() + full_forward_bytes(teacher_->config, N_) + size_t(part * teacher_->config.n_vocab) * sizeof(float);
  }

  json operator()() {
    const auto t0 = std::chrono::steady_clock::now();
    double ce_sum = 0.0, kd_sum = 0.0, uld_sum = 0.0;
    int64_t sampled_rows = 0, sampled_tokens = 0;
    for (int64_t micro = 0; micro < s_.grad_accum; ++micro) {
      next_batch();
      if (s_.on_policy > 0 && h_.step() >= s_.on_policy_from) sample_completions(micro, &sampled_rows, &sampled_tokens);
      if (micro == s_.grad_accum - 1) h_.overlap_next_backward();  // its backward completes the step's gradients
      const MicroLoss l = forward_backward();
      ce_sum += l.ce, kd_sum += l.kd, uld_sum += l.uld;
    }
    const double grad_norm = h_.update();
    const double ce = ce_sum / double(s_.grad_accum), kd = kd_sum / double(s_.grad_accum), uld = uld_sum / double(s_.grad_accum);
    tokens_ += N_ * s_.grad_accum;
    json m = {{"loss", use_kd_ ? ce_weight_ * ce + s_.kd_alpha * (kd + s_.uld_weight * uld) : ce}, {"ce", ce}, {"lr", h_.lr_now()},
              {"grad_norm", grad_norm}, {"tokens_per_s", double(N_ * s_.grad_accum) / seconds_since(t0)}};
    if (use_kd_) m["kd"] = kd;
    if (uld_rows_ > 0) m["uld"] = uld;
    if (s_.on_policy > 0) {
      m["on_policy_rows"] = sampled_rows;
      m["on_policy_mean_len"] = sampled_rows ? double(sampled_tokens) / double(sampled_rows) : 0.0;
    }
    return m;
  }

private:
  struct MicroLoss {
    double ce = 0, kd = 0, uld = 0;
  };

  // One micro-batch's forward and backward, the loss computed on the head's chunks of rows as they
  // come (TrainingPass::forward_backward). Each chunk's means are turned into the micro-batch's:
  // a chunk with c of the C counted rows adds c/C of its mean, and its gradient is weighted alike.
  MicroLoss forward_backward() {
    int64_t ce_total = 0, kd_total = 0, uld_total = 0;
    for (int64_t i = 0; i < N_; ++i)
      ce_total += targets_[size_t(i)] != kIgnoreIndex, kd_total += mask_[size_t(i)] != 0, uld_total += uld_mask_[size_t(i)] != 0;
    uld_rows_ += uld_total;
    // A local teacher's final hidden states for the micro-batch; its logits are made a few rows at
    // a time where the KD term needs them (add_kd_gradient), never [rows, its vocabulary] at once.
    if (use_kd_ && !soft_kd_) teacher_logits_->run(ids_.data(), B_, s_.seq_len);
    MicroLoss sum;
    pass_.forward_backward(ids_.data(), [&](int64_t r0, int64_t n, const float* logits, float* d) {
      int64_t ce_here = 0, kd_here = 0;
      for (int64_t i = r0; i < r0 + n; ++i) ce_here += targets_[size_t(i)] != kIgnoreIndex, kd_here += mask_[size_t(i)] != 0;
      const double ce = cross_entropy_backward(d, logits, targets_.data() + r0, n, V_);
      sum.ce += ce_total ? ce * double(ce_here) / double(ce_total) : 0.0;
      // d now holds d(mean CE over the chunk)/d logits; weight it for the micro-batch's mean, the mix
      // and the accumulation: (1 − α) where the teacher's distribution is there to mix with, 1 where
      // a position has none (a label dataset's positions without soft labels, e.g. inside a teacher
      // token across tokenizers)
      const float share = ce_total ? float(ce_here) / float(ce_total) : 0.0f;
      const float w_mixed = share * ce_weight_ / float(s_.grad_accum), w_alone = share / float(s_.grad_accum);
#pragma omp parallel for schedule(static)
      for (int64_t r = 0; r < n; ++r) {
        const float w = !use_kd_ || mask_[size_t(r0 + r)] ? w_mixed : w_alone;
        for (int64_t v = 0; v < V_; ++v) d[r * V_ + v] *= w;
      }
      if (use_kd_ && kd_here > 0) {
        const float kd_share = float(kd_here) / float(kd_total);
        sum.kd += kd_share * add_kd_gradient(r0, n, kd_here, logits, d, kd_share);
      }
      int64_t uld_here = 0;
      for (int64_t i = r0; i < r0 + n; ++i) uld_here += uld_mask_[size_t(i)] != 0;
      if (use_kd_ && uld_here > 0 && s_.uld_weight > 0) {  // positions a teacher of another vocabulary could not align
        const float share = float(uld_here) / float(uld_total);
        sum.uld += share * uld_loss_topk(logits, V_, uld_logp_.data() + r0 * K_, K_, uld_mask_.data() + r0, n, d,
                                         share * s_.kd_alpha * s_.uld_weight / float(s_.grad_accum));
      }
    }, h_.grads());
    return sum;
  }

  void next_batch() {
    const int64_t T = s_.seq_len;
    for (int64_t b = 0; b < B_; ++b) {
      const int64_t row = h_.next_item();
      train_.row(row, ids_.data() + b * T, targets_.data() + b * T);
      if (soft_kd_ && train_.k() > 0) train_.row_soft(row, mask_.data() + b * T, soft_ids_.data() + b * T * K_, soft_logp_.data() + b * T * K_);
      else if (soft_kd_) std::fill_n(mask_.begin() + b * T, T, 0);  // no soft labels in the data: KD on on-policy rows only
    }
    std::fill(uld_mask_.begin(), uld_mask_.end(), 0);
    if (!soft_kd_)  // a local teacher grades every target position
      for (int64_t i = 0; i < N_; ++i) mask_[size_t(i)] = targets_[size_t(i)] != kIgnoreIndex;
  }

  // On-policy rows: a row with a prompt (targets start after position 0) is chosen with
  // probability on_policy, from a seed of (run seed, step, micro-batch, row) so that a resumed run
  // chooses and samples the same. Its completion is replaced by the student's own sample; the
  // teacher grades those tokens (mask_) and CE ignores them (targets_).
  void sample_completions(int64_t micro, int64_t* rows, int64_t* tokens) {
    const int64_t T = s_.seq_len;
    std::vector<std::vector<int32_t>> prompts;
    std::vector<int64_t> which;
    BatchGenerateOptions o;
    o.sampler.temperature = s_.on_policy_temperature;
    o.sampler.seed = s_.seed ^ 0x6f6e706fULL;
    o.max_new_tokens = 0;
    for (int64_t b = 0; b < B_; ++b) {
      const int32_t* tg = targets_.data() + b * T;
      int64_t p = 0;
      while (p < T && tg[p] == kIgnoreIndex) ++p;
      if (p == 0 || p == T) continue;  // packed text (no prompt), or no target at all
      Rng pick(s_.seed * 0x9E3779B97F4A7C15ULL + uint64_t(h_.step()) * 1000003ULL + uint64_t(micro) * 4099ULL + uint64_t(b));
      const uint64_t seed = pick.next_u64();
      if (pick.uniform() >= float(s_.on_policy)) continue;
      prompts.emplace_back(ids_.begin() + b * T, ids_.begin() + b * T + p + 1);  // ids[0..p]: p's target starts the completion
      o.prompt_seeds.push_back(seed);
      which.push_back(b);
      o.max_new_tokens = std::max(o.max_new_tokens, T - p);
    }
    if (prompts.empty()) return;
    const std::vector<SampledCompletion> out = generate_batch(student_, *tok_, prompts, o, nullptr);
    // Sample c's tokens that fit its row: the prompt's last position p and T − p targets from there.
    const auto kept = [&](const SampledCompletion& c) {
      return std::min<int64_t>(int64_t(c.completion.size()), T - (int64_t(prompts[size_t(c.prompt_index)].size()) - 1));
    };
    // A remote teacher grades the samples now: its top-k at each sampled position.
    std::vector<SequenceScores> graded;
    if (scorer_) {
      std::vector<std::vector<int32_t>> seqs;
      for (const SampledCompletion& c : out) {
        const int64_t L = kept(c);
        seqs.push_back(prompts[size_t(c.prompt_index)]);
        seqs.back().insert(seqs.back().end(), c.completion.begin(), c.completion.begin() + L);
        if (L == 0) seqs.back().push_back(0);  // nothing sampled: a placeholder nobody reads
      }
      graded = scorer_->score(seqs);
    }
    for (size_t ci = 0; ci < out.size(); ++ci) {
      const SampledCompletion& c = out[ci];
      const int64_t b = which[size_t(c.prompt_index)];
      const int64_t p = int64_t(prompts[size_t(c.prompt_index)].size()) - 1;
      const int64_t L = kept(c);
      int32_t* id = ids_.data() + b * T;
      int32_t* tg = targets_.data() + b * T;
      uint8_t* mk = mask_.data() + b * T;
      for (int64_t t = p; t < T; ++t) {
        const int64_t j = t - p;                          // completion token j is position t's target...
        if (t > p) id[t] = j - 1 < L ? c.completion[size_t(j - 1)] : 0;  // ...and position t+1's input
        mk[t] = j < L;
        tg[t] = kIgnoreIndex;
        // A teacher of another vocabulary grades the positions whose tokens it can align (1), gives
        // the shape of its distribution inside one of its tokens (2: the ULD term), or nothing (0).
        const uint8_t how = scorer_ && j < L && !graded[ci].scored.empty() ? graded[ci].scored[size_t(t)] : 1;
        if (how != 1) mk[t] = 0;
        if (how == 2) {
          uld_mask_[size_t(b * T + t)] = 1;
          std::copy_n(graded[ci].logp.begin() + t * K_, K_, uld_logp_.begin() + (b * T + t) * K_);
        }
        if (scorer_ && j < L) {  // score entry t: the teacher's prediction at position t
          std::copy_n(graded[ci].ids.begin() + t * K_, K_, soft_ids_.begin() + (b * T + t) * K_);
          std::copy_n(graded[ci].logp.begin() + t * K_, K_, soft_logp_.begin() + (b * T + t) * K_);
        }
      }
      ++*rows;
      *tokens += L;
    }
  }

  // Adds the KD term's gradient for rows r0..r0+n, `counted` of them KD positions (weight share ·
  // kd_alpha / grad_accum) to d; returns the rows' mean KD loss.
  double add_kd_gradient(int64_t r0, int64_t n, int64_t counted, const float* logits, float* d, float share) {
    const float weight = share * s_.kd_alpha / float(s_.grad_accum);
    if (soft_kd_)
      return kd_loss_topk(logits, V_, soft_ids_.data() + r0 * K_, soft_logp_.data() + r0 * K_, K_, mask_.data() + r0, n, s_.kd,
                          s_.topk_mode, d, weight);
    // A local teacher: its logits for `teacher_rows_` rows at a time (a 150k-word vocabulary's
    // rows are 0.6 MB each); each part's mean weighted by its share of the rows' KD positions.
    const int64_t Vt = teacher_->config.n_vocab;
    double loss = 0.0;
    for (int64_t p0 = r0; p0 < r0 + n && counted > 0; p0 += teacher_rows_) {
      const int64_t m = std::min(teacher_rows_, r0 + n - p0);
      int64_t here = 0;
      for (int64_t i = p0; i < p0 + m; ++i) here += mask_[size_t(i)] != 0;
      if (here == 0) continue;
      const float part = float(here) / float(counted);
      loss += part * kd_loss_full(logits + (p0 - r0) * V_, V_, teacher_logits_->rows(p0, m), Vt, mask_.data() + p0, m, s_.kd,
                                  d + (p0 - r0) * V_, weight * part);
    }
    return loss;
  }

  const Model& student_;
  const Tokenizer* tok_;
  const TokenDataset& train_;
  const Model* teacher_;
  TeacherScorer* scorer_;
  const TrainSettings& s_;
  TrainingHarness& h_;
  int64_t B_;  // this rank's rows of each micro-batch (--batch over the data-parallel ranks)
  TrainingPass pass_;
  std::unique_ptr<LogitParts> teacher_logits_;  // a local teacher's, for the micro-batch
  int64_t teacher_rows_ = 1;            // rows of teacher logits made at once (about 64 MiB of them)
  const int64_t V_, N_, K_;
  bool soft_kd_ = false, use_kd_ = false;
  float ce_weight_ = 1.0f;
  std::vector<int32_t> ids_, targets_, soft_ids_;
  std::vector<uint8_t> mask_, uld_mask_;  // KD positions; ULD positions (graded across vocabularies inside a teacher token)
  std::vector<float> soft_logp_, uld_logp_;  // [N, K]: the teacher's top-k (ULD: its sorted log-probabilities only)
  int64_t uld_rows_ = 0;
  int64_t tokens_ = 0;
};

HarnessOptions harness_options(const TrainSettings& s, int64_t total_steps, int64_t n_rows, bool teacher, bool soft_kd,
                               bool resume) {
  HarnessOptions ho;
  ho.name = "train";
  ho.out_dir = s.out_dir;
  ho.total_steps = total_steps;
  ho.n_items = n_rows;
  ho.seed = s.seed;
  ho.save_every = s.save_every, ho.eval_every = s.eval_every;
  ho.clip = s.clip;
  ho.lr = s.lr;
  ho.adamw = s.adamw;
  ho.settings = s.to_json();
  ho.settings["steps"] = total_steps;
  ho.settings["teacher"] = teacher;
  ho.settings["soft_labels"] = soft_kd;
  ho.resume = resume;
  ho.lora = s.lora;
  ho.shard_optimizer = s.shard_optimizer;
  ho.overlap_comm = s.overlap_comm;
  return ho;
}

}  // namespace

TrainSummary train_model(Model& student, const TokenDataset& train, const TokenDataset& eval, const Model* teacher,
                         const TrainSettings& s, bool resume, const Tokenizer* tok, TeacherScorer* scorer) {
  if (train.seq_len() != s.seq_len) fail("internal: dataset rows are {} tokens, settings say {}", train.seq_len(), s.seq_len);
  if (s.batch <= 0 || s.grad_accum <= 0) fail("--batch and --grad-accum must be positive");
  if (s.batch % DataParallel::size() != 0)
    fail("--batch {} does not split evenly over {} ranks: give a multiple of the number of ranks", s.batch, DataParallel::size());
  const int64_t rows_per_step = s.batch * s.grad_accum;
  const int64_t total_steps =
      s.steps > 0 ? s.steps : std::max<int64_t>(1, int64_t(std::ceil(s.epochs * double(train.n_rows()) / double(rows_per_step))));
  const bool soft_kd = !teacher && (train.k() > 0 || scorer) && s.kd_alpha > 0;
  TrainingHarness h(student, harness_options(s, total_steps, train.n_rows(), teacher != nullptr, soft_kd, resume));
  TrainStep step(student, tok, train, teacher, scorer, s, h);
  h.print_memory_estimate(step.activation_bytes(), {{"teacher", step.teacher_bytes()}});
  if (DataParallel::leader())
    std::fprintf(stderr, "train: %lld rows of %lld tokens (%lld held out), %lld steps of %lld×%lld×%lld tokens, %d threads%s\n",
                 (long long)train.n_rows(), (long long)s.seq_len, (long long)eval.n_rows(), (long long)total_steps,
                 (long long)s.batch, (long long)s.seq_len, (long long)s.grad_accum, num_threads(),
                 DataParallel::size() > 1 ? fmt::format(" × {} ranks (MPI, {} rows each)", DataParallel::size(), s.batch / DataParallel::size()).c_str() : "");
  const auto t_start = std::chrono::steady_clock::now();
  const auto held_out = [&]() -> json {
    if (eval.n_rows() == 0) return json::object();
    const TextEval e = evaluate_text(student, eval);
    json m = {{"eval_loss", e.loss}, {"eval_ppl", e.perplexity}};
    // How closely the student follows its teacher: the model itself, or the dataset's soft labels.
    const Fidelity f = teacher ? evaluate_fidelity(student, *teacher, eval) : evaluate_fidelity(student, eval);
    if (f.positions > 0) m["eval_kl_to_teacher"] = f.kl, m["eval_top1_agreement"] = f.top1_agreement;
    return m;
  };
  const auto info = [](const json& m) {
    return fmt::format("loss {:.4f}{} lr {:.2e}", m["loss"].get<double>(),
                       m.contains("eval_loss") ? fmt::format(" eval {:.4f}", m["eval_loss"].get<double>()) : "",
                       m["lr"].get<double>());
  };
  const std::vector<json>& metrics = h.run(std::ref(step), held_out, info, "tokens_per_s", "tok/s");

  TrainSummary sum;
  sum.steps = total_steps;
  sum.final_loss = metrics.empty() ? 0.0 : metrics.back()["loss"].get<double>();
  sum.seconds = seconds_since(t_start);
  sum.tokens = step.tokens() * DataParallel::size();  // every rank trained on as many
  sum.tokens_per_s = sum.seconds > 0 ? double(sum.tokens) / sum.seconds : 0;
  for (auto it = metrics.rbegin(); it != metrics.rend(); ++it)
    if (it->contains("eval_loss")) {
      sum.eval_loss = (*it)["eval_loss"];
      break;
    }
  json fidelity = json::object();
  for (auto it = metrics.rbegin(); it != metrics.rend(); ++it)
    if (it->contains("eval_kl_to_teacher")) {
      fidelity = *it;
      break;
    }
  h.finish({{"steps", sum.steps}, {"final train loss", sum.final_loss},
            {"held-out KL to the teacher", fidelity.contains("eval_kl_to_teacher") ? fidelity["eval_kl_to_teacher"] : json("n/a")},
            {"held-out top-1 agreement", fidelity.contains("eval_top1_agreement") ? fidelity["eval_top1_agreement"] : json("n/a")},
            {"held-out loss", sum.eval_loss >= 0 ? json(sum.eval_loss) : json("n/a")},
            {"held-out perplexity", sum.eval_loss >= 0 ? json(std::exp(sum.eval_loss)) : json("n/a")},
            {"parameters", student.config.n_params()}, {"tokens/s (this run)", sum.tokens_per_s},
            {"wall time (this run)", format_duration(sum.seconds)}});
  return sum;
}

}  // namespace distill
