#include "teacher/label_prompts.h"

#include "core/error.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

#include <fstream>

namespace distill {

using nlohmann::json;

std::pair<int, int> parse_shard(const std::string& spec) {
  int i = -1, n = -1;
  char extra = 0;
  if (std::sscanf(spec.c_str(), "%d/%d%c", &i, &n, &extra) != 2 || n <= 0 || i < 0 || i >= n)
    fail("--shard '{}': expected I/N with 0 <= I < N", spec);
  return {i, n};
}

std::vector<LabelPrompt> read_label_prompts(const std::string& path, const Tokenizer* tok, const ChatTemplate* tmpl,
                                            int shard, int n_shards, bool need_completion) {
  std::ifstream in(path);
  if (!in) fail("{}: cannot open", path);
  std::vector<LabelPrompt> out;
  std::string line;
  for (uint64_t n = 0; std::getline(in, line); ++n) {
    with_context(path + ":" + std::to_string(n + 1), [&] {
      if (line.find_first_not_of(" \t\r") == std::string::npos) fail("empty line");
      LabelPrompt p;
      p.index = n;
      try {
        p.line = json::parse(line);
      } catch (const json::exception& e) {
        fail("malformed JSON: {}", e.what());
      }
      if (!p.line.is_object()) fail("expected a JSON object");
      const std::vector<ChatMessage> msgs = prompt_messages(p.line);
      if (p.line.contains("completion")) {
        if (!p.line["completion"].is_string()) fail("\"completion\" must be a string");
        p.completion = p.line["completion"].get<std::string>();
      } else if (need_completion) {
        fail("--score-completions needs a \"completion\" on every line");
      }
      for (const ChatMessage& m : msgs) p.messages.push_back({{"role", m.role}, {"content", m.content}});
      if (int(n % uint64_t(n_shards)) != shard) return;  // another shard's prompt (still validated)
      if (tok) {
        p.ids = encode_prompt(*tok, tmpl, msgs);
        if (p.ids.empty()) fail("the prompt encodes to no tokens");
      }
      out.push_back(std::move(p));
    });
  }
  return out;
}

}  // namespace distill
