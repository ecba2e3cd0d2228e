// A small SentencePiece-style tokenizer.json made in memory (no network), shared by the tokenizer
// tests and the hardening tests' mutation sweep.
#pragma once

#include <nlohmann/json.hpp>

#include <cstdio>

namespace distill::test {

// A SentencePiece-style BPE: ▁-prefixed pieces, byte fallback, <s> added by the post-processor.
inline nlohmann::json spm_tokenizer_json() {
  using nlohmann::json;
  json vocab = {{"<unk>", 0}, {"<s>", 1}, {"</s>", 2}};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", b);
    vocab[name] = 3 + b;
  }
  int id = 259;
  for (const char* t : {"\xe2\x96\x81", "a", "b", "c", "\xe2\x96\x81" "a", "ab", "\xe2\x96\x81" "ab", "bc"}) vocab[t] = id++;
  return json{{"normalizer", {{"type", "Sequence"}, {"normalizers", {{{"type", "Prepend"}, {"prepend", "\xe2\x96\x81"}},
                                                                     {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\xe2\x96\x81"}}}}}},
              {"pre_tokenizer", nullptr},
              {"post_processor", {{"type", "TemplateProcessing"},
                                  {"single", {{{"SpecialToken", {{"id", "<s>"}, {"type_id", 0}}}}, {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
                                  {"special_tokens", {{"<s>", {{"id", "<s>"}, {"ids", {1}}, {"tokens", {"<s>"}}}}}}}},
              {"decoder", {{"type", "Sequence"}, {"decoders", {{{"type", "Replace"}, {"pattern", {{"String", "\xe2\x96\x81"}}}, {"content", " "}},
                                                               {{"type", "ByteFallback"}}, {{"type", "Fuse"}},
                                                               {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}}}}},
              {"added_tokens", {{{"id", 0}, {"content", "<unk>"}, {"special", true}},
                                {{"id", 1}, {"content", "<s>"}, {"special", true}},
                                {{"id", 2}, {"content", "</s>"}, {"special", true}}}},
              {"model", {{"type", "BPE"}, {"unk_token", "<unk>"}, {"byte_fallback", true}, {"fuse_unk", true}, {"vocab", vocab},
                         {"merges", {"\xe2\x96\x81 a", "a b", "\xe2\x96\x81" "a b", "b c"}}}}};
}


inline std::string spm_json() { return spm_tokenizer_json().dump(); }

}  // namespace distill::test
