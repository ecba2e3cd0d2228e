#include "tokenizer/gguf_vocab.h"

#include "core/error.h"
#include "formats/gguf.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <map>
#include <unordered_map>

namespace distill {

using json = nlohmann::json;

namespace {

enum TokenType { kNormal = 1, kUnknown = 2, kControl = 3, kUserDefined = 4, kUnused = 5, kByte = 6 };

// The gpt2 pre-tokenizer regexes llama.cpp knows by name (the same splits as these models'
// tokenizer.json, written in the form Hugging Face uses).
const char* kLlama3Regex =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char* kQwen2Regex =
    "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
// gpt-4o / o200k (GPT-OSS's o200k_harmony): letters split by case runs, contractions attached.
const char* kGpt4oRegex =
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|"
    "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|"
    "\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+";
const char* kGpt2Regex = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)|\\s+";

struct PreType {
  const char* name;
  const char* regex;
  bool nfc, ignore_merges;
};
const PreType kPreTypes[] = {
    {"llama-bpe", kLlama3Regex, false, true},  {"llama3", kLlama3Regex, false, true},
    {"qwen2", kQwen2Regex, true, false},       {"deepseek-r1-qwen", kQwen2Regex, true, false},
    {"gpt-2", kGpt2Regex, false, false},       {"default", kGpt2Regex, false, false},
    {"gpt-4o", kGpt4oRegex, false, true},
};

std::vector<std::string> string_array(const GgufFile& g, const std::string& key) {
  const GgufValue& v = g.get(key);
  if (v.type != GgufType::Array || v.elem != GgufType::String) fail("{}: metadata '{}' must be an array of strings", g.path(), key);
  std::vector<std::string> out;
  out.reserve(v.arr.size());
  for (const GgufValue& e : v.arr) out.push_back(e.s);
  return out;
}

std::vector<double> number_array(const GgufFile& g, const std::string& key, size_t n) {
  std::vector<double> out(n, 0.0);
  const GgufValue* v = g.find(key);
  if (!v) return out;
  if (v->type != GgufType::Array || v->arr.size() != n) fail("{}: metadata '{}' must be an array of {} numbers", g.path(), key, n);
  for (size_t i = 0; i < n; ++i) out[i] = v->arr[i].as_double();
  return out;
}

int64_t optional_id(const GgufFile& g, const std::string& key, size_t n_tokens) {
  const GgufValue* v = g.find(key);
  if (!v) return -1;
  if (!v->is_integer() || v->as_int() < 0 || size_t(v->as_int()) >= n_tokens)
    fail("{}: metadata '{}' must be a token id below {}", g.path(), key, n_tokens);
  return v->as_int();
}

// SentencePiece merges from scores: every split of a token into two tokens, ranked by the
// token's score (higher first) — what SentencePiece's BPE merges greedily.
json spm_merges(const std::vector<std::string>& tokens, const std::vector<double>& scores, const std::vector<int>& types) {
  std::unordered_map<std::string, int32_t> id;
  for (size_t i = 0; i < tokens.size(); ++i) id.emplace(tokens[i], int32_t(i));
  struct Merge {
    double score;
    int32_t merged, a, b;
  };
  std::vector<Merge> merges;
  for (size_t t = 0; t < tokens.size(); ++t) {
    if (types[t] != kNormal && types[t] != kUserDefined) continue;
    const std::string& s = tokens[t];
    for (size_t cut = 1; cut < s.size(); ++cut) {
      if ((uint8_t(s[cut]) & 0xC0) == 0x80) continue;  // not a character boundary
      auto a = id.find(s.substr(0, cut)), b = id.find(s.substr(cut));
      if (a != id.end() && b != id.end()) merges.push_back({scores[t], int32_t(t), a->second, b->second});
    }
  }
  std::stable_sort(merges.begin(), merges.end(), [](const Merge& x, const Merge& y) {
    return x.score != y.score ? x.score > y.score : x.merged < y.merged;
  });
  json out = json::array();
  for (const Merge& m : merges) out.push_back(json::array({tokens[size_t(m.a)], tokens[size_t(m.b)]}));
  return out;
}

}  // namespace

