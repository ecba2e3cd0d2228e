// Hostile inputs a stranger can write (a downloaded model repository, a dataset, a request body):
// each is refused with distill::Error naming what was wrong, never an abort, a foreign exception,
// heap corruption (run under ASan by `make test-asan`) or silent garbage.
#include "core/error.h"
#include "formats/gguf.h"
#include "formats/json_fields.h"
#include "formats/safetensors.h"
#include "model/config.h"
#include "train/examples.h"
#include "tokenizer/byte_vocab.h"
#include "tokenizer/gguf_vocab.h"
#include "core/regex.h"
#include "tokenizer/tokenizer.h"
#include "test_util.h"
#include "spm_tokenizer.h"

#include <nlohmann/json.hpp>

#include <functional>

namespace distill {

using nlohmann::json;

namespace {

// Runs fn; returns "" if it succeeded, the message if it threw distill::Error. Any other
// exception fails the test (it would escape the CLI's and server's boundaries as a crash).
std::string outcome(const std::function<void()>& fn) {
  try {
    fn();
    return "";
  } catch (const Error& e) {
    return std::string(e.what()).empty() ? "(empty message)" : e.what();
  } catch (const std::exception& e) {
    ADD_FAILURE() << "foreign exception escaped: " << e.what();
    return "foreign";
  }
}

std::string tokenizer_refusal(const json& j) {
  return outcome([&] {
    auto t = Tokenizer::from_json(j.dump(), "", "tokenizer.json");
    // A tokenizer that loads must also work: encode and decode a little text.
    const auto ids = t->encode("ab c <s> 12 \xc3\xa9", true, true);
    (void)t->decode(ids, false);
  });
}

// The shared SentencePiece-style tokenizer with a pre-tokenizer sequence added: every kind of
// node the loader reads.
json spm_tokenizer() {
  json j = test::spm_tokenizer_json();
  j["pre_tokenizer"] = {{"type", "Sequence"}, {"pretokenizers", {{{"type", "Digits"}, {"individual_digits", true}},
                                                                  {{"type", "Split"}, {"pattern", {{"Regex", "x+"}}}, {"behavior", "Isolated"}}}}};
  return j;
}

// Every node of `doc` (the first few children of large containers), each replaced by every
// hostile value, and each object member deleted.
void for_each_mutation(const json& doc, const std::function<void(const json&, const std::string&)>& fn) {
  static const json kHostile[] = {nullptr, 7, "x", -1, int64_t(1) << 31, int64_t(1) << 32, uint64_t(1) << 63, 33.5,
                                  json::array(), json::object(), true};
  const json flat = doc.flatten();
  std::vector<json::json_pointer> nodes;
  std::function<void(const json&, json::json_pointer)> walk = [&](const json& v, json::json_pointer p) {
    nodes.push_back(p);
    size_t n = 0;
    if (v.is_object())
      for (auto it = v.begin(); it != v.end() && n < 6; ++it, ++n) walk(it.value(), p / it.key());
    if (v.is_array())
      for (size_t i = 0; i < v.size() && i < 6; ++i) walk(v[i], p / i);
  };
  walk(doc, json::json_pointer());
  for (const auto& p : nodes) {
    if (p.empty()) continue;
    for (const json& h : kHostile) {
      json m = doc;
      m[p] = h;
      fn(m, p.to_string() + " = " + h.dump());
    }
    json m = doc;
    const json::json_pointer parent = p.parent_pointer();
    if (m[parent].is_object()) {
      m[parent].erase(p.back());
      fn(m, p.to_string() + " deleted");
    }
  }
}

}  // namespace

TEST(Hardening, TokenizerJsonMutationsAreRefusedOrWork) {
  const TokenizerFiles bytes = make_byte_level_tokenizer("abc abc abd", 8);
  for (const json& doc : {spm_tokenizer(), json::parse(bytes.tokenizer_json)}) {
    ASSERT_EQ(tokenizer_refusal(doc), "") << "the unmutated file loads";
    int refused = 0, total = 0;
    for_each_mutation(doc, [&](const json& m, const std::string& what) {
      SCOPED_TRACE(what);
      refused += !tokenizer_refusal(m).empty();
      ++total;
    });
    EXPECT_GT(total, 300);
    EXPECT_GT(refused, total / 4) << "most structural damage is refused";
  }
}

TEST(Hardening, TokenizerJsonNamedCases) {
  struct Case {
    std::string pointer;
    json value;
    std::string expect;  // a substring of the refusal
  };
  const std::vector<Case> cases = {
      {"/decoder", "x", "decoder"},
      {"/model", 7, "model"},
      {"/added_tokens/0/content", nullptr, "added_tokens[0].content: missing"},
      {"/added_tokens/1/id", -1, "added_tokens[1].id: -1 is outside"},
      {"/added_tokens/1/id", int64_t(1) << 31, "added_tokens[1].id"},
      {"/added_tokens/1/id", int64_t(1) << 32, "added_tokens[1].id"},
      {"/added_tokens/1/id", uint64_t(1) << 63, "added_tokens[1].id"},
      {"/added_tokens/1/id", 33.5, "expected an integer"},
      {"/added_tokens/1/id", 0, "used by an earlier added token"},
      {"/model/vocab/a", int64_t(1) << 32, "model.vocab['a']"},
      {"/model/vocab/a", 1, "already used"},
      {"/model/byte_fallback", "yes", "model.byte_fallback: expected true or false"},
      {"/normalizer/normalizers/0/prepend", nullptr, "prepend: missing"},
      {"/decoder/decoders", nullptr, "decoder.decoders: missing"},
      {"/post_processor/single", nullptr, "post_processor.single: missing"},
      {"/post_processor/special_tokens/<s>/ids/0", 99999, "ids[0]"},
  };
  for (const Case& c : cases) {
    json m = spm_tokenizer();
    m[json::json_pointer(c.pointer)] = c.value;
    const std::string msg = tokenizer_refusal(m);
    EXPECT_NE(msg.find(c.expect), std::string::npos) << c.pointer << " = " << c.value.dump() << " gave: '" << msg << "'";
    EXPECT_NE(msg.find("tokenizer.json"), std::string::npos) << "names the file: " << msg;
  }
}

TEST(Hardening, RegexMatchLimitIsAnErrorNotNoMatch) {
  // Catastrophic backtracking hits PCRE2's match limit: that must not read as "no match" (the
  // text would be split differently, silently).
  Regex re("(a+)+$");
  EXPECT_EQ(re.find_all("aaa").size(), 1u);
  const std::string msg = outcome([&] { (void)re.find_all(std::string(40, 'a') + "b"); });
  EXPECT_NE(msg.find("regex match failed"), std::string::npos) << "got: '" << msg << "'";
  EXPECT_NE(msg.find("limit"), std::string::npos) << msg;
}

TEST(Hardening, ConfigValuesThatBreakTheMathAreRefused) {
  const json base = {{"model_type", "llama"}, {"vocab_size", 100}, {"hidden_size", 64}, {"intermediate_size", 128},
                     {"num_hidden_layers", 2}, {"num_attention_heads", 4}, {"num_key_value_heads", 2}};
  ASSERT_EQ(outcome([&] { ModelConfig::from_json(base, "config.json"); }), "");
  const std::vector<std::tuple<std::string, json, std::string>> cases = {
      {"num_hidden_layers", INT64_MAX, "num_hidden_layers"},
      {"num_hidden_layers", uint64_t(1) << 63, "num_hidden_layers"},
      {"rope_theta", 0, "rope_theta"},
      {"rope_theta", -5.0, "rope_theta"},
      {"rms_norm_eps", -1e-6, "rms_norm_eps"},
      {"rms_norm_eps", std::nan(""), "rms_norm_eps"},
      {"bos_token_id", 100, "bos_token_id"},
      {"eos_token_id", -2, "eos_token_id"},
      {"eos_token_id", json::array({1, 500}), "eos_token_id[1]"},
      {"pad_token_id", 1000, "pad_token_id"},
      {"partial_rotary_factor", 0.5, "partial_rotary_factor"},
      {"partial_rotary_factor", 1.5, "partial_rotary_factor"},
      {"hidden_size", 33.5, "hidden_size"},
      {"num_key_value_heads", 8, "num_key_value_heads"},
      {"tie_word_embeddings", "yes", "tie_word_embeddings"},
  };
  for (const auto& [key, value, expect] : cases) {
    json j = base;
    j[key] = value;
    const std::string msg = outcome([&] { ModelConfig::from_json(j, "config.json"); });
    EXPECT_NE(msg.find(expect), std::string::npos) << key << " = " << value.dump() << " gave '" << msg << "'";
    EXPECT_NE(msg.find("config.json"), std::string::npos) << msg;
  }
  json mistral = base;
  mistral["model_type"] = "mistral";
  for (const json& w : {json(0), json(-4), json("x")}) {
    mistral["sliding_window"] = w;
    EXPECT_NE(outcome([&] { ModelConfig::from_json(mistral, "config.json"); }).find("sliding_window"), std::string::npos)
        << w.dump();
  }
  mistral["sliding_window"] = nullptr;  // HF writes null for "no window"
  EXPECT_EQ(ModelConfig::from_json(mistral, "config.json").sliding_window, 0);
}

TEST(Hardening, SafetensorsHeaderLengthOffByOneIsRefused) {
  test::TempDir dir;
  SafetensorsWriter w;
  Tensor a = Tensor::zeros(DType::F32, {3, 5});
  Tensor b = Tensor::zeros(DType::F32, {7});
  w.add("a", a);
  w.add("b", b);
  const std::string good = dir / "good.safetensors";
  w.write(good);
  ASSERT_EQ(outcome([&] { SafetensorsFile::open(good); }), "");
  std::string bytes = test::read_bytes(good);
  for (int delta : {-1, +1, -8}) {
    std::string bad = bytes;
    uint64_t len = 0;
    for (int i = 7; i >= 0; --i) len = (len << 8) | uint8_t(bad[size_t(i)]);
    len = uint64_t(int64_t(len) + delta);
    for (int i = 0; i < 8; ++i) bad[size_t(i)] = char((len >> (8 * i)) & 0xff);
    const std::string path = dir / "bad.safetensors";
    test::write_bytes(path, bad);
    const std::string msg = outcome([&] { SafetensorsFile::open(path); });
    EXPECT_NE(msg, "") << "header length " << delta << " off was accepted";
    EXPECT_NE(msg.find("bad.safetensors"), std::string::npos) << msg;
  }
  // Trailing bytes after the last tensor are a hole at the end: refused too.
  test::write_bytes(dir / "trail.safetensors", bytes + std::string(4, '\0'));
  EXPECT_NE(outcome([&] { SafetensorsFile::open(dir / "trail.safetensors"); }).find("index"), std::string::npos);
}

TEST(Hardening, GgufOverlappingTensorsAreRefused) {
  test::TempDir dir;
  GgufWriter w;
  const std::vector<float> zeros(64, 0.0f);
  w.add_tensor("a", DType::F32, {64}, zeros.data(), 256);
  w.add_tensor("b", DType::F32, {64}, zeros.data(), 256);
  const std::string good = dir / "good.gguf";
  w.write(good);
  ASSERT_EQ(outcome([&] { GgufFile::open(good); }), "");
  // Point b's offset at a's data: find b's info record (name, dims, type, offset) and zero the offset.
  std::string bytes = test::read_bytes(good);
  const size_t at = bytes.rfind(std::string("\x01\x00\x00\x00\x00\x00\x00\x00" "b", 9));
  ASSERT_NE(at, std::string::npos);
  const size_t offset_at = at + 9 + 4 + 8 + 4;  // name, n_dims, ne[0], type
  for (int i = 0; i < 8; ++i) bytes[offset_at + size_t(i)] = 0;
  test::write_bytes(dir / "overlap.gguf", bytes);
  const std::string msg = outcome([&] { GgufFile::open(dir / "overlap.gguf"); });
  EXPECT_NE(msg.find("overlaps"), std::string::npos) << msg;
}

// Found by fuzz_gguf (fuzz/regressions/gguf/invalid-utf8-token): a token string that is not UTF-8
// escaped as a JSON library exception when the vocabulary became tokenizer.json.
TEST(Hardening, GgufTokenThatIsNotUtf8IsRefused) {
  test::TempDir dir;
  GgufWriter w;
  w.set("general.architecture", GgufValue::of_string("llama"));
  w.set("tokenizer.ggml.model", GgufValue::of_string("gpt2"));
  w.set("tokenizer.ggml.tokens", GgufValue::of_strings({"a", "b", std::string("c\x93", 2)}));
  w.set("tokenizer.ggml.merges", GgufValue::of_strings({}));
  const std::string path = dir / "bad.gguf";
  w.write(path);
  const std::string msg = outcome([&] { Tokenizer::load(path); });
  EXPECT_NE(msg.find("tokenizer metadata"), std::string::npos) << msg;
  EXPECT_NE(msg.find("UTF-8"), std::string::npos) << msg;
  // The fuzzer's own input, replayed.
  const std::string found = std::string(DISTILL_SOURCE_DIR) + "/fuzz/regressions/gguf/invalid-utf8-token";
  EXPECT_NE(outcome([&] {
              const GgufFile g = GgufFile::open(found);
              (void)tokenizer_files_from_gguf(g);
            }),
            "");
}

TEST(Hardening, DatasetMasksAndTeacherFingerprintsAreChecked) {
  test::TempDir dir;
  const TokenizerFiles files = make_byte_level_tokenizer();
  const auto tok = Tokenizer::from_json(files.tokenizer_json, files.tokenizer_config_json, "bytes");
  for (const char* mask : {"[0, -1]", "[0, \"x\"]", "[0, null]", "[0, 2]", "[0, 0.5]"}) {
    test::write_bytes(dir / "d.jsonl", std::string(R"({"ids": [1, 2], "mask": )") + mask + "}\n");
    const std::string msg = outcome([&] { read_examples(dir / "d.jsonl", tok.get(), nullptr); });
    EXPECT_NE(msg.find("mask"), std::string::npos) << mask << ": " << msg;
  }
  test::write_bytes(dir / "d.jsonl", "{\"ids\": [1, 2], \"mask\": [false, true]}\n");
  EXPECT_EQ(outcome([&] { read_examples(dir / "d.jsonl", tok.get(), nullptr); }), "");
  // A teacher dataset must say which tokenizer labelled it, as a string.
  std::filesystem::create_directories(dir / "ds");
  test::write_bytes(dir / "ds/records.bin", "");
  for (const char* manifest : {R"({"tokenizer_fingerprint": 12})", R"({})", R"([1])"}) {
    test::write_bytes(dir / "ds/manifest.json", manifest);
    const std::string msg = outcome([&] { read_examples(dir / "ds", tok.get(), nullptr); });
    EXPECT_NE(msg, "") << manifest;
    EXPECT_NE(msg.find("manifest.json"), std::string::npos) << manifest << ": " << msg;
  }
}

TEST(Hardening, JsonFieldsRefuseNarrowing) {
  const json j = json::parse(R"({"a": 4294967296, "b": 33.5, "c": 18446744073709551615, "d": "7", "e": 5})");
  EXPECT_NE(outcome([&] { jsonf::get_int(j, "a", "x", 0, INT32_MAX); }).find("x.a: 4294967296 is outside"), std::string::npos);
  EXPECT_NE(outcome([&] { jsonf::get_int(j, "b", "x", 0, 100); }).find("expected an integer"), std::string::npos);
  EXPECT_NE(outcome([&] { jsonf::get_int(j, "c", "x", 0, INT64_MAX); }).find("outside"), std::string::npos);
  EXPECT_NE(outcome([&] { jsonf::get_int(j, "d", "x", 0, 100); }).find("expected an integer"), std::string::npos);
  EXPECT_EQ(jsonf::get_int(j, "e", "x", 0, 100), 5);
  EXPECT_EQ(jsonf::get_int(j, "missing", "x", 0, 100, 42), 42);
}

}  // namespace distill
