#include "rl/grpo.h"

#include "core/data_parallel.h"
#include "core/error.h"
#include "core/progress.h"
#include "core/threads.h"
#include "generate/batch_generate.h"
#include "kernels/logprobs.h"
#include "model/decoder.h"
#include "train/harness.h"
#include "train/training_pass.h"

#include <chrono>
#include <cmath>
#include <cstring>

namespace distill {

using nlohmann::json;

json GrpoSettings::to_json() const {
  const char* types[] = {"grpo", "bnpo", "dapo", "dr_grpo"};
  const char* scal[] = {"group", "batch", "none"};
  json j = {{"group", group}, {"prompts_per_step", prompts_per_step}, {"max_new_tokens", max_new_tokens},
          {"temperature", temperature}, {"clip_low", clip_low}, {"clip_high", clip_high}, {"beta", beta},
          {"epochs", epochs}, {"steps", steps}, {"micro_batch", micro_batch}, {"loss_type", types[int(loss_type)]},
          {"scale_rewards", scal[int(scaling)]}, {"dynamic_sampling", dynamic_sampling}, {"negative_scale", negative_scale}, {"lr", lr.lr},
          {"warmup_steps", lr.warmup_steps}, {"weight_decay", adamw.weight_decay}, {"clip_grad", clip_grad},
          {"seed", seed}};
  if (lora.rank > 0) j["lora"] = lora.to_json();  // a resumed run must train the same adapter
  if (curriculum) j["curriculum"] = true;         // (absent when off: older checkpoints stay resumable)
  if (bf16_matmuls) j["precision"] = "bf16";      // (absent at f32, likewise)
  return j;
}

namespace {

// A sampled completion with its reward and advantage.
struct Rollout : SampledCompletion {
  double reward = 0.0;
  float advantage = 0.0f;
  bool correct = false;
  std::vector<double> terms;  // each reward term's value
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

SamplerSettings rollout_sampler(float temperature, uint64_t seed) {
  SamplerSettings s;
  s.temperature = temperature;
  s.top_k = 0, s.top_p = 1.0f, s.min_p = 0.0f;  // the true policy: its log-probs are the ratio's denominator
  s.seed = seed;
  return s;
}

// One GRPO step, plugged into the training harness: sample groups, reward them, turn rewards
// into advantages, then `epochs` updates on the clipped surrogate (+ KL to the reference).
class GrpoStep {
public:
  GrpoStep(Model& policy, const Model* ref, const Tokenizer& tok, const std::vector<Task>& tasks, const RewardSpec& reward,
           const GrpoSettings& s, TrainingHarness& h)
      : policy_(policy), tok_(tok), tasks_(tasks), reward_(reward), s_(s), h_(h), V_(policy.config.n_vocab),
        term_names_(reward.term_metric_names()) {
    if (s.curriculum) {  // the outcomes: a fresh run's, or the checkpoint's the harness restored
      std::string& last = h.step_state();
      if (last.empty()) last.assign(tasks.size(), '.');
      if (last.size() != tasks.size())
        fail("rl --curriculum: the checkpoint's outcomes are for {} tasks, --tasks has {}", last.size(), tasks.size());
    }
    size_t longest = 0;
    for (const Task& t : tasks) longest = std::max(longest, t.prompt.size());
    L_ = int64_t(longest) + s.max_new_tokens;  // row length of the training pass
    pass_ = std::make_unique<TrainingPass>(policy, s.micro_batch, L_, s.recompute_layers, 0, s.bf16_matmuls);
    pass_->set_layer_done([this](int64_t il) { h_.layer_grads_done(il); });
    if (ref && s.beta != 0.0f) ref_logits_ = std::make_unique<LogitParts>(*ref);
    ids_.resize(size_t(s.micro_batch * L_));
    row_token_.resize(size_t(s.micro_batch * L_));
  }
  size_t activation_bytes() const { return pass_->activation_bytes(); }
  // The frozen reference (weights, its forward over a micro-batch, one part of logits), if any.
  size_t reference_bytes() const {
    if (!ref_logits_) return 0;
    const Model& ref = ref_logits_->model();
    const int64_t part = std::min(logit_part_rows(V_), s_.max_new_tokens);  // a completion's rows at most
    return ref.held_bytes() + full_forward_bytes(ref.config, s_.micro_batch * L_) + size_t(part * V_) * sizeof(float);
  }
  // The rollouts' engine: a KV-cache slot per completion of the step, their logits, a prompt chunk.
  size_t rollout_bytes() const {
    const ModelConfig& c = policy_.config;
    const int64_t n = s_.prompts_per_step * s_.group, prefill = std::max<int64_t>(256, L_ * s_.prompts_per_step);
    return kv_cache_bytes(c, n, L_) + size_t(n * V_) * sizeof(float) + forward_buffer_bytes(c, prefill);
  }

