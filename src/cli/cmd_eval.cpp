// distill eval MODEL: perplexity, task accuracy, fidelity to a teacher, speed and size — a table
// on the terminal, or one JSON object with --json.
#include "cli/commands.h"
#include "core/error.h"
#include "eval/evaluate.h"
#include "train/examples.h"

#include <CLI/CLI.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>

namespace distill {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

struct EvalArgs {
  std::string model, text, tasks, reward = "answer", teacher, chat_template, lora;
  int64_t samples = 1, max_new_tokens = 128, seq_len = 256;
  float temperature = 0.8f;
  bool json_out = false, speed = true;
};

void run_eval(const EvalArgs& a) {
  const Model model = load_model(a.model, a.lora, a.seq_len + a.max_new_tokens);
  const auto tok = Tokenizer::load(a.model);
  json r = {{"model", a.model}, {"parameters", model.config.n_params()}};
  uint64_t bytes = 0;  // the weights' files: a GGUF, or a directory's safetensors
  if (fs::is_directory(a.model)) {
    for (const auto& e : fs::directory_iterator(a.model))
      if (e.path().extension() == ".safetensors") bytes += e.file_size();
  } else {
    bytes = fs::file_size(a.model);
  }
  r["bytes"] = bytes;
  const auto tmpl = ChatTemplate::choose(a.chat_template, tok.get());
  TokenDataset text;
  if (!a.text.empty()) {
    text = TokenDataset::build(read_examples(a.text, tok.get(), tmpl.get()), a.seq_len, model.config.n_vocab);
    const TextEval t = evaluate_text(model, text);
    r["text"] = {{"tokens", t.tokens}, {"loss", t.loss}, {"perplexity", t.perplexity}};
  }
  if (!a.tasks.empty()) {
    const auto tasks = read_tasks(a.tasks, *tok, tmpl.get());
    const TaskEval t = evaluate_task_accuracy(model, *tok, tasks, RewardSpec::parse(a.reward), a.max_new_tokens, a.samples, a.temperature);
    r["tasks"] = {{"tasks", t.tasks}, {"samples", t.samples}, {"accuracy", t.accuracy}, {"pass_at_n", t.pass_at_n}};
  }
  if (!a.teacher.empty()) {
    if (a.text.empty()) fail("--teacher compares the two models on --text: give --text FILE");
    const Model teacher = Model::load(a.teacher);
    const Fidelity f = evaluate_fidelity(model, teacher, text);
    r["fidelity"] = {{"teacher", a.teacher}, {"top1_agreement", f.top1_agreement}, {"kl", f.kl}, {"positions", f.positions}};
  }
  if (a.speed) {
    const SpeedEval s = evaluate_speed(model);
    r["speed"] = {{"prefill_tokens_per_s", s.prefill_tps}, {"decode_tokens_per_s", s.decode_tps}};
  }
  if (a.json_out) {
    std::printf("%s\n", r.dump(2).c_str());
    return;
  }
  std::printf("%-28s %s\n", "model", a.model.c_str());
  std::printf("%-28s %.3f M (%.1f MB)\n", "parameters", double(r["parameters"].get<int64_t>()) / 1e6, double(bytes) / 1e6);
  if (r.contains("text"))
    std::printf("%-28s %.3f (loss %.4f nats/token over %lld tokens)\n", "perplexity", r["text"]["perplexity"].get<double>(),
                r["text"]["loss"].get<double>(), (long long)r["text"]["tokens"].get<int64_t>());
  if (r.contains("tasks")) {
    std::printf("%-28s %.1f %% of %lld tasks%s\n", a.samples == 1 ? "accuracy (greedy)" : "accuracy (pass@1)",
                100 * r["tasks"]["accuracy"].get<double>(), (long long)r["tasks"]["tasks"].get<int64_t>(),
                a.samples > 1 ? fmt::format(", pass@{} {:.1f} %", a.samples, 100 * r["tasks"]["pass_at_n"].get<double>()).c_str() : "");
  }
  if (r.contains("fidelity"))
    std::printf("%-28s %.1f %% top-1 agreement, KL(teacher||model) %.4f nats/token\n", "fidelity to teacher",
                100 * r["fidelity"]["top1_agreement"].get<double>(), r["fidelity"]["kl"].get<double>());
  if (r.contains("speed"))
    std::printf("%-28s prefill %.0f tokens/s, decode %.1f tokens/s\n", "speed", r["speed"]["prefill_tokens_per_s"].get<double>(),
                r["speed"]["decode_tokens_per_s"].get<double>());
}

}  // namespace

void register_eval(CLI::App& app) {
  auto a = std::make_shared<EvalArgs>();
  CLI::App* cmd = app.add_subcommand("eval", "Perplexity, task accuracy, fidelity to a teacher, speed and size");
  cmd->add_option("model", a->model, "Model directory or GGUF file")->required();
  add_lora_adapter_option(cmd, &a->lora);
  cmd->add_option("--text", a->text, "Held-out data for perplexity (and fidelity): a text file, or JSONL as distill "
                                     "train reads it (prompt/completion: the completions are scored)");
  cmd->add_option("--tasks", a->tasks, "Tasks JSONL ({\"prompt\"|\"messages\", \"answer\"}) for accuracy");
  cmd->add_option("--reward", a->reward, "How a completion is checked (as distill rl)")->capture_default_str();
  cmd->add_option("--teacher", a->teacher, "Teacher model: top-1 agreement and KL(teacher||model) on --text");
  cmd->add_option("--samples", a->samples, "Completions per task (1: greedy; more: pass@1 and pass@N)")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--temperature", a->temperature, "Sampling temperature when --samples > 1")->capture_default_str();
  cmd->add_option("--max-new-tokens", a->max_new_tokens, "Tokens per answer at most")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--seq-len", a->seq_len, "Window length for perplexity")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--chat-template", a->chat_template, "Chat format for the tasks' prompts");
  cmd->add_flag("--json", a->json_out, "Print one JSON object");
  cmd->add_flag("!--no-speed", a->speed, "Skip the speed measurement");
  cmd->callback([a] { run_eval(*a); });
}

}  // namespace distill
