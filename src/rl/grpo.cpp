#include "rl/grpo.h"

#include "core/error.h"
#include "core/progress.h"
#include "core/rng.h"
#include "core/threads.h"
#include "core/atomic_file.h"
#include "model/decoder.h"
#include "generate/batch_generate.h"
#include "train/param_arena.h"
#include "train/report.h"
#include "train/train_checkpoint.h"
#include "train/training_pass.h"

#include <chrono>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>

namespace distill {

namespace fs = std::filesystem;
using nlohmann::json;

std::vector<RlTask> read_rl_tasks(const std::string& path, const Tokenizer& tok, const ChatTemplate* tmpl) {
  std::ifstream in(path);
  if (!in) fail("{}: cannot open", path);
  std::vector<RlTask> tasks;
  std::string line;
  for (int64_t n = 1; std::getline(in, line); ++n) {
    with_context(path + ":" + std::to_string(n), [&] {
      if (line.find_first_not_of(" \t\r") == std::string::npos) fail("empty line");
      RlTask t;
      try {
        t.task = json::parse(line);
      } catch (const json::exception& e) {
        fail("malformed JSON: {}", e.what());
      }
      if (!t.task.is_object()) fail("expected a JSON object");
      t.prompt = encode_prompt(tok, tmpl, prompt_messages(t.task));
      if (t.prompt.empty()) fail("the prompt encodes to no tokens");
      tasks.push_back(std::move(t));
    });
  }
  if (tasks.empty()) fail("{}: no tasks", path);
  return tasks;
}

json GrpoSettings::to_json() const {
  const char* types[] = {"grpo", "bnpo", "dapo", "dr_grpo"};
  const char* scal[] = {"group", "batch", "none"};
  return {{"group", group}, {"prompts_per_step", prompts_per_step}, {"max_new_tokens", max_new_tokens},
          {"temperature", temperature}, {"clip_low", clip_low}, {"clip_high", clip_high}, {"beta", beta},
          {"epochs", epochs}, {"steps", steps}, {"micro_batch", micro_batch}, {"loss_type", types[int(loss_type)]},
          {"scale_rewards", scal[int(scaling)]}, {"dynamic_sampling", dynamic_sampling}, {"lr", lr.lr},
          {"warmup_steps", lr.warmup_steps}, {"weight_decay", adamw.weight_decay}, {"clip_grad", clip_grad},
          {"seed", seed}};
}

namespace {

// A sampled completion with its reward and advantage.
struct Rollout : SampledCompletion {
  double reward = 0.0;
  float advantage = 0.0f;
};

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// 1 if the rollout's answer reward (when the spec has one) is 1, else whether its reward is > 0.
bool is_correct(const RewardSpec& spec, const std::vector<double>& components, double reward) {
  for (size_t i = 0; i < spec.terms().size(); ++i)
    if (spec.terms()[i].kind == "answer") return components[i] >= 1.0;
  return reward > 0.0;
}

SamplerSettings rollout_sampler(float temperature, uint64_t seed) {
  SamplerSettings s;
  s.temperature = temperature;
  s.top_k = 0, s.top_p = 1.0f, s.min_p = 0.0f;  // the true policy: its log-probs are the ratio's denominator
  s.seed = seed;
  return s;
}

}  // namespace

double evaluate_tasks(const Model& model, const Tokenizer& tok, const std::vector<RlTask>& tasks, const RewardSpec& reward,
                      int64_t max_new_tokens) {
  if (tasks.empty()) return 0.0;
  double correct = 0.0;
  for (size_t b = 0; b < tasks.size(); b += 16) {
    std::vector<std::vector<int32_t>> prompts;
    for (size_t i = b; i < std::min(tasks.size(), b + 16); ++i) prompts.push_back(tasks[i].prompt);
    BatchGenerateOptions o;
    o.max_new_tokens = max_new_tokens;
    o.sampler = rollout_sampler(0.0f, 0);
    const auto ro = generate_batch(model, tok, prompts, o, nullptr);
    for (size_t i = 0; i < ro.size(); ++i) {
      std::vector<double> comp;
      const double r = reward.score(tasks[b + i].task, ro[i].text, int64_t(ro[i].completion.size()), max_new_tokens, &comp);
      correct += reward.has_answer() ? double(is_correct(reward, comp, r)) : r;
    }
  }
  return correct / double(tasks.size());
}

GrpoSummary train_grpo(Model& policy, const Model* ref, const Tokenizer& tok, const std::vector<RlTask>& tasks,
                       const std::vector<RlTask>& eval_tasks, const RewardSpec& reward, const GrpoSettings& s, bool resume) {
  if (s.beta != 0.0f && !ref) fail("--beta {} needs a reference model", s.beta);
  const fs::path out(s.out_dir);
  const std::string ckpt = (out / "checkpoint").string(), metrics_path = (out / "metrics.jsonl").string();
  const json settings = s.to_json();
  const int64_t V = policy.config.n_vocab;
  size_t longest = 0;
  for (const RlTask& t : tasks) longest = std::max(longest, t.prompt.size());
  const int64_t L = int64_t(longest) + s.max_new_tokens;  // row length of the training pass

  ParamArena arena = ParamArena::adopt(policy);
  AdamW opt(arena, s.adamw);
  LrSchedule lr = s.lr;
  lr.total_steps = s.steps * s.epochs;
  TrainState state;
  std::vector<json> metrics;
  if (resume && (train_checkpoint_exists(ckpt) || train_checkpoint_exists(ckpt + ".old"))) {
    state = load_train_checkpoint(ckpt, arena, opt, settings);
    std::ifstream in(metrics_path);
    for (std::string line; std::getline(in, line);) {
      try {
        json j = json::parse(line);
        if (j.value("step", int64_t(0)) <= state.step) metrics.push_back(j);
      } catch (const json::exception&) {
        break;
      }
    }
    std::fprintf(stderr, "rl: resumed from %s at step %lld\n", ckpt.c_str(), (long long)state.step);
  }
  TrainingPass pass(policy, s.micro_batch, L);
  Tensor grads = arena.new_buffer();
  ModelWeights grad_views = arena.views(grads);
  std::unique_ptr<Decoder> ref_decoder;
  if (ref && s.beta != 0.0f) ref_decoder = std::make_unique<Decoder>(*ref);
  std::vector<int64_t> order = shuffled_indices(int64_t(tasks.size()), s.seed, state.epoch);
  auto next_task = [&] {
    if (state.cursor >= int64_t(tasks.size())) ++state.epoch, state.cursor = 0, order = shuffled_indices(int64_t(tasks.size()), s.seed, state.epoch);
    return order[size_t(state.cursor++)];
  };

  std::fprintf(stderr, "rl: %zu tasks (%zu held out), %lld steps of %lld prompts × %lld completions, up to %lld new tokens, %d threads\n",
               tasks.size(), eval_tasks.size(), (long long)s.steps, (long long)s.prompts_per_step, (long long)s.group,
               (long long)s.max_new_tokens, num_threads());
  Progress progress("rl", s.steps);
  const auto t_start = std::chrono::steady_clock::now();
  GrpoSummary sum;
  std::vector<int32_t> ids(size_t(s.micro_batch * L));
  std::vector<int64_t> dirty_rows;  // d_logits rows written by the previous micro-batch
  for (; state.step < s.steps; ++state.step) {
    // ---- sampling
    const auto t_sample = std::chrono::steady_clock::now();
    std::vector<int64_t> chosen;
    for (int64_t p = 0; p < s.prompts_per_step; ++p) chosen.push_back(next_task());
    auto sample = [&](const std::vector<int64_t>& which, uint64_t seed, BatchGenerateStats* st) {
      std::vector<std::vector<int32_t>> prompts;
      for (int64_t t : which) prompts.push_back(tasks[size_t(t)].prompt);
      BatchGenerateOptions o;
      o.group = s.group;
      o.max_new_tokens = s.max_new_tokens;
      o.sampler = rollout_sampler(s.temperature, seed);
      std::vector<Rollout> r;
      for (SampledCompletion& c : generate_batch(policy, tok, prompts, o, st)) r.push_back({std::move(c), 0.0, 0.0f});
      return r;
    };
    BatchGenerateStats rs;
    const uint64_t step_seed = s.seed * 7919u + uint64_t(state.step) * 104729u;
    std::vector<Rollout> ro = sample(chosen, step_seed, &rs);
    std::vector<double> rewards(ro.size());
    std::vector<uint8_t> correct(ro.size());
    auto score_all = [&](std::vector<Rollout>& rr, const std::vector<int64_t>& which, size_t offset) {
      for (size_t i = 0; i < rr.size(); ++i) {
        std::vector<double> comp;
        const json& task = tasks[size_t(which[size_t(rr[i].prompt_index)])].task;
        rr[i].reward = reward.score(task, rr[i].text, int64_t(rr[i].completion.size()), s.max_new_tokens, &comp);
        rewards[offset + i] = rr[i].reward;
        correct[offset + i] = is_correct(reward, comp, rr[i].reward);
      }
    };
    score_all(ro, chosen, 0);
    int64_t zero_groups = 0;
    grpo_advantages(rewards, s.group, s.scaling, &zero_groups);
    const int64_t zero_before_resampling = zero_groups;
    if (s.dynamic_sampling) {
      // Groups without signal are replaced by fresh prompts, up to three tries each.
      for (int64_t g = 0; g < s.prompts_per_step; ++g) {
        for (int attempt = 0; attempt < 3; ++attempt) {
          double lo = rewards[size_t(g * s.group)], hi = lo;
          for (int64_t i = 0; i < s.group; ++i) lo = std::min(lo, rewards[size_t(g * s.group + i)]), hi = std::max(hi, rewards[size_t(g * s.group + i)]);
          if (hi > lo) break;
          std::vector<int64_t> one = {next_task()};
          BatchGenerateStats more;
          std::vector<Rollout> fresh = sample(one, step_seed + uint64_t(g * 10 + attempt + 1), &more);
          rs.tokens += more.tokens, rs.seconds += more.seconds;
          chosen[size_t(g)] = one[0];
          for (Rollout& f : fresh) f.prompt_index = g;
          std::copy(fresh.begin(), fresh.end(), ro.begin() + g * s.group);
          score_all(ro, chosen, 0);
        }
      }
    }
    const std::vector<float> adv = grpo_advantages(rewards, s.group, s.scaling, &zero_groups);
    for (size_t i = 0; i < ro.size(); ++i) ro[i].advantage = adv[i];
    const double sample_s = seconds_since(t_sample);

    // ---- reference log-probs (frozen model), once per batch of rollouts
    const int64_t n = int64_t(ro.size());
    auto fill_rows = [&](int64_t first) {
      std::fill(ids.begin(), ids.end(), 0);
      for (int64_t b = 0; b < s.micro_batch && first + b < n; ++b) {
        const Rollout& r = ro[size_t(first + b)];
        const auto& p = tasks[size_t(chosen[size_t(r.prompt_index)])].prompt;
        std::copy(p.begin(), p.end(), ids.begin() + b * L);
        std::copy(r.completion.begin(), r.completion.end(), ids.begin() + b * L + int64_t(p.size()));
      }
    };
    std::vector<std::vector<float>> ref_logp(static_cast<size_t>(n));
    if (ref_decoder) {
      for (int64_t first = 0; first < n; first += s.micro_batch) {
        fill_rows(first);
        const Tensor rl = ref_decoder->forward_full(ids.data(), s.micro_batch, L);
        for (int64_t b = 0; b < s.micro_batch && first + b < n; ++b) {
          const Rollout& r = ro[size_t(first + b)];
          const int64_t plen = int64_t(tasks[size_t(chosen[size_t(r.prompt_index)])].prompt.size());
          for (size_t k = 0; k < r.completion.size(); ++k)
            ref_logp[size_t(first + b)].push_back(float(token_logprob(rl.data<float>() + (b * L + plen + int64_t(k) - 1) * V, V,
                                                                    r.completion[k], s.temperature)));
        }
      }
    }

    // ---- optimisation: `epochs` AdamW steps over the same rollouts
    const auto t_train = std::chrono::steady_clock::now();
    int64_t total_tokens = 0, max_len = 0;
    for (const Rollout& r : ro) total_tokens += int64_t(r.completion.size()), max_len = std::max<int64_t>(max_len, int64_t(r.completion.size()));
    const int64_t n_micro = (n + s.micro_batch - 1) / s.micro_batch;
    double loss_sum = 0, kl_sum = 0, grad_norm = 0;
    int64_t clipped = 0, counted = 0;
    for (int64_t e = 0; e < s.epochs; ++e) {
      std::memset(grads.raw(), 0, grads.nbytes());
      loss_sum = kl_sum = 0, clipped = counted = 0;
      for (int64_t first = 0; first < n; first += s.micro_batch) {
        fill_rows(first);
        const float* logits = pass.forward(ids.data());
        float* d = pass.d_logits_buffer();
        for (int64_t row : dirty_rows) std::memset(d + row * V, 0, size_t(V) * sizeof(float));
        dirty_rows.clear();
        int64_t micro_tokens = 0;
        for (int64_t b = 0; b < s.micro_batch && first + b < n; ++b) micro_tokens += int64_t(ro[size_t(first + b)].completion.size());
        for (int64_t b = 0; b < s.micro_batch && first + b < n; ++b) {
          const Rollout& r = ro[size_t(first + b)];
          const int64_t plen = int64_t(tasks[size_t(chosen[size_t(r.prompt_index)])].prompt.size());
          const double len = double(r.completion.size());
          double w = 0;  // the aggregation's weight of each of this sequence's tokens
          switch (s.loss_type) {
            case GrpoLossType::GRPO: w = 1.0 / (double(n) * len); break;
            case GrpoLossType::BNPO: w = 1.0 / (double(std::max<int64_t>(1, micro_tokens)) * double(n_micro)); break;
            case GrpoLossType::DAPO: w = 1.0 / double(std::max<int64_t>(1, total_tokens)); break;
            case GrpoLossType::DrGRPO: w = 1.0 / (double(n) * double(s.max_new_tokens)); break;
          }
          for (size_t k = 0; k < r.completion.size(); ++k) {
            const int64_t row = b * L + plen + int64_t(k) - 1;  // position whose logits predict token k
            const float* l = logits + row * V;
            const double logp = token_logprob(l, V, r.completion[k], s.temperature);
            const double lref = ref_decoder ? ref_logp[size_t(first + b)][k] : 0.0;
            const GrpoTokenLoss t = grpo_token_loss(logp, r.logp_old[k], lref, r.advantage, s.clip_low, s.clip_high, s.beta);
            loss_sum += w * t.loss;
            kl_sum += t.kl;
            clipped += t.clipped;
            ++counted;
            token_logp_backward(d + row * V, l, V, r.completion[k], s.temperature, w * t.d_logp);
            dirty_rows.push_back(row);
          }
        }
        pass.backward(d, grad_views);
      }
      grad_norm = s.clip_grad > 0 ? clip_grad_norm(grads.data<float>(), arena.size(), s.clip_grad)
                                  : global_grad_norm(grads.data<float>(), arena.size());
      opt.step(arena.data(), grads.data<float>(), lr.at(opt.steps()));
    }
    const double train_s = seconds_since(t_train);

    // ---- logs
    double mean = 0, sq = 0, mx = -INFINITY, acc = 0;
    for (size_t i = 0; i < rewards.size(); ++i) mean += rewards[i], mx = std::max(mx, rewards[i]), acc += correct[i];
    mean /= double(rewards.size());
    for (double r : rewards) sq += (r - mean) * (r - mean);
    json m = {{"step", state.step + 1},
              {"reward_mean", mean},
              {"reward_std", std::sqrt(sq / double(rewards.size()))},
              {"reward_max", mx},
              {"accuracy", acc / double(rewards.size())},
              {"zero_signal_frac", double(zero_before_resampling) / double(s.prompts_per_step)},
              {"loss", loss_sum},
              {"kl", counted ? kl_sum / double(counted) : 0.0},
              {"clip_frac", counted ? double(clipped) / double(counted) : 0.0},
              {"completion_len", double(total_tokens) / double(n)},
              {"tokens_per_s", rs.seconds > 0 ? double(rs.tokens) / rs.seconds : 0.0},
              {"completions_per_s", sample_s > 0 ? double(n) / sample_s : 0.0},
              {"sample_s", sample_s},
              {"train_s", train_s},
              {"grad_norm", grad_norm},
              {"lr", lr.at(std::max<int64_t>(0, opt.steps() - 1))}};
    if (state.step == 0) sum.first_reward = mean;
    sum.last_reward = mean;
    const bool last = state.step + 1 == s.steps;
    if (!eval_tasks.empty() && (last || (s.eval_every > 0 && (state.step + 1) % s.eval_every == 0))) {
      m["eval_accuracy"] = evaluate_tasks(policy, tok, eval_tasks, reward, s.max_new_tokens);
      sum.eval_accuracy = m["eval_accuracy"];
    }
    metrics.push_back(m);
    char info[200];
    std::snprintf(info, sizeof info, "reward %.3f acc %.2f zero-signal %.2f kl %.4f len %.1f | sample %.1fs train %.1fs",
                  mean, acc / double(rewards.size()), m["zero_signal_frac"].get<double>(), m["kl"].get<double>(),
                  m["completion_len"].get<double>(), sample_s, train_s);
    progress.update(state.step + 1, info, m["tokens_per_s"].get<double>(), "tok/s");
    if (last || (s.save_every > 0 && (state.step + 1) % s.save_every == 0)) {
      TrainState next = state;
      ++next.step;
      save_train_checkpoint(ckpt, arena, opt, next, settings);
      std::string text;
      for (const json& j : metrics) text += j.dump() + "\n";
      write_file_atomic(metrics_path, text.data(), text.size());
    }
  }
  progress.finish();
  policy.save(out.string());
  sum.steps = s.steps;
  sum.seconds = seconds_since(t_start);
  const json summary = {{"steps", s.steps},
                        {"first step mean reward", sum.first_reward},
                        {"last step mean reward", sum.last_reward},
                        {"held-out accuracy", sum.eval_accuracy >= 0 ? json(sum.eval_accuracy) : json("n/a")},
                        {"wall time", format_duration(sum.seconds)}};
  write_training_report((out / "report.html").string(), "distill rl: " + out.filename().string(), metrics, summary, settings);
  return sum;
}

}  // namespace distill