  json operator()() {
    const auto t_sample = std::chrono::steady_clock::now();
    chosen_.clear();
    stats_ = BatchGenerateStats{};
    sampled_ = scored_ = skipped_ = 0;
    for (int64_t p = 0; p < s_.prompts_per_step; ++p) chosen_.push_back(draw());
    // per step, and per rank under MPI (rank 0's is a single process's): ranks sample apart
    step_seed_ = s_.seed * 7919u + uint64_t(h_.step()) * 104729u + uint64_t(DataParallel::rank()) * 15485863u;
    ro_ = sample(chosen_, step_seed_);
    score(ro_, 0, ro_.size());
    const int64_t zero_groups = resample_zero_signal_groups();
    for (int64_t g = 0; g < s_.prompts_per_step; ++g) record_outcome(g);
    std::vector<double> rewards;
    for (const Rollout& r : ro_) rewards.push_back(r.reward);
    int64_t unused = 0;
    const std::vector<float> adv = grpo_advantages(rewards, s_.group, s_.scaling, &unused, 1e-4, s_.negative_scale);
    for (size_t i = 0; i < ro_.size(); ++i) ro_[i].advantage = adv[i];
    const double sample_s = seconds_since(t_sample);
    reference_logprobs();
    const auto t_train = std::chrono::steady_clock::now();
    json m = optimise();
    m.update(step_metrics(zero_groups, sample_s, seconds_since(t_train)));
    return m;
  }

private:
  // The next task. With the curriculum, a task whose last group was all right or all wrong (no
  // signal: the policy always or never solved it) is passed over once and comes back at its next
  // turn, the epoch after, when the policy may have learned or forgotten it. The outcomes live in
  // the harness's step state, so a resumed run skips what the uninterrupted one would.
  int64_t draw() {
    if (!s_.curriculum) return h_.next_item();
    std::string& last = h_.step_state();
    for (size_t tries = 0;; ++tries) {
      const int64_t t = h_.next_item();
      char& o = last[size_t(t)];
      if (o == '.' || tries >= tasks_.size()) return t;  // (all passed over once: take it anyway)
      o = '.';
      ++skipped_;
    }
  }

  // Group g's outcome for the curriculum: 's' all right, 'u' all wrong, '.' mixed.
  void record_outcome(int64_t g) {
    if (!s_.curriculum) return;
    const int64_t right = right_in_group(g);
    h_.step_state()[size_t(chosen_[size_t(g)])] = right == s_.group ? 's' : right == 0 ? 'u' : '.';
  }

  int64_t right_in_group(int64_t g) const {
    int64_t right = 0;
    for (int64_t i = 0; i < s_.group; ++i) right += ro_[size_t(g * s_.group + i)].correct;
    return right;
  }

