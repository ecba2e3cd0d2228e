// BpeModel: byte-pair encoding of one pre-tokenised word, as the "BPE" model of a Hugging Face
// tokenizer.json. The word starts as its characters; the adjacent pair with the lowest merge rank
// is merged until no pair has a rank (a heap over the pairs makes this O(n log n), which matters
// for SentencePiece-style files that hand whole lines to the model). Characters missing from the
// vocabulary become <0xNN> byte tokens (byte_fallback) or the unknown token (fused if fuse_unk).
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <cstdint>
#include <memory>
#include <mutex>
#include <string>
#include <string_view>
#include <algorithm>
#include <unordered_map>
#include <vector>

namespace distill {

class BpeModel {
public:
  // Ids are refused at and above this (the largest real vocabularies hold ~262 000 tokens).
  static constexpr int64_t kMaxVocab = int64_t(1) << 24;
  // The largest id accepted in a file that lists n tokens: real vocabularies are dense, with a
  // few holes at most; the bound keeps a hostile id from making us allocate gigabytes.
  static int64_t max_id(size_t n_listed) { return std::min<int64_t>(kMaxVocab, 2 * int64_t(n_listed) + 1024) - 1; }

  // `model` is tokenizer.json's "model" object; throws naming the unsupported option.
  static BpeModel from_json(const nlohmann::json& model);

  // Appends the ids of `word` to out.
  void encode_word(std::string_view word, std::vector<int32_t>& out) const;

  int32_t token_to_id(std::string_view token) const;  // -1 if absent
  const std::string& id_to_token(int32_t id) const;   // "" if absent
  int64_t vocab_size() const { return int64_t(id_to_token_.size()); }
  bool byte_fallback() const { return byte_fallback_; }
  // Adds a token the model does not know (an added token with a new id).
  void add_token(const std::string& token, int32_t id);

private:
  struct Merge {
    int32_t rank;
    int32_t merged_id;
  };
  static uint64_t pair_key(int32_t a, int32_t b) { return (uint64_t(uint32_t(a)) << 32) | uint32_t(b); }
  void encode_uncached(std::string_view word, std::vector<int32_t>& out) const;

  std::unordered_map<std::string, int32_t> vocab_;
  std::vector<std::string> id_to_token_;
  std::unordered_map<uint64_t, Merge> merges_;
  int32_t unk_id_ = -1;
  int32_t byte_ids_[256];
  bool byte_fallback_ = false, fuse_unk_ = false, ignore_merges_ = false;
  // Per-word cache (text repeats words constantly); a Tokenizer is shared between threads.
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;
  mutable std::shared_ptr<std::mutex> cache_mutex_ = std::make_shared<std::mutex>();
};

}  // namespace distill
