// The LoRA options shared by the commands: training an adapter (train, rl) and using one
// (run, serve, eval, bench).
#include "cli/commands.h"

#include "core/error.h"
#include "core/progress.h"
#include "model/lora.h"
#include "model/memory_plan.h"

#include <CLI/CLI.hpp>

#include <cstdio>

namespace distill {

void add_lora_train_options(CLI::App* cmd, LoraOptions* o) {
  cmd->add_option("--lora-rank", o->rank, "Train a LoRA adapter of this rank on the frozen model instead of all its weights (0 = off)")
      ->capture_default_str()->check(CLI::Range(0, 4096));
  cmd->add_option("--lora-alpha", o->alpha, "LoRA scale numerator: W' = W + alpha/r · B A (default: 2 × rank)")->check(CLI::PositiveNumber);
  cmd->add_option("--lora-targets", o->targets, "Adapted matrices: all-linear, or a comma list of q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj")
      ->capture_default_str();
  cmd->add_flag("--rslora", o->rslora, "Rank-stabilised scale alpha/√r (rsLoRA)");
}

LoraConfig lora_config(const LoraOptions& o, const std::string& base_model) {
  LoraConfig c;
  if (o.rank <= 0) {
    if (o.alpha > 0 || o.rslora || o.targets != "all-linear")
      fail("--lora-alpha, --lora-targets and --rslora shape an adapter: give --lora-rank R as well");
    return c;
  }
  c.rank = o.rank;
  c.alpha = o.alpha > 0 ? o.alpha : 2.0f * float(o.rank);
  c.rslora = o.rslora;
  c.targets = parse_lora_targets(o.targets);
  c.base_model = base_model;
  return c;
}

void add_lora_adapter_option(CLI::App* cmd, std::string* dir) {
  cmd->add_option("--lora", *dir, "LoRA adapter directory (PEFT layout: adapter_config.json + adapter_model.safetensors): merged at load into f32/bf16 weights, run beside quantized ones");
}

Model load_model(const std::string& path, const std::string& lora_dir, int64_t n_ctx, int64_t n_slots) {
  // What loading is about to take, for a model large enough for it to matter (or too large).
  const MemoryPlan plan = plan_memory(path, n_ctx, n_slots);
  const size_t avail = available_memory();
  if (plan.total() >= (size_t(1) << 30) || (avail > 0 && plan.total() > avail))
    std::fprintf(stderr, "memory plan: %s\n", describe(plan).c_str());
  const bool panels = plan_allows_panels(plan, avail);
  if (!panels)
    std::fprintf(stderr, "memory: loading without the %s of int8 panels, which would not fit (prefill repacks per call)\n",
                 human_bytes(double(plan.prepared)).c_str());
  const size_t needed = panels ? plan.total() : plan.total() - plan.prepared;
  if (avail > 0 && needed > avail)
    std::fprintf(stderr, "warning: %s needs about %s but %s is available: expect paging (a smaller --ctx%s needs less)\n",
                 path.c_str(), human_bytes(double(needed)).c_str(), human_bytes(double(avail)).c_str(),
                 n_slots > 1 ? " or --parallel" : "");
  Model m = Model::load(path, panels);
  if (!lora_dir.empty()) {
    const LoraConfig c = apply_peft_adapter(m, lora_dir);
    if (m.adapters.empty())
      std::fprintf(stderr, "lora: merged %s (rank %lld, alpha %g) into %s\n", lora_dir.c_str(), (long long)c.rank, double(c.alpha),
                   path.c_str());
    else
      std::fprintf(stderr, "lora: applied %s (rank %lld, alpha %g) beside the quantized weights of %s\n", lora_dir.c_str(),
                   (long long)c.rank, double(c.alpha), path.c_str());
  }
  return m;
}

}  // namespace distill
