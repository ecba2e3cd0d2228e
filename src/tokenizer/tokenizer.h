// Tokenizer: a Hugging Face tokenizer.json (+ tokenizer_config.json) reproduced to the id.
// encode: added tokens are cut out of the raw text first (special ones only when parse_special),
// each remaining segment is normalised, pre-tokenised and BPE-encoded, then the BOS/EOS of the
// post-processor (or of tokenizer_config's add_bos_token / add_eos_token) are added.
// decode: tokens back to text; StreamDecoder does it one token at a time, holding back the bytes
// of an incomplete UTF-8 character until the token that completes it arrives.
#pragma once

#include "tokenizer/bpe.h"
#include "tokenizer/text_pipeline.h"

#include <memory>
#include <string>
#include <string_view>
#include <vector>

namespace distill {

struct AddedToken {
  std::string content;
  int32_t id;
  bool special, lstrip, rstrip;
};

class Tokenizer {
public:
  // DIR/tokenizer.json and, if present, DIR/tokenizer_config.json; or a GGUF file's tokenizer.
  static std::shared_ptr<const Tokenizer> load(const std::string& dir);
  static std::shared_ptr<const Tokenizer> from_json(const std::string& tokenizer_json, const std::string& config_json,
                                                    const std::string& where);

  std::vector<int32_t> encode(std::string_view text, bool add_special = true, bool parse_special = false) const;
  std::string decode(const std::vector<int32_t>& ids, bool skip_special = false) const;

  int64_t vocab_size() const;                 // one past the largest id
  std::string id_to_token(int32_t id) const;  // the raw vocabulary string
  int32_t token_to_id(std::string_view token) const;  // -1 if absent (added tokens included)
  bool is_special(int32_t id) const;
  // The exact bytes token `id` adds to decoded text: after earlier text, or (at_start) as the
  // first token, where SentencePiece-style decoders drop the leading space. Raw bytes (a byte
  // token may hold part of a UTF-8 character). What the OpenAI API's logprobs "bytes" carry.
  std::string token_bytes(int32_t id, bool at_start = false) const;
  int32_t bos_id() const { return bos_id_; }  // -1 if none
  int32_t eos_id() const { return eos_id_; }
  // Ids that end a generation: eos and the end-of-turn tokens of known chat formats.
  const std::vector<int32_t>& stop_ids() const { return stop_ids_; }
  const std::string& chat_template() const { return chat_template_; }
  const std::string& bos_token() const { return bos_token_; }
  const std::string& eos_token() const { return eos_token_; }
  uint64_t fingerprint() const { return fingerprint_; }  // hash of tokenizer.json

  class StreamDecoder {
  public:
    StreamDecoder(const Tokenizer& tok, bool skip_special) : tok_(tok), skip_special_(skip_special) {}
    std::string push(int32_t id);  // the text completed by this token (maybe empty)
    std::string flush();           // what is left, incomplete bytes replaced by U+FFFD
  private:
    const Tokenizer& tok_;
    bool skip_special_, started_ = false;
    std::string pending_;
  };

private:
  static void parse_tokenizer_json(Tokenizer& t, const nlohmann::json& j);
  void parse_post_processor(const nlohmann::json& p, const std::string& path);
  const AddedToken* added_at(std::string_view text, size_t pos, bool parse_special) const;
  void encode_segment(const std::string& text, std::vector<int32_t>& out) const;

  BpeModel model_;
  std::unique_ptr<Normalizer> normalizer_;
  std::unique_ptr<PreTokenizer> pre_tokenizer_;
  std::unique_ptr<tok::TokenDecoder> decoder_;
  std::vector<AddedToken> added_;               // longest first
  std::vector<int32_t> added_index_;           // id -> index in added_ (or -1)
  std::vector<int32_t> prefix_ids_, suffix_ids_;
  int32_t bos_id_ = -1, eos_id_ = -1;
  std::string bos_token_, eos_token_, chat_template_;
  std::vector<int32_t> stop_ids_;
  uint64_t fingerprint_ = 0;
};

// "distill-" + 8 hex digits of the tokenizer's fingerprint: what `distill serve` answers in
// system_fingerprint, so that a client can tell its vocabulary is the server's.
std::string api_fingerprint(const Tokenizer& tok);

// Copies the tokenizer files that exist in model directory `from` into `to` (a trained or
// converted model keeps the tokenizer it was made with).
void copy_tokenizer_files(const std::string& from, const std::string& to);

}  // namespace distill
