// Tokenizer behaviour on files made here (no network): BPE merges by rank, byte fallback, added
// tokens, BOS/EOS rules, streaming decode of split characters, invalid UTF-8, and refusals.
#include "tokenizer/byte_vocab.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"
#include "test_util.h"
#include "spm_tokenizer.h"

#include <nlohmann/json.hpp>

namespace distill {

using nlohmann::json;

namespace {

std::shared_ptr<const Tokenizer> bytes_tokenizer(const std::string& text = "", int merges = 0) {
  const TokenizerFiles f = make_byte_level_tokenizer(text, merges);
  return Tokenizer::from_json(f.tokenizer_json, f.tokenizer_config_json, "bytes");
}

}  // namespace

TEST(Tokenizer, ByteLevelWithLearnedMerges) {
  const auto tok = bytes_tokenizer("the cat the hat the bat the mat", 4);
  const std::vector<int32_t> ids = tok->encode("the cat", false);
  EXPECT_LT(ids.size(), 7u) << "merges learned from the text shorten it";
  EXPECT_EQ(tok->decode(ids), "the cat");
  EXPECT_EQ(tok->id_to_token(ids[0]).substr(0, 1), "t");
}

TEST(Tokenizer, BytesAndSpecialTokens) {
  const auto tok = bytes_tokenizer();
  EXPECT_EQ(tok->vocab_size(), 259);
  EXPECT_EQ(tok->encode("hi", false), (std::vector<int32_t>{'h', 'i'}));
  const int32_t im_end = tok->token_to_id("<|im_end|>");
  EXPECT_EQ(tok->eos_id(), im_end);
  // special tokens are text unless asked for
  EXPECT_EQ(tok->encode("<|im_end|>", false, false).size(), 10u);
  EXPECT_EQ(tok->encode("x<|im_end|>y", false, true), (std::vector<int32_t>{'x', im_end, 'y'}));
  EXPECT_TRUE(tok->is_special(im_end));
  EXPECT_EQ(tok->decode({'x', im_end}, true), "x");
  EXPECT_EQ(tok->decode({'x', im_end}, false), "x<|im_end|>");
}

TEST(Tokenizer, StreamingHoldsBackIncompleteCharacters) {
  const auto tok = bytes_tokenizer();
  const std::string party = "\xf0\x9f\x8e\x89";  // 🎉: four byte tokens
  const std::vector<int32_t> ids = tok->encode("a" + party + "b", false);
  ASSERT_EQ(ids.size(), 6u);
  Tokenizer::StreamDecoder sd(*tok, false);
  EXPECT_EQ(sd.push(ids[0]), "a");
  EXPECT_EQ(sd.push(ids[1]), "");
  EXPECT_EQ(sd.push(ids[2]), "");
  EXPECT_EQ(sd.push(ids[3]), "");
  EXPECT_EQ(sd.push(ids[4]), party);
  EXPECT_EQ(sd.push(ids[5]), "b");
  // a stream that ends inside a character flushes a replacement character, not broken bytes
  Tokenizer::StreamDecoder cut(*tok, false);
  cut.push(ids[1]);
  cut.push(ids[2]);
  EXPECT_EQ(cut.flush(), "\xef\xbf\xbd");
}

TEST(Tokenizer, InvalidUtf8BecomesReplacementCharacters) {
  EXPECT_EQ(utf8_sanitize("a\xff" "b"), "a\xef\xbf\xbd" "b");
  EXPECT_EQ(utf8_sanitize("\xe2\x82"), "\xef\xbf\xbd");                  // one maximal subpart
  EXPECT_EQ(utf8_sanitize("\xc0\x80"), "\xef\xbf\xbd\xef\xbf\xbd");      // overlong: two
  EXPECT_EQ(utf8_sanitize("\xed\xa0\x80"), "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");  // surrogate
  EXPECT_EQ(utf8_incomplete_tail("ab\xf0\x9f\x8e"), 3u);
  EXPECT_EQ(utf8_incomplete_tail("ab\xf0\x9f\x8e\x89"), 0u);
  const auto tok = bytes_tokenizer();
  EXPECT_EQ(tok->decode(tok->encode("x\xff", false)), "x\xef\xbf\xbd");
}

TEST(Tokenizer, SentencePieceStyleBpe) {
  const auto tok = Tokenizer::from_json(test::spm_json(), R"({"bos_token": "<s>", "eos_token": "</s>"})", "spm");
  // "ab c": ▁ab (merges ▁ a -> ▁a, ▁a b -> ▁ab), ▁, c ; BOS from the post-processor
  const std::vector<int32_t> ids = tok->encode("ab c");
  ASSERT_GE(ids.size(), 3u);
  EXPECT_EQ(ids[0], 1);
  EXPECT_EQ(tok->id_to_token(ids[1]), "\xe2\x96\x81" "ab");
  EXPECT_EQ(tok->decode(ids, true), "ab c");
  // an unknown character falls back to its UTF-8 bytes, and decodes back
  const std::vector<int32_t> z = tok->encode("z\xc3\xa9", false);
  EXPECT_EQ(tok->id_to_token(z.back()), "<0xA9>");
  EXPECT_EQ(tok->decode(z), "z\xc3\xa9");
  // add_bos_token in tokenizer_config overrides the post-processor (as LlamaTokenizerFast)
  const auto no_bos = Tokenizer::from_json(test::spm_json(), R"({"bos_token": "<s>", "add_bos_token": false})", "spm");
  EXPECT_NE(no_bos->encode("a")[0], 1);
}

TEST(Tokenizer, RefusesComponentsItDoesNotImplement) {
  json j = json::parse(make_byte_level_tokenizer().tokenizer_json);
  j["normalizer"] = {{"type", "BertNormalizer"}};
  try {
    Tokenizer::from_json(j.dump(), "", "tok.json");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("tok.json: normalizer: type 'BertNormalizer' is not supported"), std::string::npos) << e.what();
  }
  j = json::parse(make_byte_level_tokenizer().tokenizer_json);
  j["model"]["type"] = "WordPiece";
  EXPECT_THROW(Tokenizer::from_json(j.dump(), "", "tok.json"), Error);
  j = json::parse(make_byte_level_tokenizer().tokenizer_json);
  j["pre_tokenizer"]["pretokenizers"][0]["type"] = "Whitespace";
  try {
    Tokenizer::from_json(j.dump(), "", "tok.json");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("pre_tokenizer.pretokenizers[0]: type 'Whitespace'"), std::string::npos)
        << e.what();
  }
  EXPECT_THROW(Tokenizer::from_json("{not json", "", "tok.json"), Error);
}

}  // namespace distill
