#include "tokenizer/tokenizer.h"

#include "formats/gguf.h"
#include "tokenizer/gguf_vocab.h"

#include "core/error.h"
#include "formats/json_fields.h"
#include "tokenizer/utf8.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>

namespace distill {

using nlohmann::json;

namespace {

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open", path);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

uint64_t fnv1a(std::string_view s) {
  uint64_t h = 0xcbf29ce484222325ull;
  for (unsigned char c : s) h = (h ^ c) * 0x100000001b3ull;
  return h;
}

// tokenizer_config.json spells tokens as a string or as {"content": ...}.
std::string token_string(const json& j, const char* key) {
  if (!j.contains(key) || j[key].is_null()) return "";
  if (j[key].is_string()) return j[key].get<std::string>();
  if (j[key].is_object()) return j[key].value("content", "");
  return "";
}

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\f' || c == '\v'; }

}  // namespace

void Tokenizer::parse_post_processor(const json& p, const std::string& path) {
  if (p.is_null()) return;
  const std::string type = jsonf::get_string(p, "type", path, "");
  if (type == "Sequence") {
    const json& list = jsonf::get_array(p, "processors", path);
    for (size_t i = 0; i < list.size(); ++i) parse_post_processor(list[i], fmt::format("{}.processors[{}]", path, i));
  } else if (type == "TemplateProcessing") {
    bool after = false;
    const json& single = jsonf::get_array(p, "single", path);
    const json& specials = jsonf::has(p, "special_tokens") ? jsonf::get_object(p, "special_tokens", path) : json::object();
    for (size_t i = 0; i < single.size(); ++i) {
      const json& item = single[i];
      const std::string ipath = fmt::format("{}.single[{}]", path, i);
      if (jsonf::has(item, "Sequence")) {
        after = true;
      } else if (jsonf::has(item, "SpecialToken")) {
        const std::string name = jsonf::get_string(jsonf::get_object(item, "SpecialToken", ipath), "id", ipath + ".SpecialToken");
        const std::string spath = path + ".special_tokens." + name;
        if (!specials.contains(name)) fail("{}: missing (named by {})", spath, ipath);
        const json& ids = jsonf::get_array(specials[name], "ids", spath);
        for (size_t k = 0; k < ids.size(); ++k) {
          const int64_t id = jsonf::as_int(ids[k], fmt::format("{}.ids[{}]", spath, k), 0, model_.vocab_size() - 1);
          (after ? suffix_ids_ : prefix_ids_).push_back(int32_t(id));
        }
      } else {
        fail("{}: expected a Sequence or SpecialToken item, got {}", ipath, jsonf::show(item));
      }
    }
  } else if (type != "ByteLevel") {
    fail("{}.type '{}' is not supported (supported: TemplateProcessing, ByteLevel, Sequence)", path, type);
  }
}

void Tokenizer::parse_tokenizer_json(Tokenizer& t, const json& j) {
  if (!j.is_object()) fail("expected a JSON object at the top level");
  t.model_ = BpeModel::from_json(jsonf::get_object(j, "model", ""));
  t.normalizer_ = Normalizer::from_json(j.value("normalizer", json()), "normalizer");
  t.pre_tokenizer_ = PreTokenizer::from_json(j.value("pre_tokenizer", json()), "pre_tokenizer");
  t.decoder_ = tok::TokenDecoder::from_json(j.value("decoder", json()), "decoder");
  if (jsonf::has(j, "added_tokens")) {
    const json& list = jsonf::get_array(j, "added_tokens", "");
    std::vector<uint8_t> seen;
    for (size_t i = 0; i < list.size(); ++i) {
      const json& a = list[i];
      const std::string path = fmt::format("added_tokens[{}]", i);
      AddedToken at{jsonf::get_string(a, "content", path),
                    int32_t(jsonf::get_int(a, "id", path, 0, BpeModel::max_id(size_t(t.model_.vocab_size()) + list.size()))),
                    jsonf::get_bool(a, "special", path, false), jsonf::get_bool(a, "lstrip", path, false),
                    jsonf::get_bool(a, "rstrip", path, false)};
      if (size_t(at.id) >= seen.size()) seen.resize(size_t(at.id) + 1, 0);
      if (seen[size_t(at.id)]) fail("{}.id: {} is used by an earlier added token", path, at.id);
      seen[size_t(at.id)] = 1;
      if (at.content.empty()) continue;
      const int32_t existing = t.model_.token_to_id(at.content);
      if (existing >= 0 && existing != at.id)
        fail("{}: '{}' has id {} but the vocabulary gives it {}", path, at.content, at.id, existing);
      if (existing < 0) {
        if (!t.model_.id_to_token(at.id).empty())
          fail("{}.id: {} already belongs to the vocabulary's '{}'", path, at.id, t.model_.id_to_token(at.id));
        t.model_.add_token(at.content, at.id);
      }
      t.added_.push_back(at);
    }
  }
  // Longest first, so "<|im_start|>" wins over a shorter token that is its prefix.
  std::stable_sort(t.added_.begin(), t.added_.end(),
                   [](const AddedToken& a, const AddedToken& b) { return a.content.size() > b.content.size(); });
  t.added_index_.assign(size_t(t.model_.vocab_size()), -1);
  for (size_t i = 0; i < t.added_.size(); ++i) t.added_index_[size_t(t.added_[i].id)] = int32_t(i);
  // Post-processor: the special tokens around a single sequence.
  t.parse_post_processor(j.value("post_processor", json()), "post_processor");
}

std::shared_ptr<const Tokenizer> Tokenizer::load(const std::string& dir) {
  if (std::filesystem::is_regular_file(dir)) {  // a GGUF file: the tokenizer from its metadata
    const TokenizerFiles f = tokenizer_files_from_gguf(GgufFile::open(dir));
    return from_json(f.tokenizer_json, f.tokenizer_config_json, dir);
  }
  const std::string tj = (std::filesystem::path(dir) / "tokenizer.json").string();
  const std::string cj = (std::filesystem::path(dir) / "tokenizer_config.json").string();
  if (!std::filesystem::exists(tj)) fail("{}: no tokenizer.json (a Hugging Face fast tokenizer file is needed)", dir);
  return from_json(read_file(tj), std::filesystem::exists(cj) ? read_file(cj) : "", tj);
}

std::shared_ptr<const Tokenizer> Tokenizer::from_json(const std::string& tokenizer_json, const std::string& config_json,
                                                      const std::string& where) {
  auto t = std::make_shared<Tokenizer>();
  t->fingerprint_ = fnv1a(tokenizer_json);
  with_context(where, [&] {
    // Anything nlohmann still throws (a type we did not check) is a refusal, never an abort.
    try {
      parse_tokenizer_json(*t, jsonf::parse(tokenizer_json, "tokenizer.json"));
    } catch (const json::exception& e) {
      fail("unexpected JSON structure: {}", e.what());
    }
  });

  json cfg = json::object();
  if (!config_json.empty()) {
    try {
      cfg = json::parse(config_json);
    } catch (const json::exception& e) {
      fail("{}: tokenizer_config.json: malformed JSON: {}", where, e.what());
    }
  }
  t->bos_token_ = token_string(cfg, "bos_token");
  t->eos_token_ = token_string(cfg, "eos_token");
  t->bos_id_ = t->bos_token_.empty() ? -1 : t->token_to_id(t->bos_token_);
  t->eos_id_ = t->eos_token_.empty() ? -1 : t->token_to_id(t->eos_token_);
  // add_bos_token / add_eos_token, when the config states them, decide (as LlamaTokenizerFast does).
  if (cfg.contains("add_bos_token") && cfg["add_bos_token"].is_boolean()) {
    t->prefix_ids_.clear();
    if (cfg["add_bos_token"].get<bool>() && t->bos_id_ >= 0) t->prefix_ids_.push_back(t->bos_id_);
  }
  if (cfg.contains("add_eos_token") && cfg["add_eos_token"].is_boolean()) {
    t->suffix_ids_.clear();
    if (cfg["add_eos_token"].get<bool>() && t->eos_id_ >= 0) t->suffix_ids_.push_back(t->eos_id_);
  }
  if (cfg.contains("chat_template") && cfg["chat_template"].is_string()) t->chat_template_ = cfg["chat_template"];
  if (t->eos_id_ >= 0) t->stop_ids_.push_back(t->eos_id_);
  for (const char* end_of_turn : {"<|im_end|>", "<|eot_id|>", "<|end_of_text|>", "<|endoftext|>", "</s>", "<end_of_turn>",
                                  "<｜end▁of▁sentence｜>", "<|end|>", "<|return|>"}) {
    const int32_t id = t->token_to_id(end_of_turn);
    if (id >= 0 && t->is_special(id) && std::find(t->stop_ids_.begin(), t->stop_ids_.end(), id) == t->stop_ids_.end())
      t->stop_ids_.push_back(id);
  }
  return t;
}

int64_t Tokenizer::vocab_size() const { return model_.vocab_size(); }
std::string Tokenizer::id_to_token(int32_t id) const { return model_.id_to_token(id); }
int32_t Tokenizer::token_to_id(std::string_view token) const { return model_.token_to_id(token); }

bool Tokenizer::is_special(int32_t id) const {
  if (id < 0 || size_t(id) >= added_index_.size() || added_index_[size_t(id)] < 0) return false;
  return added_[size_t(added_index_[size_t(id)])].special;
}

const AddedToken* Tokenizer::added_at(std::string_view text, size_t pos, bool parse_special) const {
  for (const AddedToken& a : added_) {
    if (a.special && !parse_special) continue;
    if (text.compare(pos, a.content.size(), a.content) == 0) return &a;
  }
  return nullptr;
}

void Tokenizer::encode_segment(const std::string& text, std::vector<int32_t>& out) const {
  if (text.empty()) return;
  std::vector<std::string> pieces{normalizer_ ? normalizer_->normalize(text) : text};
  if (pre_tokenizer_) pre_tokenizer_->split(pieces);
  for (const std::string& p : pieces) model_.encode_word(p, out);
}

std::vector<int32_t> Tokenizer::encode(std::string_view raw, bool add_special, bool parse_special) const {
  const std::string text = utf8_sanitize(raw);
  std::vector<int32_t> out;
  if (add_special) out = prefix_ids_;
  std::string segment;
  size_t i = 0;
  while (i < text.size()) {
    const AddedToken* a = added_.empty() ? nullptr : added_at(text, i, parse_special);
    if (!a) {
      segment += text[i++];
      continue;
    }
    if (a->lstrip)
      while (!segment.empty() && is_space(segment.back())) segment.pop_back();
    encode_segment(segment, out);
    segment.clear();
    out.push_back(a->id);
    i += a->content.size();
    if (a->rstrip)
      while (i < text.size() && is_space(text[i])) ++i;
  }
  encode_segment(segment, out);
  if (add_special) out.insert(out.end(), suffix_ids_.begin(), suffix_ids_.end());
  return out;
}

std::string Tokenizer::decode(const std::vector<int32_t>& ids, bool skip_special) const {
  StreamDecoder d(*this, skip_special);
  std::string out;
  for (int32_t id : ids) out += d.push(id);
  return out + d.flush();
}

std::string Tokenizer::token_bytes(int32_t id, bool at_start) const {
  const int32_t ai = id >= 0 && size_t(id) < added_index_.size() ? added_index_[size_t(id)] : -1;
  if (ai >= 0) return added_[size_t(ai)].content;
  std::vector<std::string> pieces{model_.id_to_token(id)};
  if (decoder_) decoder_->decode(pieces, at_start);
  std::string out;
  for (const std::string& p : pieces) out += p;
  return out;
}

std::string Tokenizer::StreamDecoder::push(int32_t id) {
  const int32_t ai = id >= 0 && size_t(id) < tok_.added_index_.size() ? tok_.added_index_[size_t(id)] : -1;
  if (ai >= 0) {
    const AddedToken& a = tok_.added_[size_t(ai)];
    if (a.special && skip_special_) return "";
    std::string out = flush() + a.content;  // added tokens are text as written, not decoded pieces
    started_ = true;
    return out;
  }
  std::vector<std::string> pieces{tok_.model_.id_to_token(id)};
  if (tok_.decoder_) tok_.decoder_->decode(pieces, !started_);
  started_ = true;
  for (const std::string& p : pieces) pending_ += p;
  const size_t hold = utf8_incomplete_tail(pending_);
  std::string ready = pending_.substr(0, pending_.size() - hold);
  pending_.erase(0, pending_.size() - hold);
  return utf8_sanitize(ready);
}

std::string api_fingerprint(const Tokenizer& tok) { return fmt::format("distill-{:08x}", uint32_t(tok.fingerprint())); }

void copy_tokenizer_files(const std::string& from, const std::string& to) {
  namespace fs = std::filesystem;
  for (const char* f : {"tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "generation_config.json"}) {
    const fs::path src = fs::path(from) / f, dst = fs::path(to) / f;
    if (fs::exists(src) && fs::absolute(src) != fs::absolute(dst)) fs::copy_file(src, dst, fs::copy_options::overwrite_existing);
  }
}

std::string Tokenizer::StreamDecoder::flush() {
  std::string out = utf8_sanitize(pending_);
  pending_.clear();
  return out;
}

}  // namespace distill