  std::vector<Rollout> sample(const std::vector<int64_t>& which, uint64_t seed) {
    std::vector<std::vector<int32_t>> prompts;
    for (int64_t t : which) prompts.push_back(tasks_[size_t(t)].prompt);
    BatchGenerateOptions o;
    o.group = s_.group;
    o.max_new_tokens = s_.max_new_tokens;
    o.sampler = rollout_sampler(s_.temperature, seed);
    BatchGenerateStats st;
    std::vector<Rollout> r;
    for (SampledCompletion& c : generate_batch(policy_, tok_, prompts, o, &st)) r.push_back({std::move(c), 0.0, 0.0f, false, {}});
    sampled_ += int64_t(r.size());
    stats_.tokens += st.tokens, stats_.seconds += st.seconds, stats_.prompt_tokens_copied += st.prompt_tokens_copied;
    return r;
  }

  // Rewards (and correctness: tasks/tasks.h's one definition) of rollouts [first, last).
  void score(std::vector<Rollout>& ro, size_t first, size_t last) {
    for (size_t i = first; i < last; ++i) {
      const Task& task = tasks_[size_t(chosen_[size_t(ro[i].prompt_index)])];
      const TaskScore sc = score_completion(reward_, task, ro[i].text, int64_t(ro[i].completion.size()), s_.max_new_tokens);
      ro[i].reward = sc.reward, ro[i].correct = sc.correct, ro[i].terms = sc.terms;
      ++scored_;
    }
  }

  // Groups whose rewards are all equal carry no signal; with dynamic sampling they are replaced by
  // fresh prompts (up to three tries each). Returns the count before resampling.
  int64_t resample_zero_signal_groups() {
    const auto flat = [&](int64_t g) {
      double lo = ro_[size_t(g * s_.group)].reward, hi = lo;
      for (int64_t i = 0; i < s_.group; ++i) lo = std::min(lo, ro_[size_t(g * s_.group + i)].reward), hi = std::max(hi, ro_[size_t(g * s_.group + i)].reward);
      return hi <= lo;
    };
    int64_t zero = 0;
    for (int64_t g = 0; g < s_.prompts_per_step; ++g) zero += flat(g);
    if (!s_.dynamic_sampling) return zero;
    for (int64_t g = 0; g < s_.prompts_per_step; ++g)
      for (int attempt = 0; attempt < 3 && flat(g); ++attempt) {
        record_outcome(g);  // the replaced task's
        const std::vector<int64_t> one = {draw()};
        std::vector<Rollout> fresh = sample(one, step_seed_ + uint64_t(g * 10 + attempt + 1));
        chosen_[size_t(g)] = one[0];
        for (Rollout& f : fresh) f.prompt_index = g;
        std::copy(fresh.begin(), fresh.end(), ro_.begin() + g * s_.group);
        score(ro_, size_t(g * s_.group), size_t((g + 1) * s_.group));  // only the fresh group
      }
    return zero;
  }

  // Rows [first, first + micro_batch) of the training pass: prompt + completion, zero-padded.
  void fill_rows(int64_t first) {
    std::fill(ids_.begin(), ids_.end(), 0);
    for (int64_t b = 0; b < s_.micro_batch && first + b < int64_t(ro_.size()); ++b) {
      const Rollout& r = ro_[size_t(first + b)];
      const auto& p = prompt_of(r);
      std::copy(p.begin(), p.end(), ids_.begin() + b * L_);
      std::copy(r.completion.begin(), r.completion.end(), ids_.begin() + b * L_ + int64_t(p.size()));
    }
  }
  const std::vector<int32_t>& prompt_of(const Rollout& r) const { return tasks_[size_t(chosen_[size_t(r.prompt_index)])].prompt; }

