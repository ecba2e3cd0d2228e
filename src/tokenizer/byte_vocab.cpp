#include "tokenizer/byte_vocab.h"

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/regex.h"
#include "tokenizer/text_pipeline.h"

#include <nlohmann/json.hpp>

#include <filesystem>
#include <map>

namespace distill {

using nlohmann::json;

namespace {
// Qwen2's pre-tokenizer (single digits, so arithmetic is learned digit by digit): one llama.cpp
// knows by name ("qwen2"), so a model with this tokenizer exports to GGUF and tokenizes the same
// in llama.cpp. With its NFC normaliser, as Qwen2's tokenizer.json has.
const char* kSplit =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
}

TokenizerFiles make_byte_level_tokenizer(const std::string& training_text, int n_merges, bool chat_template,
                                         int64_t vocab_size) {
  json vocab = json::object();
  std::vector<std::string> id_to_token;
  for (int b = 0; b < 256; ++b) {
    vocab[byte_to_unicode(uint8_t(b))] = b;
    id_to_token.push_back(byte_to_unicode(uint8_t(b)));
  }
  // Learn merges: words as sequences of token strings; repeatedly merge the most frequent pair.
  std::map<std::string, int64_t> word_counts;
  if (!training_text.empty() && n_merges > 0) {
    Regex re(kSplit);
    for (auto [b, e] : re.find_all(training_text)) ++word_counts[training_text.substr(b, e - b)];
  }
  std::vector<std::pair<std::vector<std::string>, int64_t>> words;
  for (const auto& [w, c] : word_counts) {
    std::vector<std::string> syms;
    for (unsigned char ch : w) syms.push_back(byte_to_unicode(ch));
    words.push_back({syms, c});
  }
  json merges = json::array();
  for (int m = 0; m < n_merges; ++m) {
    std::map<std::pair<std::string, std::string>, int64_t> pairs;
    for (const auto& [syms, c] : words)
      for (size_t i = 0; i + 1 < syms.size(); ++i) pairs[{syms[i], syms[i + 1]}] += c;
    if (pairs.empty()) break;
    auto best = pairs.begin();
    for (auto it = pairs.begin(); it != pairs.end(); ++it)
      if (it->second > best->second) best = it;  // ties: the first in sorted order, deterministic
    if (best->second < 2) break;
    const auto [a, b] = best->first;
    merges.push_back(json::array({a, b}));
    vocab[a + b] = int(id_to_token.size());
    id_to_token.push_back(a + b);
    for (auto& [syms, c] : words) {
      std::vector<std::string> next;
      for (size_t i = 0; i < syms.size(); ++i) {
        if (i + 1 < syms.size() && syms[i] == a && syms[i + 1] == b) next.push_back(a + b), ++i;
        else next.push_back(syms[i]);
      }
      syms = std::move(next);
    }
  }
  // Padding to a given size: valid merges of letters (pairs, then a letter appended to each pair),
  // so the vocabulary is exactly vocab_size tokens (a GGUF export must match its embedding rows).
  const int64_t n_special = 3;
  if (vocab_size > 0) {
    if (vocab_size < int64_t(id_to_token.size()) + n_special)
      fail("a byte-level vocabulary needs at least {} tokens, not {}", id_to_token.size() + n_special, vocab_size);
    std::string letters;
    for (char c = 'a'; c <= 'z'; ++c) letters += c;
    for (char c = 'A'; c <= 'Z'; ++c) letters += c;
    auto add = [&](const std::string& a, const std::string& b) {
      if (int64_t(id_to_token.size()) + n_special >= vocab_size || vocab.contains(a + b)) return;
      merges.push_back(json::array({a, b}));
      vocab[a + b] = int(id_to_token.size());
      id_to_token.push_back(a + b);
    };
    for (char a : letters)
      for (char b : letters) add(std::string(1, a), std::string(1, b));
    for (char a : letters)
      for (char b : letters)
        for (char c : letters) add(std::string(1, a) + b, std::string(1, c));
    for (char a : letters)  // past ~143 000 tokens (Qwen's 151 936): four letters
      for (char b : letters)
        for (char c : letters)
          for (char d : letters) {
            if (int64_t(id_to_token.size()) + n_special >= vocab_size) break;
            add(std::string(1, a) + b + c, std::string(1, d));
          }
    if (int64_t(id_to_token.size()) + n_special != vocab_size) fail("cannot pad a byte-level vocabulary to {} tokens", vocab_size);
  }
  json added = json::array();
  int next_id = int(id_to_token.size());
  for (const char* special : {"<|endoftext|>", "<|im_start|>", "<|im_end|>"})
    added.push_back({{"id", next_id++}, {"content", special}, {"single_word", false}, {"lstrip", false},
                     {"rstrip", false}, {"normalized", false}, {"special", true}});
  json tok = {
      {"version", "1.0"},
      {"added_tokens", added},
      {"normalizer", {{"type", "NFC"}}},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers",
         {{{"type", "Split"}, {"pattern", {{"Regex", kSplit}}}, {"behavior", "Isolated"}, {"invert", false}},
          {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false}, {"use_regex", false}}}}}},
      {"post_processor", nullptr},
      {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false}, {"use_regex", false}}},
      {"model",
       {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"byte_fallback", false}, {"fuse_unk", false},
        {"ignore_merges", false}, {"vocab", vocab}, {"merges", merges}}}};
  json cfg = {{"tokenizer_class", "PreTrainedTokenizerFast"}, {"bos_token", nullptr}, {"eos_token", "<|im_end|>"},
              {"pad_token", "<|endoftext|>"}, {"add_bos_token", false},
              {"chat_template",
               "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + "
               "'<|im_end|>' + '\\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"}};
  if (!chat_template) cfg.erase("chat_template");
  return {tok.dump(), cfg.dump(2)};
}

void write_tokenizer_files(const std::string& dir, const TokenizerFiles& f) {
  std::filesystem::create_directories(dir);
  write_file_atomic(dir + "/tokenizer.json", f.tokenizer_json.data(), f.tokenizer_json.size());
  write_file_atomic(dir + "/tokenizer_config.json", f.tokenizer_config_json.data(), f.tokenizer_config_json.size());
}

}  // namespace distill
