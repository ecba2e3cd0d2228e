#include "tokenizer/chat_template.h"

#include "core/error.h"
#include "core/system.h"
#include "tokenizer/tokenizer.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <ctime>

namespace distill {

using F = ChatTemplate::Family;

namespace {

struct FamilyName {
  F family;
  const char* name;
};
constexpr FamilyName kNames[] = {{F::ChatML, "chatml"}, {F::Qwen25, "qwen2.5"}, {F::Qwen3, "qwen3"},
                                 {F::Llama3, "llama3"}, {F::Llama2, "llama2"}, {F::Mistral, "mistral"},
                                 {F::DeepSeekR1, "deepseek-r1"}, {F::Harmony, "harmony"}};


std::string trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t\r\n"), e = s.find_last_not_of(" \t\r\n");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

// The answer after the reasoning: text following the last "</think>", leading newlines removed.
std::string strip_reasoning(const std::string& s) {
  const size_t p = s.rfind("</think>");
  if (p == std::string::npos) return s;
  std::string rest = s.substr(p + 8);
  rest.erase(0, rest.find_first_not_of('\n') == std::string::npos ? rest.size() : rest.find_first_not_of('\n'));
  return rest;
}

std::string known_names() {
  std::string s;
  for (const FamilyName& n : kNames) s += (s.empty() ? "" : ", ") + std::string(n.name);
  return s;
}

}  // namespace

std::vector<ChatMessage> parse_messages(const nlohmann::json& j) {
  if (!j.is_array() || j.empty()) fail("\"messages\" must be a non-empty array");
  std::vector<ChatMessage> out;
  for (size_t i = 0; i < j.size(); ++i) {
    const auto& m = j[i];
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string())
      fail("messages[{}]: needs a \"role\" string", i);
    const std::string role = m["role"];
    if (role != "system" && role != "user" && role != "assistant")
      fail("messages[{}]: role '{}' is not one of system, user, assistant", i, role);
    if (!m.contains("content") || !m["content"].is_string())
      fail("messages[{}]: needs a \"content\" string", i);
    out.push_back({role, m["content"].get<std::string>()});
  }
  return out;
}

std::vector<ChatMessage> prompt_messages(const nlohmann::json& line) {
  if (line.contains("messages")) return parse_messages(line["messages"]);
  if (line.contains("prompt") && line["prompt"].is_string()) return {{"user", line["prompt"].get<std::string>()}};
  fail("expected \"prompt\" (a string) or \"messages\"");
}

std::vector<int32_t> encode_prompt(const Tokenizer& tok, const ChatTemplate* tmpl, const std::vector<ChatMessage>& msgs) {
  if (tmpl) return tok.encode(tmpl->render(msgs, true), false, true);
  std::string text;
  for (const ChatMessage& m : msgs) text += m.content;
  return tok.encode(text, true, false);
}

std::unique_ptr<ChatTemplate> ChatTemplate::choose(const std::string& name, const Tokenizer* tok) {
  if (!name.empty()) return std::make_unique<ChatTemplate>(by_name(name));
  if (tok && !tok->chat_template().empty()) return std::make_unique<ChatTemplate>(detect(*tok));
  return nullptr;
}

std::vector<std::string> ChatTemplate::names() {
  std::vector<std::string> v;
  for (const FamilyName& n : kNames) v.push_back(n.name);
  return v;
}

const char* ChatTemplate::name() const {
  for (const FamilyName& n : kNames)
    if (n.family == family_) return n.name;
  return "?";
}

ChatTemplate ChatTemplate::by_name(const std::string& name) {
  for (const FamilyName& n : kNames)
    if (name == n.name) return ChatTemplate(n.family);
  fail("chat template '{}' is not known (known: {})", name, known_names());
}