namespace {

TokenizerFiles files_from_gguf(const GgufFile& g, bool use_embedded_json) {
  TokenizerFiles f;
  const std::vector<std::string> tokens = string_array(g, "tokenizer.ggml.tokens");
  const size_t n = tokens.size();
  const std::string model = g.get_string("tokenizer.ggml.model");
  std::vector<int> types(n, kNormal);
  if (g.find("tokenizer.ggml.token_type"))
    for (size_t i = 0; const double t : number_array(g, "tokenizer.ggml.token_type", n)) types[i++] = int(t);
  const int64_t bos = optional_id(g, "tokenizer.ggml.bos_token_id", n), eos = optional_id(g, "tokenizer.ggml.eos_token_id", n);
  const int64_t unk = optional_id(g, "tokenizer.ggml.unknown_token_id", n);

  json cfg = json::object();
  if (bos >= 0) cfg["bos_token"] = tokens[size_t(bos)];
  if (eos >= 0) cfg["eos_token"] = tokens[size_t(eos)];
  if (const GgufValue* v = g.find("tokenizer.ggml.add_bos_token")) cfg["add_bos_token"] = v->as_int() != 0;
  else cfg["add_bos_token"] = model == "llama";  // llama.cpp's defaults
  if (const GgufValue* v = g.find("tokenizer.ggml.add_eos_token")) cfg["add_eos_token"] = v->as_int() != 0;
  if (const GgufValue* v = g.find("tokenizer.chat_template"); v && v->type == GgufType::String) cfg["chat_template"] = v->s;
  f.tokenizer_config_json = cfg.dump(2);

  if (const GgufValue* hf = g.find("tokenizer.huggingface.json"); use_embedded_json && hf && hf->type == GgufType::String) {
    f.tokenizer_json = hf->s;
    return f;
  }

  json added = json::array();
  for (size_t i = 0; i < n; ++i)
    if (types[i] == kControl || types[i] == kUserDefined || (model == "llama" && types[i] == kUnknown))
      added.push_back({{"id", i}, {"content", tokens[i]}, {"single_word", false}, {"lstrip", false}, {"rstrip", false},
                       {"normalized", types[i] == kUserDefined}, {"special", types[i] != kUserDefined}});
  json vocab = json::object();
  for (size_t i = 0; i < n; ++i) vocab[tokens[i]] = i;  // a repeated string keeps its last id (as HF does)
  json tj = {{"version", "1.0"}, {"truncation", nullptr}, {"padding", nullptr}, {"added_tokens", added}, {"post_processor", nullptr}};

  if (model == "gpt2") {
    std::string pre = g.find("tokenizer.ggml.pre") ? g.get_string("tokenizer.ggml.pre") : "default";
    const PreType* p = nullptr;
    for (const PreType& x : kPreTypes)
      if (pre == x.name) p = &x;
    if (!p) {
      std::string known;
      for (const PreType& x : kPreTypes) known += std::string(known.empty() ? "" : ", ") + x.name;
      fail("{}: tokenizer.ggml.pre '{}' is not a pre-tokenizer distill knows (known: {})", g.path(), pre, known);
    }
    json merges = json::array();
    for (const std::string& m : string_array(g, "tokenizer.ggml.merges")) {
      const size_t sp = m.find(' ', 1);  // the first space after the first character: "Ġ t" -> ["Ġ", "t"]
      if (sp == std::string::npos) fail("{}: merge '{}' is not two tokens separated by a space", g.path(), m);
      merges.push_back(json::array({m.substr(0, sp), m.substr(sp + 1)}));
    }
    tj["normalizer"] = p->nfc ? json{{"type", "NFC"}} : json(nullptr);
    tj["pre_tokenizer"] = {{"type", "Sequence"},
                           {"pretokenizers",
                            {{{"type", "Split"}, {"pattern", {{"Regex", p->regex}}}, {"behavior", "Isolated"}, {"invert", false}},
                             {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false}, {"use_regex", false}}}}};
    tj["decoder"] = {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false}, {"use_regex", false}};
    tj["model"] = {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"byte_fallback", false}, {"fuse_unk", false},
                   {"ignore_merges", p->ignore_merges}, {"vocab", vocab}, {"merges", merges}};
  } else if (model == "llama") {
    const std::vector<double> scores = number_array(g, "tokenizer.ggml.scores", n);
    bool space_prefix = true;
    if (const GgufValue* v = g.find("tokenizer.ggml.add_space_prefix")) space_prefix = v->as_int() != 0;
    json norms = json::array();
    if (space_prefix) norms.push_back({{"type", "Prepend"}, {"prepend", "\u2581"}});
    norms.push_back({{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", "\u2581"}});
    tj["normalizer"] = {{"type", "Sequence"}, {"normalizers", norms}};
    tj["pre_tokenizer"] = nullptr;
    json decoders = json::array({{{"type", "Replace"}, {"pattern", {{"String", "\u2581"}}}, {"content", " "}},
                                 {{"type", "ByteFallback"}}, {{"type", "Fuse"}}});
    if (space_prefix) decoders.push_back({{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}});
    tj["decoder"] = {{"type", "Sequence"}, {"decoders", decoders}};
    tj["model"] = {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", unk >= 0 ? json(tokens[size_t(unk)]) : json(nullptr)},
                   {"byte_fallback", true}, {"fuse_unk", true}, {"vocab", vocab}, {"merges", spm_merges(tokens, scores, types)}};
  } else {
    fail("{}: tokenizer.ggml.model '{}' is not supported (gpt2 and llama are)", g.path(), model);
  }
  f.tokenizer_json = tj.dump();
  return f;
}

}  // namespace

TokenizerFiles tokenizer_files_from_gguf(const GgufFile& g, bool use_embedded_json) {
  // Token strings that are not UTF-8 (a corrupted or hostile file) cannot become tokenizer.json.
  try {
    return files_from_gguf(g, use_embedded_json);
  } catch (const nlohmann::json::exception& e) {
    fail("{}: tokenizer metadata: {}", g.path(), e.what());
  }
}

void add_tokenizer_to_gguf(GgufWriter& w, const TokenizerFiles& files, bool embed_json) {
  const auto tok = Tokenizer::from_json(files.tokenizer_json, files.tokenizer_config_json, "tokenizer.json");
  const json tj = json::parse(files.tokenizer_json);
  const json& m = tj.at("model");
  if (m.value("type", "") != "BPE") fail("tokenizer.json: GGUF export supports BPE tokenizers (this is {})", m.value("type", "?"));
  const bool spm = m.value("byte_fallback", false);
  const int64_t n = tok->vocab_size();
  std::vector<std::string> tokens(static_cast<size_t>(n));
  std::vector<int> types(static_cast<size_t>(n), kUnused);
  for (const auto& [s, id] : m.at("vocab").items())
    if (id.get<int64_t>() < n) tokens[size_t(id.get<int64_t>())] = s, types[size_t(id.get<int64_t>())] = kNormal;
  for (const json& a : tj.value("added_tokens", json::array())) {
    const int64_t id = a.at("id").get<int64_t>();
    if (id >= n) continue;
    tokens[size_t(id)] = a.at("content").get<std::string>();
    types[size_t(id)] = a.value("special", false) ? kControl : kUserDefined;
  }
  for (int64_t i = 0; i < n; ++i)
    if (types[size_t(i)] == kUnused) tokens[size_t(i)] = fmt::format("[PAD{}]", i);  // ids no one uses still need a string
  // Merges, best first, as "a b".
  std::vector<std::string> merges;
  for (const json& mg : m.value("merges", json::array())) {
    if (mg.is_string()) merges.push_back(mg.get<std::string>());
    else merges.push_back(mg.at(0).get<std::string>() + " " + mg.at(1).get<std::string>());
  }

  w.set("tokenizer.ggml.model", GgufValue::of_string(spm ? "llama" : "gpt2"));
  if (spm) {
    // Scores: a merged token ranks by its first merge; byte and special tokens get none.
    std::unordered_map<std::string, size_t> rank;
    for (size_t r = 0; r < merges.size(); ++r) {
      const size_t sp = merges[r].find(' ', 1);
      const std::string merged = merges[r].substr(0, sp) + merges[r].substr(sp + 1);
      rank.emplace(merged, r);
    }
    std::vector<GgufValue> scores;
    const std::string unk = m.contains("unk_token") && m["unk_token"].is_string() ? m["unk_token"].get<std::string>() : "";
    for (int64_t i = 0; i < n; ++i) {
      const std::string& s = tokens[size_t(i)];
      if (s.size() == 6 && s.rfind("<0x", 0) == 0 && s.back() == '>') types[size_t(i)] = kByte;
      if (!unk.empty() && s == unk) types[size_t(i)] = kUnknown;
      auto it = rank.find(s);
      scores.push_back(GgufValue::of_f32(it != rank.end() ? -float(it->second) : types[size_t(i)] == kNormal ? -1e9f : 0.0f));
    }
    w.set("tokenizer.ggml.pre", GgufValue::of_string("default"));
    w.set("tokenizer.ggml.tokens", GgufValue::of_strings(tokens));
    w.set("tokenizer.ggml.scores", GgufValue::of_array(GgufType::F32, std::move(scores)));
    bool prepend = false;
    if (tj.contains("normalizer") && tj["normalizer"].is_object()) prepend = tj["normalizer"].dump().find("Prepend") != std::string::npos;
    w.set("tokenizer.ggml.add_space_prefix", GgufValue::of_bool(prepend));
  } else {
    std::string pre;
    const std::string pj = tj.value("pre_tokenizer", json(nullptr)).dump();
    for (const PreType& p : kPreTypes)
      if (pre.empty() && pj.find(json(p.regex).dump()) != std::string::npos) pre = p.name;
    if (pre.empty() && pj.find("\"use_regex\":true") != std::string::npos && pj.find("Split") == std::string::npos) pre = "gpt-2";
    if (pre.empty()) fail("tokenizer.json: its pre-tokenizer is none of those GGUF names (llama-bpe, qwen2, gpt-4o, gpt-2): {}", pj.substr(0, 200));
    w.set("tokenizer.ggml.pre", GgufValue::of_string(pre));
    w.set("tokenizer.ggml.tokens", GgufValue::of_strings(tokens));
    w.set("tokenizer.ggml.merges", GgufValue::of_strings(merges));
  }
  std::vector<GgufValue> tt;
  for (int t : types) tt.push_back(GgufValue::of_i32(t));
  w.set("tokenizer.ggml.token_type", GgufValue::of_array(GgufType::I32, std::move(tt)));
  if (tok->bos_id() >= 0) w.set("tokenizer.ggml.bos_token_id", GgufValue::of_u32(uint32_t(tok->bos_id())));
  if (tok->eos_id() >= 0) w.set("tokenizer.ggml.eos_token_id", GgufValue::of_u32(uint32_t(tok->eos_id())));
  if (spm && m.contains("unk_token") && m["unk_token"].is_string())
    w.set("tokenizer.ggml.unknown_token_id", GgufValue::of_u32(uint32_t(tok->token_to_id(m["unk_token"].get<std::string>()))));
  // Whether encoding adds BOS / EOS, as this tokenizer actually does it.
  const auto with = tok->encode("a", true), without = tok->encode("a", false);
  const bool adds_bos = with.size() > without.size() && tok->bos_id() >= 0 && with.front() == tok->bos_id();
  const bool adds_eos = with.size() > without.size() && tok->eos_id() >= 0 && with.back() == tok->eos_id();
  w.set("tokenizer.ggml.add_bos_token", GgufValue::of_bool(adds_bos));
  w.set("tokenizer.ggml.add_eos_token", GgufValue::of_bool(adds_eos));
  if (!tok->chat_template().empty()) w.set("tokenizer.chat_template", GgufValue::of_string(tok->chat_template()));
  if (embed_json) w.set("tokenizer.huggingface.json", GgufValue::of_string(files.tokenizer_json));
}

}  // namespace distill