  // Log-probs of every rollout token under the frozen reference, once per batch of rollouts.
  void reference_logprobs() {
    const int64_t n = int64_t(ro_.size());
    ref_logp_.assign(size_t(n), {});
    if (!ref_logits_) return;
    // The reference's last hidden states, then its logits only for the rows that predict a
    // completion token, a part of at most ~64 MiB at a time (never [rows, vocabulary] whole).
    const int64_t part_rows = logit_part_rows(V_);
    for (int64_t first = 0; first < n; first += s_.micro_batch) {
      fill_rows(first);
      ref_logits_->run(ids_.data(), s_.micro_batch, L_);
      for (int64_t b = 0; b < s_.micro_batch && first + b < n; ++b) {
        const Rollout& r = ro_[size_t(first + b)];
        const int64_t plen = int64_t(prompt_of(r).size()), len = int64_t(r.completion.size());
        for (int64_t k0 = 0; k0 < len; k0 += part_rows) {  // row b·L + plen + k − 1 predicts completion token k
          const int64_t m = std::min(part_rows, len - k0);
          const float* logits = ref_logits_->rows(b * L_ + plen + k0 - 1, m);
          for (int64_t k = k0; k < k0 + m; ++k)
            ref_logp_[size_t(first + b)].push_back(
                float(token_logprob(logits + (k - k0) * V_, V_, r.completion[size_t(k)], s_.temperature)));
        }
      }
    }
  }

  // `epochs` AdamW updates over the same rollouts.
  json optimise() {
    const int64_t n = int64_t(ro_.size());
    int64_t total_tokens = 0;
    for (const Rollout& r : ro_) total_tokens += int64_t(r.completion.size());
    const GrpoBatchShape shape{n, (n + s_.micro_batch - 1) / s_.micro_batch, total_tokens, s_.max_new_tokens};
    double loss_sum = 0, kl_sum = 0, grad_norm = 0;
    double entropy_sum = 0, old_gap_sum = 0;  // over the first epoch's tokens
    const double inv_t = 1.0 / double(s_.temperature);
    int64_t clipped = 0, counted = 0;
    for (int64_t e = 0; e < s_.epochs; ++e) {
      loss_sum = kl_sum = 0, clipped = counted = 0;
      for (int64_t first = 0; first < n; first += s_.micro_batch) {
        fill_rows(first);
        int64_t micro_tokens = 0;
        for (int64_t b = 0; b < s_.micro_batch && first + b < n; ++b) micro_tokens += int64_t(ro_[size_t(first + b)].completion.size());
        // which completion token each row's logits predict: (rollout in the micro-batch, token), or none
        std::fill(row_token_.begin(), row_token_.end(), std::pair<int32_t, int32_t>{-1, -1});
        for (int64_t b = 0; b < s_.micro_batch && first + b < n; ++b) {
          const Rollout& r = ro_[size_t(first + b)];
          const int64_t plen = int64_t(prompt_of(r).size());
          for (size_t k = 0; k < r.completion.size(); ++k) row_token_[size_t(b * L_ + plen + int64_t(k) - 1)] = {int32_t(b), int32_t(k)};
        }
        if (first + s_.micro_batch >= n) h_.overlap_next_backward();  // the last micro-batch before the update
        pass_->forward_backward(ids_.data(), [&](int64_t r0, int64_t rows, const float* logits, float* d) {
          for (int64_t row = r0; row < r0 + rows; ++row) {
            const auto [b, k] = row_token_[size_t(row)];
            if (b < 0) continue;  // a prompt or padding position: no gradient
            const Rollout& r = ro_[size_t(first + b)];
            const double w = grpo_token_weight(s_.loss_type, shape, int64_t(r.completion.size()), micro_tokens);
            const float* l = logits + (row - r0) * V_;
            const double log_z = log_sum_exp(l, V_, inv_t);  // once per row: log-prob and entropy
            const double logp = double(l[r.completion[size_t(k)]]) * inv_t - log_z;
            if (e == 0) {
              entropy_sum += softmax_entropy(l, V_, inv_t, log_z);
              // before the first update the sampler and the training pass score the same policy:
              // a gap here means the two disagree (cache precision, or a bug), not learning
              old_gap_sum += std::fabs(logp - double(r.logp_old[size_t(k)]));
            }
            const double lref = ref_logits_ ? ref_logp_[size_t(first + b)][size_t(k)] : 0.0;
            const GrpoTokenLoss t = grpo_token_loss(logp, r.logp_old[size_t(k)], lref, r.advantage, s_.clip_low, s_.clip_high, s_.beta);
            loss_sum += w * t.loss;
            kl_sum += t.kl;
            clipped += t.clipped;
            ++counted;
            token_logp_backward(d + (row - r0) * V_, l, V_, r.completion[size_t(k)], s_.temperature, w * t.d_logp);
          }
        }, h_.grads());
      }
      grad_norm = h_.update();
    }
    return {{"loss", loss_sum}, {"kl", counted ? kl_sum / double(counted) : 0.0},
            {"clip_frac", counted ? double(clipped) / double(counted) : 0.0}, {"grad_norm", grad_norm},
            {"lr", h_.lr_now()}, {"completion_len", double(total_tokens) / double(n)},
            {"entropy", total_tokens ? entropy_sum / double(total_tokens) : 0.0},
            {"logp_old_gap", total_tokens ? old_gap_sum / double(total_tokens) : 0.0}};
  }