ChatTemplate ChatTemplate::detect(const Tokenizer& tok) {
  const std::string& t = tok.chat_template();
  if (t.empty())
    fail("the tokenizer has no chat_template; choose one with --chat-template (known: {})", known_names());
  if (t.find("<｜Assistant｜>") != std::string::npos) return ChatTemplate(F::DeepSeekR1);
  if (t.find("<|channel|>") != std::string::npos) return ChatTemplate(F::Harmony);
  if (t.find("<|start_header_id|>") != std::string::npos) return ChatTemplate(F::Llama3);
  if (t.find("<|im_start|>") != std::string::npos) {
    if (t.find("</think>") != std::string::npos) return ChatTemplate(F::Qwen3);
    if (t.find("You are Qwen, created by Alibaba Cloud") != std::string::npos) return ChatTemplate(F::Qwen25);
    return ChatTemplate(F::ChatML);
  }
  if (t.find("<<SYS>>") != std::string::npos) return ChatTemplate(F::Llama2);
  if (t.find("[INST]") != std::string::npos) return ChatTemplate(F::Mistral);
  fail("the tokenizer's chat_template is not one we render; choose one with --chat-template (known: {})", known_names());
}

std::string ChatTemplate::render(const std::vector<ChatMessage>& msgs, bool gen) const {
  std::string out;
  switch (family_) {
    case F::ChatML:
    case F::Qwen25:
    case F::Qwen3: {
      if (family_ == F::Qwen25 && (msgs.empty() || msgs[0].role != "system"))
        out += "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n";
      // Qwen3 keeps the reasoning only of assistant turns after the last user message.
      size_t last_user = 0;
      for (size_t i = 0; i < msgs.size(); ++i)
        if (msgs[i].role == "user") last_user = i;
      for (size_t i = 0; i < msgs.size(); ++i) {
        std::string content = msgs[i].content;
        if (family_ == F::Qwen3 && msgs[i].role == "assistant" && i < last_user) content = strip_reasoning(content);
        out += "<|im_start|>" + msgs[i].role + "\n" + content + "<|im_end|>\n";
      }
      if (gen) out += "<|im_start|>assistant\n";
      return out;
    }
    case F::Llama3: {
      out = "<|begin_of_text|>";
      for (const ChatMessage& m : msgs)
        out += "<|start_header_id|>" + m.role + "<|end_header_id|>\n\n" + trim(m.content) + "<|eot_id|>";
      if (gen) out += "<|start_header_id|>assistant<|end_header_id|>\n\n";
      return out;
    }
    case F::Llama2:
    case F::Mistral: {
      // A system message joins the first user message: Llama 2 in <<SYS>> tags, Mistral as a paragraph.
      std::string system;
      size_t i = 0;
      if (!msgs.empty() && msgs[0].role == "system") system = msgs[0].content, i = 1;
      bool first_user = true;
      for (; i < msgs.size(); ++i) {
        const ChatMessage& m = msgs[i];
        if (m.role == "user") {
          std::string content = trim(m.content);
          if (first_user && !system.empty())
            content = family_ == F::Llama2 ? "<<SYS>>\n" + system + "\n<</SYS>>\n\n" + content : system + "\n\n" + content;
          out += (family_ == F::Llama2 || first_user ? "<s>" : "") + std::string("[INST] ") + content + " [/INST]";
          first_user = false;
        } else if (m.role == "assistant") {
          out += (family_ == F::Llama2 ? " " : "") + trim(m.content) + (family_ == F::Llama2 ? " </s>" : "</s>");
        }
      }
      return out;  // the reply follows "[/INST]" directly: no generation prompt to add
    }
    case F::Harmony: {
      out = "<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\nKnowledge cutoff: 2024-06\n"
            "Current date: " + (date_.empty() ? utc_now("%Y-%m-%d") : date_) + "\n\nReasoning: " + effort_ +
            "\n\n# Valid channels: analysis, commentary, final. Channel must be included for every message.<|end|>";
      std::string instructions;  // the caller's system prompt(s): harmony's developer message
      for (const ChatMessage& m : msgs)
        if (m.role == "system" || m.role == "developer") instructions += (instructions.empty() ? "" : "\n\n") + m.content;
      if (!instructions.empty()) out += "<|start|>developer<|message|># Instructions\n\n" + instructions + "<|end|>";
      for (const ChatMessage& m : msgs) {
        if (m.role == "user") out += "<|start|>user<|message|>" + m.content + "<|end|>";
        // earlier replies keep only their answer (the reasoning of a finished turn is dropped)
        else if (m.role == "assistant") out += "<|start|>assistant<|channel|>final<|message|>" + parse_harmony_reply(m.content).final + "<|end|>";
      }
      if (gen) out += "<|start|>assistant";
      return out;
    }
    case F::DeepSeekR1: {
      out = "<｜begin▁of▁sentence｜>";
      for (const ChatMessage& m : msgs)
        if (m.role == "system") out += m.content;
      for (const ChatMessage& m : msgs) {
        if (m.role == "user") out += "<｜User｜>" + m.content;
        else if (m.role == "assistant") out += "<｜Assistant｜>" + strip_reasoning(m.content) + "<｜end▁of▁sentence｜>";
      }
      if (gen) out += "<｜Assistant｜><think>\n";
      return out;
    }
  }
  return out;
}

