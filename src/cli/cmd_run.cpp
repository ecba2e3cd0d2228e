// distill run DIR: generate from a model directory — one prompt (-p) streamed to stdout, or an
// interactive chat (--chat, or no -p on a terminal) that keeps the KV cache between turns.
#include "cli/commands.h"
#include "core/error.h"
#include "core/threads.h"
#include "generate/generator.h"
#include "tokenizer/chat_template.h"

#include <CLI/CLI.hpp>

#include <unistd.h>

#include <atomic>
#include <algorithm>
#include <csignal>
#include <cstring>
#include <cstdio>
#include <iostream>
#include <memory>

namespace distill {

namespace {

struct RunArgs {
  std::string dir, prompt, system, chat_template, reasoning_effort, lora;
  int64_t n_predict = 256, ctx = 4096;
  bool chat = false, raw = false, no_color = false;
  std::vector<std::string> stop;
  SamplerSettings s;
};

std::atomic<bool> g_interrupted{false};
void on_sigint(int) { g_interrupted = true; }

// Prints output, dimming <think>…</think> reasoning on a terminal so the answer stands out; a
// harmony reply (GPT-OSS) shows its analysis channel dimmed and its final channel plain.
class ReplyPrinter {
public:
  ReplyPrinter(bool color, bool thinking, bool harmony = false) : color_(color), thinking_(thinking), harmony_(harmony) {
    if (thinking_ && color_) std::fputs("\033[2m", stdout);
  }
  void print(const std::string& piece) {
    if (harmony_) return print_channels(channels_.push(piece));
    size_t i = 0;
    while (i < piece.size()) {
      const char* tag = thinking_ ? "</think>" : "<think>";
      const size_t at = piece.find(tag, i);
      const size_t end = at == std::string::npos ? piece.size() : at + std::strlen(tag);
      if (color_ && !thinking_ && at != std::string::npos) {
        std::fwrite(piece.data() + i, 1, at - i, stdout);
        std::fputs("\033[2m", stdout);
        std::fwrite(piece.data() + at, 1, end - at, stdout);
      } else {
        std::fwrite(piece.data() + i, 1, end - i, stdout);
        if (color_ && thinking_ && at != std::string::npos) std::fputs("\033[0m", stdout);
      }
      if (at != std::string::npos) thinking_ = !thinking_;
      i = end;
    }
    std::fflush(stdout);
  }
  ~ReplyPrinter() {
    if (harmony_) print_channels(channels_.finish());
    if (color_) std::fputs("\033[0m", stdout);
  }

private:
  void print_channels(const HarmonyReply& d) {
    if (!d.analysis.empty()) {
      std::fputs(color_ ? "\033[2m" : "", stdout);
      std::fwrite(d.analysis.data(), 1, d.analysis.size(), stdout);
      std::fputs(color_ ? "\033[0m" : "", stdout);
      reasoned_ = true;
    }
    if (!d.final.empty()) {
      if (reasoned_ && !answering_) std::fputs("\n\n", stdout);  // the answer below the reasoning
      answering_ = true;
      std::fwrite(d.final.data(), 1, d.final.size(), stdout);
    }
    std::fflush(stdout);
  }
  bool color_, thinking_, harmony_;
  HarmonyStream channels_;
  bool reasoned_ = false, answering_ = false;
};

void print_stats(const GenerateResult& r) {
  std::fprintf(stderr, "\n[prompt %lld tokens (%lld new), generated %zu tokens, prefill %.1f tok/s, decode %.1f tok/s, %s]\n",
               (long long)r.n_prompt, (long long)r.n_prefilled, r.tokens.size(),
               r.prefill_s > 0 ? double(r.n_prefilled) / r.prefill_s : 0.0,
               r.decode_s > 0 ? double(r.tokens.size()) / r.decode_s : 0.0, r.finish_reason.c_str());
}

void run(const RunArgs& a) {
  const Model model = load_model(a.dir, a.lora, a.ctx);
  const auto tok = Tokenizer::load(a.dir);
  if (tok->vocab_size() > model.config.n_vocab)
    fail("{}: the tokenizer has {} tokens but the model {} embedding rows", a.dir, tok->vocab_size(), model.config.n_vocab);
  std::unique_ptr<ChatTemplate> tmpl;
  if (!a.raw) {
    tmpl = ChatTemplate::choose(a.chat_template, tok.get());
    if (!a.reasoning_effort.empty()) {
      if (!tmpl || tmpl->family() != ChatTemplate::Family::Harmony)
        fail("--reasoning-effort: only the harmony chat format (GPT-OSS) states one");
      tmpl->set_reasoning_effort(a.reasoning_effort);
    }
    if (!tmpl && a.chat) fail("{}: the tokenizer has no chat template; give --chat-template NAME", a.dir);
  }
  const int64_t n_ctx = std::min<int64_t>(a.ctx, std::max<int64_t>(model.config.max_position_embeddings, 1));
  Generator gen(model, *tok, n_ctx);
  SamplerSettings sampler = a.s;  // each chat turn draws with the next seed
  GenerateOptions opt;
  opt.max_new_tokens = a.n_predict;
  opt.stop = a.stop;
  const bool harmony = tmpl && tmpl->family() == ChatTemplate::Family::Harmony;
  opt.special_text = harmony;  // its channels are told apart by special tokens
  const bool color = !a.no_color && ::isatty(1);
  struct sigaction sa {};
  sa.sa_handler = on_sigint;  // no SA_RESTART: a blocked read returns so the prompt can react
  sigaction(SIGINT, &sa, nullptr);
  auto keep_going = [](const std::string&) { return !g_interrupted.load(); };

  const bool interactive = a.chat || (a.prompt.empty() && ::isatty(0));
  if (!interactive) {
    std::string text = a.prompt;
    if (text.empty()) text.assign(std::istreambuf_iterator<char>(std::cin), {});  // -p omitted: stdin
    std::vector<ChatMessage> msgs;
    if (!a.system.empty()) msgs.push_back({"system", a.system});
    msgs.push_back({"user", text});
    const std::string rendered = tmpl ? tmpl->render(msgs, true) : text;
    const std::vector<int32_t> ids = tmpl ? tok->encode(rendered, false, true) : tok->encode(rendered, true, false);
    ReplyPrinter out(color, rendered.size() >= 8 && rendered.compare(rendered.size() - 8, 8, "<think>\n") == 0, harmony);
    const GenerateResult r = gen.generate(ids, sampler, opt, [&](const std::string& p) {
      out.print(p);
      return keep_going(p);
    });
    print_stats(r);
    return;
  }

  if (!tmpl) fail("{}: interactive chat needs a chat template; give --chat-template NAME", a.dir);
  std::fprintf(stderr, "distill chat — %s, %s template, %d threads. /reset clears the conversation, /exit quits; "
               "Ctrl-C stops a reply.\n", a.dir.c_str(), tmpl->name(), num_threads());
  std::vector<ChatMessage> msgs;
  if (!a.system.empty()) msgs.push_back({"system", a.system});
  std::string line = a.prompt;
  for (bool first = true;; first = false) {
    if (!(first && !line.empty())) {
      std::fputs(color ? "\033[1m> \033[0m" : "> ", stdout);
      std::fflush(stdout);
      g_interrupted = false;
      if (!std::getline(std::cin, line)) {
        if (g_interrupted && !std::cin.eof()) {  // Ctrl-C at the prompt: a hint, not an exit
          std::cin.clear();
          std::fputs("\n(/exit or Ctrl-D to quit)\n", stdout);
          continue;
        }
        std::fputs("\n", stdout);
        break;
      }
    }
    if (line == "/exit" || line == "/quit") break;
    if (line == "/reset") {
      msgs.erase(std::remove_if(msgs.begin(), msgs.end(), [](const ChatMessage& m) { return m.role != "system"; }), msgs.end());
      gen.reset();
      std::fputs("(conversation cleared)\n", stdout);
      continue;
    }
    if (line.empty()) continue;
    msgs.push_back({"user", line});
    const std::string rendered = tmpl->render(msgs, true);
    const std::vector<int32_t> ids = tok->encode(rendered, false, true);
    g_interrupted = false;
    GenerateResult r;
    {
      ReplyPrinter out(color, rendered.size() >= 8 && rendered.compare(rendered.size() - 8, 8, "<think>\n") == 0, harmony);
      try {
        r = gen.generate(ids, sampler, opt, [&](const std::string& p) {
          out.print(p);
          return keep_going(p);
        });
      } catch (const Error& e) {
        std::fprintf(stderr, "\n%s (/reset to start over)\n", e.what());
        msgs.pop_back();
        continue;
      }
    }
    print_stats(r);
    ++sampler.seed;
    msgs.push_back({"assistant", r.text});
  }
}

}  // namespace

void register_run(CLI::App& app) {
  auto a = std::make_shared<RunArgs>();
  CLI::App* cmd = app.add_subcommand("run", "Generate text or chat with a model directory or GGUF file");
  cmd->add_option("model", a->dir, "Model directory (config.json, *.safetensors, tokenizer.json) or GGUF file")->required();
  add_lora_adapter_option(cmd, &a->lora);
  cmd->add_option("-p,--prompt", a->prompt, "Prompt (sent as a user message when the model has a chat template)");
  cmd->add_flag("--chat", a->chat, "Interactive multi-turn chat (the default without -p on a terminal)");
  cmd->add_flag("--raw", a->raw, "Send the prompt as plain text, without the chat template");
  cmd->add_option("--system", a->system, "System message");
  cmd->add_option("--chat-template", a->chat_template, "Chat format instead of the detected one");
  cmd->add_option("--reasoning-effort", a->reasoning_effort, "low | medium | high (harmony / GPT-OSS; default medium)");
  cmd->add_option("-n,--max-tokens", a->n_predict, "Tokens to generate at most per reply")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--ctx", a->ctx, "Context length (capped by max_position_embeddings)")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--temp", a->s.temperature, "Temperature (0 = greedy)")->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->add_option("--top-k", a->s.top_k, "Top-k (0 = off)")->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->add_option("--top-p", a->s.top_p, "Top-p nucleus mass (1 = off)")->capture_default_str()->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--min-p", a->s.min_p, "Min-p relative cut (0 = off)")->capture_default_str()->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--repeat-penalty", a->s.repetition_penalty, "Repetition penalty (1 = off)")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--presence-penalty", a->s.presence_penalty, "Presence penalty")->capture_default_str();
  cmd->add_option("--frequency-penalty", a->s.frequency_penalty, "Frequency penalty")->capture_default_str();
  cmd->add_option("--seed", a->s.seed, "Sampling seed (same seed, same text)")->capture_default_str();
  cmd->add_option("--stop", a->stop, "Stop string (repeatable)");
  cmd->add_flag("--no-color", a->no_color, "Do not dim reasoning on a terminal");
  cmd->callback([a] { run(*a); });
}

}  // namespace distill
