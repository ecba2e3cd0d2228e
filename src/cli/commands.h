// Each subcommand registers itself on the CLI11 app and runs when selected.
#pragma once

#include "model/lora.h"

#include <string>

namespace CLI {
class App;
}

namespace distill {

void register_forward(CLI::App& app);
void register_demo(CLI::App& app);
void register_train(CLI::App& app);
void register_init(CLI::App& app);
void register_tokenize(CLI::App& app);
void register_run(CLI::App& app);
void register_rl(CLI::App& app);
void register_label(CLI::App& app);
void register_dataset(CLI::App& app);
void register_eval(CLI::App& app);
void register_serve(CLI::App& app);    // also `keys` and `usage`
void register_convert(CLI::App& app);  // also `quantize` and `info`
void register_bench(CLI::App& app);
void register_compare(CLI::App& app);
void register_watermark(CLI::App& app);  // also `provenance`

// The extraction guard's owner tools (cmd_guard.cpp), under `usage` and `keys`.
void guard_report(const std::string& source, const std::string& admin_key_file);
void guard_owner_action(const std::string& server, const std::string& name, const std::string& action,
                        const std::string& admin_key_file);

// LoRA (lora_options.cpp): training an adapter (train, rl), and merging one at load (run, serve, eval).
struct LoraOptions {
  int64_t rank = 0;
  float alpha = 0;  // 0: 2 × rank
  std::string targets = "all-linear";
  bool rslora = false;
};
void add_lora_train_options(CLI::App* cmd, LoraOptions* o);
// --precision f32|bf16 of train and rl (sets *bf16_matmuls).
void add_precision_option(CLI::App* cmd, bool* bf16_matmuls);
LoraConfig lora_config(const LoraOptions& o, const std::string& base_model);
void add_lora_adapter_option(CLI::App* cmd, std::string* dir);
// Model::load, then the adapter in `lora_dir` (if not empty) merged into its weights. Prints the
// memory plan for n_slots × n_ctx positions first when it reaches 1 GiB, with a warning when it
// exceeds the memory available.
Model load_model(const std::string& path, const std::string& lora_dir, int64_t n_ctx, int64_t n_slots = 1);

}  // namespace distill
