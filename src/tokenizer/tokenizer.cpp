#include "tokenizer/tokenizer.h"

#include "formats/gguf.h"
#include "tokenizer/gguf_vocab.h"

#include "core/error.h"
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
    json j;
    try {
      j = json::parse(tokenizer_json);
    } catch (const json::exception& e) {
      fail("malformed JSON: {}", e.what());
    }
    if (!j.contains("model")) fail("no \"model\"");
    t->model_ = BpeModel::from_json(j["model"]);
    t->normalizer_ = Normalizer::from_json(j.value("normalizer", json()), "normalizer");
    t->pre_tokenizer_ = PreTokenizer::from_json(j.value("pre_tokenizer", json()), "pre_tokenizer");
    t->decoder_ = tok::TokenDecoder::from_json(j.value("decoder", json()), "decoder");
    if (j.contains("added_tokens") && j["added_tokens"].is_array()) {
      for (const json& a : j["added_tokens"]) {
        AddedToken at{a.at("content").get<std::string>(), a.at("id").get<int32_t>(), a.value("special", false),
                      a.value("lstrip", false), a.value("rstrip", false)};
        if (at.content.empty()) continue;
        if (t->model_.token_to_id(at.content) != at.id) t->model_.add_token(at.content, at.id);
        t->added_.push_back(at);
      }
    }
    // Longest first, so "<|im_start|>" wins over a shorter token that is its prefix.
    std::stable_sort(t->added_.begin(), t->added_.end(),
                     [](const AddedToken& a, const AddedToken& b) { return a.content.size() > b.content.size(); });
    t->added_index_.assign(size_t(t->model_.vocab_size()), -1);
    for (size_t i = 0; i < t->added_.size(); ++i) t->added_index_[size_t(t->added_[i].id)] = int32_t(i);

    // Post-processor: the special tokens around a single sequence.
    std::function<void(const json&)> read_post = [&](const json& p) {
      if (p.is_null()) return;
      const std::string type = p.value("type", "");
      if (type == "Sequence") {
        for (const json& q : p.at("processors")) read_post(q);
      } else if (type == "TemplateProcessing") {
        bool after = false;
        for (const json& item : p.at("single")) {
          if (item.contains("Sequence")) {
            after = true;
          } else if (item.contains("SpecialToken")) {
            const std::string name = item["SpecialToken"].at("id").get<std::string>();
            const json& st = p.at("special_tokens").at(name);
            for (const json& id : st.at("ids")) (after ? t->suffix_ids_ : t->prefix_ids_).push_back(id.get<int32_t>());
          }
        }
      } else if (type != "ByteLevel") {
        fail("post_processor type '{}' is not supported (supported: TemplateProcessing, ByteLevel, Sequence)", type);
      }
    };
    read_post(j.value("post_processor", json()));
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