void ChatTemplate::set_reasoning_effort(const std::string& effort) {
  if (effort != "low" && effort != "medium" && effort != "high") fail("reasoning effort '{}': low, medium or high", effort);
  effort_ = effort;
}

HarmonyReply parse_harmony_reply(const std::string& text) {
  HarmonyReply r;
  size_t i = 0;
  bool any_channel = false;
  while (true) {
    const size_t ch = text.find("<|channel|>", i);
    if (ch == std::string::npos) break;
    any_channel = true;
    const size_t msg = text.find("<|message|>", ch);
    if (msg == std::string::npos) break;  // cut short inside a header
    // "commentary to=functions.x <|constrain|>json" -> "commentary"
    std::string channel = text.substr(ch + 11, msg - ch - 11);
    channel = channel.substr(0, channel.find_first_of(" <"));
    // the content runs to the message's end token (<|end|>, <|return|>, <|call|>) or the text's end
    size_t end = text.size();
    for (const char* stop : {"<|end|>", "<|return|>", "<|call|>", "<|start|>"}) end = std::min(end, text.find(stop, msg + 11));
    (channel == "final" ? r.final : r.analysis) += text.substr(msg + 11, end - msg - 11);
    i = end;
  }
  if (!any_channel) r.final = text;  // not harmony-formatted: all of it is the answer
  return r;
}

HarmonyReply HarmonyStream::delta(size_t upto) {
  const HarmonyReply all = parse_harmony_reply(text_.substr(0, upto));
  HarmonyReply d;
  if (all.analysis.size() > sent_analysis_) d.analysis = all.analysis.substr(sent_analysis_), sent_analysis_ = all.analysis.size();
  if (all.final.size() > sent_final_) d.final = all.final.substr(sent_final_), sent_final_ = all.final.size();
  return d;
}

HarmonyReply HarmonyStream::push(const std::string& text) {
  text_ += text;
  // parse up to an unfinished special token ("<|" without its "|>"): its text is not content
  size_t upto = text_.size();
  const size_t open = text_.rfind("<|");
  if (open != std::string::npos && text_.find("|>", open + 2) == std::string::npos) upto = open;
  else if (!text_.empty() && text_.back() == '<') upto = text_.size() - 1;  // may become "<|"
  return delta(upto);
}

HarmonyReply HarmonyStream::finish() { return delta(text_.size()); }

void ChatTemplate::tokenize_conversation(const Tokenizer& tok, const std::vector<ChatMessage>& msgs,
                                         std::vector<int32_t>* ids, std::vector<uint8_t>* mask) const {
  // The template's text carries its own BOS: no post-processor specials on top.
  auto encode = [&](const std::string& s) { return tok.encode(s, false, true); };
  *ids = encode(render(msgs, false));
  mask->assign(ids->size(), 0);
  // Reply i spans the tokens between the prompt that precedes it (with the generation prompt) and
  // the conversation through it. Prefix tokenisations agree with the whole one because replies
  // start after a special token or a header that ends in a newline.
  for (size_t i = 0; i < msgs.size(); ++i) {
    if (msgs[i].role != "assistant") continue;
    std::vector<ChatMessage> before(msgs.begin(), msgs.begin() + int64_t(i));
    std::vector<ChatMessage> through(msgs.begin(), msgs.begin() + int64_t(i) + 1);
    const size_t begin = encode(render(before, true)).size();
    size_t end = encode(render(through, false)).size();
    // The trailing newline after an end-of-turn token (ChatML) is formatting, not the reply.
    if (family_ == F::ChatML || family_ == F::Qwen25 || family_ == F::Qwen3) end = end > 0 ? end - 1 : end;
    for (size_t k = begin; k < std::min(end, ids->size()); ++k) (*mask)[k] = 1;
  }
}

}  // namespace distill
