// The prompts file of `distill label`: JSONL, one prompt per line, {"id"?, "prompt"} or
// {"id"?, "messages": [...]}, plus "completion" for --score-completions. The prompt index is
// the 0-based line number, so --shard I/N and resuming always agree on what a prompt is.
#pragma once

#include <nlohmann/json.hpp>

#include <optional>
#include <string>
#include <vector>

namespace distill {

class Tokenizer;
class ChatTemplate;

struct LabelPrompt {
  uint64_t index = 0;
  nlohmann::json line;                   // the JSONL object
  std::vector<nlohmann::json> messages;  // as OpenAI messages (for remote teachers)
  std::vector<int32_t> ids;              // rendered with the chat template (generation prompt)
  std::optional<std::string> completion;
};

// Reads the prompts of shard `shard` of `n_shards` (index % n_shards == shard). tok may be null
// (remote teacher without a local tokenizer): ids then stay empty.
std::vector<LabelPrompt> read_label_prompts(const std::string& path, const Tokenizer* tok, const ChatTemplate* tmpl,
                                            int shard, int n_shards, bool need_completion);

// "I/N" -> (I, N) with 0 <= I < N; throws otherwise.
std::pair<int, int> parse_shard(const std::string& spec);

}  // namespace distill
