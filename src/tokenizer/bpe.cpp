#include "tokenizer/bpe.h"

#include "core/error.h"
#include "formats/json_fields.h"
#include "tokenizer/utf8.h"

#include <nlohmann/json.hpp>

#include <queue>

namespace distill {

using nlohmann::json;

BpeModel BpeModel::from_json(const json& m) {
  BpeModel b;
  const std::string type = jsonf::get_string(m, "type", "model", "");
  if (type != "BPE") fail("model.type '{}' is not supported (only BPE)", type);
  if (jsonf::get_number(m, "dropout", "model", 0.0) != 0.0) fail("model.dropout is not supported");
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    const std::string v = jsonf::get_string(m, key, "model", "");
    if (!v.empty()) fail("model.{} '{}' is not supported", key, v);
  }
  const json& vocab = jsonf::get_object(m, "vocab", "model");
  for (const auto& [token, id] : vocab.items()) {
    // Ids index arrays: bound them by the file's own size so a hostile id cannot make us
    // allocate gigabytes (real vocabularies are dense).
    const int32_t i = int32_t(jsonf::as_int(id, "model.vocab['" + token + "']", 0, max_id(vocab.size())));
    if (!b.id_to_token(i).empty())
      fail("model.vocab['{}']: id {} is already used by '{}'", token, i, b.id_to_token(i));
    b.add_token(token, i);
  }
  b.byte_fallback_ = jsonf::get_bool(m, "byte_fallback", "model", false);
  b.fuse_unk_ = jsonf::get_bool(m, "fuse_unk", "model", false);
  b.ignore_merges_ = jsonf::get_bool(m, "ignore_merges", "model", false);
  if (jsonf::has(m, "unk_token")) b.unk_id_ = b.token_to_id(jsonf::get_string(m, "unk_token", "model"));
  for (int i = 0; i < 256; ++i) {
    char name[8];
    std::snprintf(name, sizeof name, "<0x%02X>", i);
    b.byte_ids_[i] = b.token_to_id(name);
  }
  const json& merges = jsonf::get_array(m, "merges", "model");
  int32_t rank = 0;
  for (const json& merge : merges) {
    const std::string path = fmt::format("model.merges[{}]", rank);
    std::string left, right;
    if (merge.is_string()) {  // "a b" (older files)
      const std::string s = merge.get<std::string>();
      const size_t sp = s.find(' ', 1);
      if (sp == std::string::npos) fail("{}: '{}' is not a pair", path, s);
      left = s.substr(0, sp), right = s.substr(sp + 1);
    } else if (merge.is_array() && merge.size() == 2) {  // ["a", "b"]
      left = jsonf::as_string(merge[0], path + "[0]"), right = jsonf::as_string(merge[1], path + "[1]");
    } else {
      fail("{}: expected \"a b\" or [\"a\", \"b\"]", path);
    }
    const int32_t a = b.token_to_id(left), c = b.token_to_id(right), ab = b.token_to_id(left + right);
    if (a < 0 || c < 0 || ab < 0) fail("{}: '{}' + '{}' uses tokens missing from the vocab", path, left, right);
    b.merges_.emplace(pair_key(a, c), Merge{rank, ab});  // the first (lowest) rank wins
    ++rank;
  }
  return b;
}

void BpeModel::add_token(const std::string& token, int32_t id) {
  vocab_[token] = id;
  if (size_t(id) >= id_to_token_.size()) id_to_token_.resize(size_t(id) + 1);
  id_to_token_[size_t(id)] = token;
}

int32_t BpeModel::token_to_id(std::string_view token) const {
  auto it = vocab_.find(std::string(token));
  return it == vocab_.end() ? -1 : it->second;
}

const std::string& BpeModel::id_to_token(int32_t id) const {
  static const std::string empty;
  return id >= 0 && size_t(id) < id_to_token_.size() ? id_to_token_[size_t(id)] : empty;
}

void BpeModel::encode_word(std::string_view word, std::vector<int32_t>& out) const {
  if (word.size() <= 64) {
    std::lock_guard<std::mutex> lock(*cache_mutex_);
    auto it = cache_.find(std::string(word));
    if (it != cache_.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }
  const size_t start = out.size();
  encode_uncached(word, out);
  if (word.size() <= 64) {
    std::lock_guard<std::mutex> lock(*cache_mutex_);
    if (cache_.size() > 100000) cache_.clear();
    cache_.emplace(std::string(word), std::vector<int32_t>(out.begin() + int64_t(start), out.end()));
  }
}

void BpeModel::encode_uncached(std::string_view word, std::vector<int32_t>& out) const {
  if (ignore_merges_) {
    const int32_t whole = token_to_id(word);
    if (whole >= 0) {
      out.push_back(whole);
      return;
    }
  }
  // Symbols: one per character, as a doubly linked list over a vector.
  struct Symbol {
    int32_t id;
    int32_t prev, next;
  };
  std::vector<Symbol> sym;
  size_t i = 0;
  while (i < word.size()) {
    const size_t begin = i;
    utf8_next(word, i);
    const std::string_view ch = word.substr(begin, i - begin);
    const int32_t id = token_to_id(ch);
    if (id >= 0) {
      sym.push_back({id, int32_t(sym.size()) - 1, int32_t(sym.size()) + 1});
    } else if (byte_fallback_) {
      for (unsigned char byte : ch) {
        const int32_t bid = byte_ids_[byte] >= 0 ? byte_ids_[byte] : unk_id_;
        if (bid >= 0) sym.push_back({bid, int32_t(sym.size()) - 1, int32_t(sym.size()) + 1});
      }
    } else if (unk_id_ >= 0) {
      if (fuse_unk_ && !sym.empty() && sym.back().id == unk_id_) continue;
      sym.push_back({unk_id_, int32_t(sym.size()) - 1, int32_t(sym.size()) + 1});
    }  // else: the character is dropped, as the reference implementation does
  }
  if (sym.empty()) return;
  sym.back().next = -1;

  // Candidate merges ordered by (rank, position); stale entries are skipped when popped.
  struct Cand {
    int32_t rank, left, left_id, right_id;
    bool operator>(const Cand& o) const { return rank != o.rank ? rank > o.rank : left > o.left; }
  };
  std::priority_queue<Cand, std::vector<Cand>, std::greater<Cand>> heap;
  auto push_pair = [&](int32_t l) {
    if (l < 0 || sym[size_t(l)].next < 0) return;
    const int32_t r = sym[size_t(l)].next;
    auto it = merges_.find(pair_key(sym[size_t(l)].id, sym[size_t(r)].id));
    if (it != merges_.end()) heap.push({it->second.rank, l, sym[size_t(l)].id, sym[size_t(r)].id});
  };
  for (int32_t k = 0; k + 1 < int32_t(sym.size()); ++k) push_pair(k);
  while (!heap.empty()) {
    const Cand c = heap.top();
    heap.pop();
    Symbol& l = sym[size_t(c.left)];
    if (l.id != c.left_id || l.next < 0 || sym[size_t(l.next)].id != c.right_id) continue;  // stale
    const int32_t r = l.next;
    l.id = merges_.at(pair_key(c.left_id, c.right_id)).merged_id;
    l.next = sym[size_t(r)].next;
    if (l.next >= 0) sym[size_t(l.next)].prev = c.left;
    sym[size_t(r)].id = -1;  // removed
    push_pair(l.prev);
    push_pair(c.left);
  }
  for (int32_t k = 0; k >= 0; k = sym[size_t(k)].next) out.push_back(sym[size_t(k)].id);
}

}  // namespace distill
