// Chat templates: render a conversation into the text a model was fine-tuned on. The Jinja
// templates of tokenizer_config.json are recognised by their markers and rendered by built-in
// C++ code for each family (no Jinja interpreter): the formats are few and fixed, and a renderer
// we wrote and tested is safer than executing template code from a downloaded file.
//
//   chatml      <|im_start|>role\n…<|im_end|>\n                     (generic ChatML)
//   qwen2.5     ChatML with Qwen's default system prompt
//   qwen3       ChatML; earlier assistant turns lose their <think>…</think> reasoning
//   llama3      <|start_header_id|>role<|end_header_id|>\n\n…<|eot_id|>
//   llama2      <s>[INST] <<SYS>>\n…\n<</SYS>>\n\n… [/INST] … </s>
//   mistral     <s>[INST] … [/INST]…</s>
//   deepseek-r1 <｜begin▁of▁sentence｜>system<｜User｜>…<｜Assistant｜>…<｜end▁of▁sentence｜>
//   harmony     GPT-OSS: <|start|>role<|message|>…<|end|>, a system message (identity, knowledge
//               cutoff, date, reasoning effort, channels), the caller's system prompt as the
//               developer message, earlier assistant turns as their final channel
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <memory>
#include <string>
#include <vector>

namespace distill {

class Tokenizer;
class ChatTemplate;

struct ChatMessage {
  std::string role;     // system | user | assistant
  std::string content;
};

// Reads [{"role": ..., "content": ...}, ...]; throws naming the bad element.
std::vector<ChatMessage> parse_messages(const nlohmann::json& j);
// The conversation of a prompts-file line: {"messages": [...]} or {"prompt": "..."} (one user turn).
std::vector<ChatMessage> prompt_messages(const nlohmann::json& line);
// Prompt ids: rendered with the template (generation prompt added), or without one the messages'
// text with the tokenizer's BOS.
std::vector<int32_t> encode_prompt(const Tokenizer& tok, const ChatTemplate* tmpl, const std::vector<ChatMessage>& msgs);

// A harmony reply (GPT-OSS) split into its channels: the text of `analysis` messages (the
// reasoning) and of the `final` one (the answer). `text` is the generated continuation of the
// generation prompt, special tokens kept: <|channel|>analysis<|message|>…<|end|><|start|>assistant
// <|channel|>final<|message|>…<|return|>. A reply cut short keeps what was generated; text outside
// any channel counts as the answer.
struct HarmonyReply {
  std::string analysis, final;
};
HarmonyReply parse_harmony_reply(const std::string& text);

// The same split while the reply streams in: each push returns what became certain of each
// channel (text that may be the start of a special token is held back until it is known).
class HarmonyStream {
public:
  HarmonyReply push(const std::string& text);
  HarmonyReply finish();  // the rest, at the end of the generation

private:
  HarmonyReply delta(size_t upto);
  std::string text_;
  size_t sent_analysis_ = 0, sent_final_ = 0;
};

class ChatTemplate {
public:
  enum class Family { ChatML, Qwen25, Qwen3, Llama3, Llama2, Mistral, DeepSeekR1, Harmony };

  // The family of the tokenizer's chat_template; throws listing the known names if unrecognised.
  static ChatTemplate detect(const Tokenizer& tok);
  // By name (chatml, qwen2.5, qwen3, llama3, llama2, mistral, deepseek-r1); throws listing them.
  static ChatTemplate by_name(const std::string& name);
  static std::vector<std::string> names();
  // --chat-template NAME if given, else the tokenizer's own template, else none (nullptr).
  static std::unique_ptr<ChatTemplate> choose(const std::string& name, const Tokenizer* tok);

  // The prompt text; with add_generation_prompt, ends where the assistant's reply begins.
  std::string render(const std::vector<ChatMessage>& messages, bool add_generation_prompt) const;
  const char* name() const;
  Family family() const { return family_; }
  // Harmony only: the reasoning effort (low, medium — the default —, high) and the date the
  // system message states (default: today, UTC).
  void set_reasoning_effort(const std::string& effort);
  void set_date(const std::string& yyyy_mm_dd) { date_ = yyyy_mm_dd; }

  // Token ids of a conversation and a mask that is 1 on the assistant replies (and the token
  // that ends each reply): the targets of supervised fine-tuning.
  void tokenize_conversation(const Tokenizer& tok, const std::vector<ChatMessage>& messages,
                             std::vector<int32_t>* ids, std::vector<uint8_t>* mask) const;

private:
  explicit ChatTemplate(Family f) : family_(f) {}
  Family family_;
  std::string effort_ = "medium", date_;
};

}  // namespace distill
