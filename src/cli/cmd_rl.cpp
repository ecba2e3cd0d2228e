// distill rl: GRPO with verifiable rewards on a model directory (see rl/grpo_loss.h for the
// formulas, tasks/rewards.h for the rewards).
#include "cli/commands.h"
#include "core/error.h"
#include "model/provenance.h"
#include "rl/grpo.h"
#include "tokenizer/tokenizer.h"

#include <CLI/CLI.hpp>

#include <cstdio>
#include <filesystem>

namespace distill {

namespace fs = std::filesystem;

namespace {

struct RlArgs {
  std::string model, ref, tasks, eval, reward = "answer", out, clip = "0.2,0.2", loss_type = "grpo",
                                           scale = "group", chat_template;
  bool resume = false;
  GrpoSettings s;
  LoraOptions lora;
};

void run_rl(RlArgs& a) {
  Model policy = Model::load(a.model);
  const auto tok = Tokenizer::load(a.model);
  const auto tmpl = ChatTemplate::choose(a.chat_template, tok.get());
  const RewardSpec reward = RewardSpec::parse(a.reward);
  const std::vector<Task> tasks = read_tasks(a.tasks, *tok, tmpl.get());
  std::vector<Task> eval;
  if (!a.eval.empty()) eval = read_tasks(a.eval, *tok, tmpl.get());
  if (reward.has_answer())
    for (const Task& t : tasks)
      if (!t.task.contains("answer")) fail("{}: the answer reward needs an \"answer\" in every task", a.tasks);
  const size_t comma = a.clip.find(',');
  try {
    a.s.clip_low = std::stof(a.clip.substr(0, comma));
    a.s.clip_high = comma == std::string::npos ? a.s.clip_low : std::stof(a.clip.substr(comma + 1));
  } catch (const std::exception&) {
    fail("--clip '{}': expected ε or ε_low,ε_high", a.clip);
  }
  a.s.loss_type = parse_grpo_loss_type(a.loss_type);
  a.s.scaling = parse_advantage_scaling(a.scale);
  a.s.out_dir = a.out;
  a.s.lora = lora_config(a.lora, a.model);
  std::unique_ptr<Model> ref;
  if (a.s.beta != 0.0f) ref = std::make_unique<Model>(Model::load(a.ref.empty() ? a.model : a.ref));
  std::error_code ec;
  const bool created = !fs::exists(a.out);
  fs::create_directories(a.out, ec);
  if (ec) fail("--out {}: cannot create: {}", a.out, ec.message());
  try {
    const GrpoSummary r = train_grpo(policy, ref.get(), *tok, tasks, eval, reward, a.s, a.resume);
    copy_tokenizer_files(a.model, a.out);
    std::vector<std::string> data = {a.tasks};
    if (!a.eval.empty()) data.push_back(a.eval);
    write_provenance(a.out, provenance_record("rl", a.model, "", data, a.s.to_json()));
    std::printf("rl: %lld steps in %.1f s: mean reward %.3f -> %.3f", (long long)r.steps, r.seconds, r.first_reward, r.last_reward);
    if (r.eval_accuracy >= 0) std::printf(", held-out accuracy %.3f", r.eval_accuracy);
    std::printf("\nmodel: %s   report: %s/report.html\n", a.out.c_str(), a.out.c_str());
  } catch (...) {
    if (created && !fs::exists(fs::path(a.out) / "checkpoint")) fs::remove_all(a.out, ec);
    throw;
  }
}

}  // namespace

void register_rl(CLI::App& app) {
  auto a = std::make_shared<RlArgs>();
  a->s.lr.lr = 1e-6f;  // RL defaults: small constant learning rate, no weight decay
  a->s.lr.decay = LrDecay::Constant;
  a->s.adamw.weight_decay = 0.0f;
  CLI::App* cmd = app.add_subcommand("rl", "Reinforce a model with GRPO and verifiable rewards");
  cmd->footer(
      "Advantages: A = (r - mean_group) / (std + 1e-4), std of the group (--scale-rewards group) or batch, or\n"
      "A = r - mean_group (none, Dr. GRPO). Per token: L = -min(ρA, clip(ρ, 1-ε_low, 1+ε_high)A) + β·KL,\n"
      "ρ = π/π_old, KL = e^(ref-logp) - (ref-logp) - 1 (k3). --loss-type aggregates the token losses:\n"
      "  grpo     mean over each sequence's tokens, then over sequences\n"
      "  bnpo     mean over the tokens of each micro-batch, averaged over micro-batches\n"
      "  dapo     mean over all tokens of the batch\n"
      "  dr_grpo  sum over tokens / (sequences × --max-new-tokens)");
  cmd->add_option("--model", a->model, "Policy model directory (with tokenizer)")->required();
  cmd->add_option("--tasks", a->tasks, "Tasks JSONL: {\"prompt\"|\"messages\", \"answer\"?, ...}")->required();
  cmd->add_option("-o,--out", a->out, "Output model directory")->required();
  cmd->add_option("--reward", a->reward, "Rewards with weights, e.g. answer:1.0,format:0.2,regex:PAT,length,cmd:PROG")->capture_default_str();
  cmd->add_option("--eval", a->eval, "Held-out tasks: greedy accuracy every --eval-every steps");
  cmd->add_option("--group", a->s.group, "Completions per prompt (G)")->capture_default_str()->check(CLI::Range(2, 4096));
  cmd->add_option("--prompts-per-step", a->s.prompts_per_step, "Prompts per step (P)")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--max-new-tokens", a->s.max_new_tokens, "Tokens per completion at most")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--temperature", a->s.temperature, "Sampling temperature")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--lr", a->s.lr.lr, "Learning rate")->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->add_option("--warmup", a->s.lr.warmup_steps, "Warmup optimiser steps")->capture_default_str();
  cmd->add_option("--beta", a->s.beta, "KL weight to the reference (0: no reference loaded)")->capture_default_str();
  cmd->add_option("--ref", a->ref, "Reference model directory (default: --model as loaded)");
  cmd->add_option("--clip", a->clip, "ε or ε_low,ε_high (DAPO clip-higher, e.g. 0.2,0.28)")->capture_default_str();
  cmd->add_option("--loss-type", a->loss_type, "grpo | bnpo | dapo | dr_grpo")->capture_default_str();
  cmd->add_option("--scale-rewards", a->scale, "group | batch | none")->capture_default_str();
  cmd->add_option("--negative-scale", a->s.negative_scale,
                  "Weight of negative advantages (1: GRPO; 0: only rollouts better than their group's mean teach)")
      ->capture_default_str()->check(CLI::Range(0.0, 1.0));
  cmd->add_flag("--dynamic-sampling", a->s.dynamic_sampling, "Replace groups whose rewards are all equal");
  cmd->add_flag("--curriculum", a->s.curriculum,
                "Pass over, at its next turn, a task whose last group was all right or all wrong");
  cmd->add_option("--epochs", a->s.epochs, "Optimiser steps per batch of rollouts")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--steps", a->s.steps, "GRPO steps")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--micro-batch", a->s.micro_batch, "Rows per forward/backward")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--weight-decay", a->s.adamw.weight_decay, "AdamW weight decay")->capture_default_str();
  cmd->add_option("--clip-grad", a->s.clip_grad, "Global gradient-norm clip (0 = off)")->capture_default_str();
  cmd->add_option("--seed", a->s.seed, "Seed of the task order and the sampling")->capture_default_str();
  cmd->add_option("--eval-every", a->s.eval_every, "Steps between held-out evaluations (0 = at the end)")->capture_default_str();
  cmd->add_option("--save-every", a->s.save_every, "Steps between checkpoints (0 = at the end)")->capture_default_str();
  cmd->add_option("--chat-template", a->chat_template, "Chat format instead of the detected one");
  cmd->add_flag("--shard-optimizer", a->s.shard_optimizer,
                "Under mpirun: each rank keeps AdamW's moments for its 1/N of the parameters (ZeRO-1; same steps)");
  cmd->add_flag("--no-overlap-comm", [a](int64_t) { a->s.overlap_comm = false; },
                "Under mpirun: sum the gradients over the ranks after the backward instead of layer by layer during it");
  cmd->add_flag("--activation-checkpointing", a->s.recompute_layers,
                "Keep each layer's input only and recompute the layer in the backward (less memory, ~1/3 more compute, same gradients)");
  cmd->add_flag("--resume", a->resume, "Continue from OUT/checkpoint");
  add_precision_option(cmd, &a->s.bf16_matmuls);
  add_lora_train_options(cmd, &a->lora);
  cmd->callback([a] { run_rl(*a); });
}

}  // namespace distill