  // What the step's rollouts say: reward and accuracy, which groups could teach anything (all
  // right or all wrong groups have advantage 0), and how large the advantages were.
  json step_metrics(int64_t zero_groups, double sample_s, double train_s) const {
    double mean = 0, sq = 0, mx = -INFINITY, acc = 0, adv_abs = 0, adv_nonzero = 0;
    for (const Rollout& r : ro_)
      mean += r.reward, mx = std::max(mx, r.reward), acc += r.correct, adv_abs += std::fabs(r.advantage), adv_nonzero += r.advantage != 0.0f;
    const double n = double(ro_.size());
    mean /= n;
    for (const Rollout& r : ro_) sq += (r.reward - mean) * (r.reward - mean);
    int64_t solved = 0, unsolved = 0;
    for (int64_t g = 0; g < s_.prompts_per_step; ++g) {
      const int64_t right = right_in_group(g);
      solved += right == s_.group, unsolved += right == 0;
    }
    const double groups = double(s_.prompts_per_step);
    json m = {{"reward_mean", mean},
            {"reward_std", std::sqrt(sq / n)},
            {"reward_max", mx},
            {"accuracy", acc / n},
            {"zero_signal_frac", double(zero_groups) / groups},
            {"solved_frac", double(solved) / groups},
            {"unsolved_frac", double(unsolved) / groups},
            {"adv_abs_mean", adv_abs / n},
            {"adv_nonzero_frac", adv_nonzero / n},
            {"rollouts_sampled", sampled_},
            {"rollouts_scored", scored_},
            {"tasks_passed_over", skipped_},
            {"tokens_per_s", stats_.seconds > 0 ? double(stats_.tokens) / stats_.seconds : 0.0},
            {"prompt_tokens_shared", stats_.prompt_tokens_copied},
            {"completions_per_s", sample_s > 0 ? n / sample_s : 0.0},
            {"sample_s", sample_s},
            {"train_s", train_s}};
    // each term's mean when the reward has several (a weight-0 term is a measurement only)
    if (term_names_.size() > 1)
      for (size_t t = 0; t < term_names_.size(); ++t) {
        double sum = 0;
        for (const Rollout& r : ro_) sum += r.terms[t];
        m[term_names_[t]] = sum / n;
      }
    return m;
  }

