// The text-side stages of a Hugging Face tokenizer.json, before and after the BPE model:
// normalizers (NFC, NFKC, Prepend, Replace, Lowercase, Sequence), pre-tokenizers (Split with a
// PCRE2 regex, ByteLevel, Metaspace, Digits, Sequence) and decoders (ByteLevel, Metaspace,
// Replace, ByteFallback, Fuse, Strip, Sequence). A component we do not implement is refused with
// its JSON path and type named, never silently skipped.
#pragma once

#include <nlohmann/json_fwd.hpp>

#include <memory>
#include <string>
#include <vector>

namespace distill {

class Normalizer {
public:
  virtual ~Normalizer() = default;
  virtual std::string normalize(const std::string& text) const = 0;
  // null JSON -> nullptr (identity)
  static std::unique_ptr<Normalizer> from_json(const nlohmann::json& j, const std::string& path);
};

class PreTokenizer {
public:
  virtual ~PreTokenizer() = default;
  // Splits every piece further (and may rewrite it, e.g. bytes -> ByteLevel characters).
  virtual void split(std::vector<std::string>& pieces) const = 0;
  static std::unique_ptr<PreTokenizer> from_json(const nlohmann::json& j, const std::string& path);
};

// (namespace tok: distill::Decoder is the model's decoder)
namespace tok {
class TokenDecoder {
public:
  virtual ~TokenDecoder() = default;
  // Rewrites the token strings of a chunk of output in place. `at_start` is true when the chunk
  // begins the text (Strip/Metaspace remove a leading space only there).
  virtual void decode(std::vector<std::string>& tokens, bool at_start) const = 0;
  static std::unique_ptr<TokenDecoder> from_json(const nlohmann::json& j, const std::string& path);
};
}  // namespace tok

// The GPT-2 byte <-> printable character mapping used by ByteLevel stages.
const std::string& byte_to_unicode(unsigned char b);
int unicode_to_byte(uint32_t cp);  // -1 if cp is not a ByteLevel character

}  // namespace distill