  Model& policy_;
  const Tokenizer& tok_;
  const std::vector<Task>& tasks_;
  const RewardSpec& reward_;
  const GrpoSettings& s_;
  TrainingHarness& h_;
  const int64_t V_;
  const std::vector<std::string> term_names_;  // the reward terms' metric names
  int64_t L_ = 0;
  std::unique_ptr<TrainingPass> pass_;
  std::unique_ptr<LogitParts> ref_logits_;  // the frozen reference's, when --beta is not 0
  std::vector<int32_t> ids_;
  std::vector<std::pair<int32_t, int32_t>> row_token_;  // per row of a micro-batch: (rollout, token) it predicts, or (-1, -1)
  std::vector<int64_t> chosen_;      // task of each group this step
  std::vector<Rollout> ro_;
  std::vector<std::vector<float>> ref_logp_;
  BatchGenerateStats stats_;
  uint64_t step_seed_ = 0;
  int64_t sampled_ = 0, scored_ = 0;  // rollouts generated and rewarded this step (dynamic sampling adds groups)
  int64_t skipped_ = 0;               // tasks the curriculum passed over this step
};

}  // namespace

GrpoSummary train_grpo(Model& policy, const Model* ref, const Tokenizer& tok, const std::vector<Task>& tasks,
                       const std::vector<Task>& eval_tasks, const RewardSpec& reward, const GrpoSettings& s, bool resume) {
  if (s.beta != 0.0f && !ref) fail("--beta {} needs a reference model", s.beta);
  if (s.curriculum && DataParallel::size() > 1)
    fail("rl --curriculum runs in one process (each rank would keep its own tasks' outcomes): drop it, or run without mpirun");
  HarnessOptions ho;
  ho.name = "rl";
  ho.out_dir = s.out_dir;
  ho.total_steps = s.steps;
  ho.n_items = int64_t(tasks.size());
  ho.seed = s.seed;
  ho.save_every = s.save_every, ho.eval_every = s.eval_every;
  ho.clip = s.clip_grad;
  ho.updates_per_step = s.epochs;
  ho.lr = s.lr;
  ho.adamw = s.adamw;
  ho.settings = s.to_json();
  ho.resume = resume;
  ho.lora = s.lora;
  ho.shard_optimizer = s.shard_optimizer;
  ho.overlap_comm = s.overlap_comm;
  TrainingHarness h(policy, ho);
  GrpoStep step(policy, ref, tok, tasks, reward, s, h);
  h.print_memory_estimate(step.activation_bytes(), {{"reference", step.reference_bytes()}, {"rollouts", step.rollout_bytes()}});

  std::fprintf(stderr, "rl: %zu tasks (%zu held out), %lld steps of %lld prompts × %lld completions, up to %lld new tokens, %d threads\n",
               tasks.size(), eval_tasks.size(), (long long)s.steps, (long long)s.prompts_per_step, (long long)s.group,
               (long long)s.max_new_tokens, num_threads());
  const auto t_start = std::chrono::steady_clock::now();
  const auto held_out = [&]() -> json {
    if (eval_tasks.empty()) return json::object();
    return {{"eval_accuracy", evaluate_task_accuracy(policy, tok, eval_tasks, reward, s.max_new_tokens).accuracy}};
  };
  const auto info = [](const json& m) {
    return fmt::format("reward {:.3f} acc {:.2f} zero-signal {:.2f} kl {:.4f} len {:.1f} | sample {:.1f}s train {:.1f}s",
                       m["reward_mean"].get<double>(), m["accuracy"].get<double>(), m["zero_signal_frac"].get<double>(),
                       m["kl"].get<double>(), m["completion_len"].get<double>(), m["sample_s"].get<double>(),
                       m["train_s"].get<double>());
  };
  const std::vector<json>& metrics = h.run(std::ref(step), held_out, info, "tokens_per_s", "tok/s");

  GrpoSummary sum;
  sum.steps = s.steps;
  sum.seconds = seconds_since(t_start);
  if (!metrics.empty()) sum.first_reward = metrics.front()["reward_mean"], sum.last_reward = metrics.back()["reward_mean"];
  for (auto it = metrics.rbegin(); it != metrics.rend(); ++it)
    if (it->contains("eval_accuracy")) {
      sum.eval_accuracy = (*it)["eval_accuracy"];
      break;
    }
  h.finish({{"steps", s.steps},
            {"first step mean reward", sum.first_reward},
            {"last step mean reward", sum.last_reward},
            {"held-out accuracy", sum.eval_accuracy >= 0 ? json(sum.eval_accuracy) : json("n/a")},
            {"wall time", format_duration(sum.seconds)}});
  return sum;
}

}  // namespace distill
