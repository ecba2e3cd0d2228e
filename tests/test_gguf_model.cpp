// Models through GGUF: the reference models (../shared/reference) exported to GGUF and loaded back
// reproduce the reference logits (names, metadata, the llama q/k row permutation); q8_0 and q4_0
// exports stay within a small KL of f32 (measured values are printed and recorded); llama.cpp's
// interleaved RoPE on the permuted rows gives the same attention scores as Hugging Face's
// rotate-half RoPE on the original rows; the CLI's convert / quantize / info round trips.
#include "convert/export.h"
#include "formats/checkpoint.h"
#include "formats/gguf.h"
#include "model/decoder.h"
#include "model/gguf_model.h"
#include "tokenizer/text_pipeline.h"
#include "tokenizer/tokenizer.h"
#include "test_util.h"

#include <nlohmann/json.hpp>

#include <cmath>
#include <filesystem>

namespace distill {

using json = nlohmann::json;
using test::TempDir;

namespace {

// A byte-level tokenizer of exactly n tokens (printable ASCII from the space up): the reference
// models have vocabularies of 80-96 ids.
TokenizerFiles tiny_tokenizer(int n) {
  json vocab = json::object();
  for (int i = 0; i < n; ++i) vocab[byte_to_unicode(uint8_t(32 + i))] = i;
  json tj = {{"version", "1.0"}, {"added_tokens", json::array()}, {"normalizer", {{"type", "NFC"}}},
             {"pre_tokenizer",
              {{"type", "Sequence"},
               {"pretokenizers",
                {{{"type", "Split"},
                  {"pattern", {{"Regex", "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"}}},
                  {"behavior", "Isolated"}, {"invert", false}},
                 {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", false}, {"use_regex", false}}}}}},
             {"post_processor", nullptr}, {"decoder", {{"type", "ByteLevel"}}},
             {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", json::array()}}}};
  return {tj.dump(), "{}"};
}

struct Ref {
  Model model;
  Tensor ids, logits;
};

Ref load_ref(const std::string& name) {
  TensorStore store = TensorStore::open_file(test::reference_path(name + ".safetensors"));
  const ModelConfig config = ModelConfig::from_file(test::reference_path(name + ".config.json"));
  return {Model::from_store(config, store, "param."), store.get("input_ids"), store.get("logits")};
}

// Mean KL(softmax(p) || softmax(q)) over rows.
double mean_kl(const float* p, const float* q, int64_t rows, int64_t V) {
  double total = 0;
  for (int64_t r = 0; r < rows; ++r) {
    const float* a = p + r * V;
    const float* b = q + r * V;
    double ma = a[0], mb = b[0];
    for (int64_t v = 1; v < V; ++v) ma = std::max(ma, double(a[v])), mb = std::max(mb, double(b[v]));
    double sa = 0, sb = 0;
    for (int64_t v = 0; v < V; ++v) sa += std::exp(a[v] - ma), sb += std::exp(b[v] - mb);
    for (int64_t v = 0; v < V; ++v) {
      const double lpa = a[v] - ma - std::log(sa), lpb = b[v] - mb - std::log(sb);
      total += std::exp(lpa) * (lpa - lpb);
    }
  }
  return total / double(rows);
}

}  // namespace

class GgufReference : public ::testing::TestWithParam<std::string> {};

TEST_P(GgufReference, ExportedModelReproducesTheReferenceLogits) {
  Ref r = load_ref(GetParam());
  const int64_t B = r.ids.dim(0), S = r.ids.dim(1), V = r.model.config.n_vocab;
  TempDir dir;
  GgufExportOptions o;
  o.type = DType::F32;
  export_gguf(r.model, tiny_tokenizer(int(V)), dir / "m.gguf", o);
  const GgufFile g = GgufFile::open(dir / "m.gguf");
  EXPECT_EQ(g.get_string("general.architecture"), GetParam() == "llama-tiny" ? "llama" : GetParam().substr(0, 5));
  EXPECT_EQ(g.get_int(g.get_string("general.architecture") + ".block_count"), r.model.config.n_layer);
  if (GetParam() == "llama-tiny") {
    // the file holds the q rows in llama.cpp's interleaved order: HF row 1 (i = 1 of the first
    // half) is GGUF row 2
    const Tensor gq = g.tensor(*g.find_tensor("blk.0.attn_q.weight"));
    const Tensor& hq = r.model.weights.layers[0].wq;
    const int64_t K = hq.dim(1);
    EXPECT_EQ(std::memcmp(gq.data<float>() + 2 * K, hq.data<float>() + 1 * K, size_t(K) * 4), 0);
    EXPECT_NE(std::memcmp(gq.data<float>() + 1 * K, hq.data<float>() + 1 * K, size_t(K) * 4), 0);
  }
  const Model back = Model::load(dir / "m.gguf");
  Decoder dec(back);
  const Tensor logits = dec.forward_full(r.ids.data<int32_t>(), B, S);
  EXPECT_LT(test::max_abs_diff(logits.data<float>(), r.logits.data<float>(), size_t(logits.numel())), 1e-4f);
  // quantized: small KL from the f32 model
  for (DType t : {DType::Q8_0, DType::Q4_0}) {
    o.type = t;
    export_gguf(r.model, tiny_tokenizer(int(V)), dir / "q.gguf", o);
    const Model qm = Model::load(dir / "q.gguf");
    Decoder qd(qm);
    const Tensor ql = qd.forward_full(r.ids.data<int32_t>(), B, S);
    const double kl = mean_kl(logits.data<float>(), ql.data<float>(), B * S, V);
    std::printf("[ measured ] %s %s: mean KL(f32 || %s) = %.2e over %lld positions\n", GetParam().c_str(),
                std::string(dtype_name(t)).c_str(), std::string(dtype_name(t)).c_str(), kl, (long long)(B * S));
    RecordProperty(std::string("kl_") + std::string(dtype_name(t)), std::to_string(kl));
    // measured: q8_0 3e-4 / 5e-5 / 8e-5, q4_0 4e-2 / 4e-3 / 9e-3 (llama / qwen2 / qwen3 tiny)
    EXPECT_LT(kl, t == DType::Q8_0 ? 1e-3 : 1e-1) << dtype_name(t);
    EXPECT_GT(kl, 0.0) << "quantization changed nothing?";
  }
}

INSTANTIATE_TEST_SUITE_P(Models, GgufReference, ::testing::Values("llama-tiny", "qwen2-tiny", "qwen3-tiny"),
                         [](const auto& info) { return info.param.substr(0, 5); });

// llama.cpp (architecture llama, RoPE "normal" mode) rotates pairs (2i, 2i+1) of each head by
// pos·θ^(−2i/d); Hugging Face rotates (i, i + d/2). With the rows permuted as the export does,
// the rotated vectors are the same up to that permutation, so every q·k — the attention — agrees.
TEST(GgufRope, InterleavedRopeOnPermutedRowsGivesTheSameScores) {
  const int64_t n_head = 3, hd = 8, K = 16, half = hd / 2;
  const auto wq = test::random_vector(size_t(n_head * hd * K), 1), wk = test::random_vector(size_t(n_head * hd * K), 2);
  const auto x = test::random_vector(size_t(K), 3), y = test::random_vector(size_t(K), 4);
  Tensor tq = Tensor::zeros(DType::F32, {n_head * hd, K}), tk = Tensor::zeros(DType::F32, {n_head * hd, K});
  std::copy(wq.begin(), wq.end(), tq.data<float>());
  std::copy(wk.begin(), wk.end(), tk.data<float>());
  const Tensor gq = permute_qk_rows(tq, n_head, true), gk = permute_qk_rows(tk, n_head, true);
  EXPECT_EQ(std::memcmp(permute_qk_rows(gq, n_head, false).raw(), tq.raw(), tq.nbytes()), 0) << "not inverse";
  auto matvec = [&](const Tensor& w, const std::vector<float>& v) {
    std::vector<float> out(static_cast<size_t>(n_head * hd), 0.0f);
    for (int64_t r = 0; r < n_head * hd; ++r)
      for (int64_t c = 0; c < K; ++c) out[size_t(r)] += w.data<float>()[r * K + c] * v[size_t(c)];
    return out;
  };
  auto rope = [&](std::vector<float> v, int pos, bool interleaved) {
    for (int64_t h = 0; h < n_head; ++h)
      for (int64_t i = 0; i < half; ++i) {
        const double a = pos * std::pow(10000.0, -2.0 * double(i) / double(hd));
        const int64_t i0 = h * hd + (interleaved ? 2 * i : i), i1 = h * hd + (interleaved ? 2 * i + 1 : i + half);
        const double u = v[size_t(i0)], w = v[size_t(i1)];
        v[size_t(i0)] = float(u * std::cos(a) - w * std::sin(a));
        v[size_t(i1)] = float(w * std::cos(a) + u * std::sin(a));
      }
    return v;
  };
  const auto q_hf = rope(matvec(tq, x), 5, false), k_hf = rope(matvec(tk, y), 2, false);
  const auto q_gg = rope(matvec(gq, x), 5, true), k_gg = rope(matvec(gk, y), 2, true);
  for (int64_t h = 0; h < n_head; ++h) {
    double s_hf = 0, s_gg = 0;
    for (int64_t d = 0; d < hd; ++d) s_hf += q_hf[size_t(h * hd + d)] * k_hf[size_t(h * hd + d)], s_gg += q_gg[size_t(h * hd + d)] * k_gg[size_t(h * hd + d)];
    EXPECT_NEAR(s_gg, s_hf, 1e-4 * (1 + std::fabs(s_hf))) << "head " << h;
    // and without the permutation the scores would differ: the permutation is needed
    const auto q_wrong = rope(matvec(tq, x), 5, true), k_wrong = rope(matvec(tk, y), 2, true);
    double s_wrong = 0;
    for (int64_t d = 0; d < hd; ++d) s_wrong += q_wrong[size_t(h * hd + d)] * k_wrong[size_t(h * hd + d)];
    EXPECT_GT(std::fabs(s_wrong - s_hf), 1e-3) << "head " << h;
  }
}

TEST(GgufCli, ConvertQuantizeInfoRoundTrips) {
  TempDir dir;
  auto sh = [&](const std::string& args) { return test::run_distill(args); };
  ASSERT_EQ(sh("init --preset tiny --tokenizer bytes -o " + (dir / "m")).exit_code, 0);
  auto r = sh("convert " + (dir / "m") + " -o " + (dir / "m.gguf"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = sh("convert " + (dir / "m.gguf") + " -o " + (dir / "back"));
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // f32 -> GGUF -> directory: every tensor byte-identical, the tokenizer encodes the same
  const TensorStore a = TensorStore::open_dir(dir / "m"), b = TensorStore::open_dir(dir / "back");
  for (const std::string& n : a.names()) {
    const Tensor ta = a.get(n), tb = b.get(n);
    ASSERT_EQ(ta.shape(), tb.shape()) << n;
    EXPECT_EQ(std::memcmp(ta.raw(), tb.raw(), ta.nbytes()), 0) << n;
  }
  const auto t1 = Tokenizer::load(dir / "m"), t2 = Tokenizer::load(dir / "back"), t3 = Tokenizer::load(dir / "m.gguf");
  for (const char* text : {"Hello, world! 12+34=46", "<|im_start|>user\nhi<|im_end|>"}) {
    EXPECT_EQ(t1->encode(text, true, true), t2->encode(text, true, true));
    EXPECT_EQ(t1->encode(text, true, true), t3->encode(text, true, true));
  }
  r = sh("quantize " + (dir / "m") + " -o " + (dir / "q4.gguf") + " --type q4_0");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  r = sh("info " + (dir / "q4.gguf") + " --tensors");
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("Q4_0"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("blk.0.attn_q.weight"), std::string::npos) << r.output;
  // the same prompt through the directory and the f32 GGUF: the same greedy text
  auto text_of = [](std::string out) { return out.substr(0, out.find("\n[prompt")); };  // without the timing line
  const auto run_dir = sh("run " + (dir / "m") + " -p hello --raw --temp 0 -n 16");
  const auto run_gguf = sh("run " + (dir / "m.gguf") + " -p hello --raw --temp 0 -n 16");
  EXPECT_EQ(text_of(run_dir.output), text_of(run_gguf.output));
  EXPECT_FALSE(text_of(run_dir.output).empty());
  // errors: a bad type, a GGUF with a missing tensor
  EXPECT_NE(sh("convert " + (dir / "m") + " -o " + (dir / "x.gguf") + " --type q3").exit_code, 0);
  GgufWriter w;
  w.set("general.architecture", GgufValue::of_string("llama"));
  w.write(dir / "empty.gguf");
  r = sh("run " + (dir / "empty.gguf") + " -p hi");
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("empty.gguf"), std::string::npos) << r.output;
}

// --type q4_k_m types each tensor as llama.cpp's Q4_K_M does: Q6_K for the (tied) output matrix
// and for attn_v / ffn_down of layers 0, 3, 6, 7 of 8 (the first and last eighth, every third
// between), Q4_K for the rest; rows that are not whole 256-blocks fall back to Q8_0.
TEST(GgufCli, KQuantMixTypesEachTensorAsLlamaCppDoes) {
  TempDir dir;
  for (const int64_t width : {256, 288}) {
    const nlohmann::json j = {{"model_type", "llama"}, {"vocab_size", 300}, {"hidden_size", width}, {"intermediate_size", 512},
                              {"num_hidden_layers", 8}, {"num_attention_heads", 4}, {"num_key_value_heads", 4},
                              {"tie_word_embeddings", true}, {"max_position_embeddings", 64}};
    const Model m = Model::random(ModelConfig::from_json(j, "llama"), DType::F32, 3, 0.05f);
    m.save(dir / "m");
    test::write_bytes(dir / "m/tokenizer.json", tiny_tokenizer(300).tokenizer_json);
    const auto r = test::run_distill("quantize " + (dir / "m") + " -o " + (dir / "k.gguf") + " --type Q4_K_M");
    ASSERT_EQ(r.exit_code, 0) << r.output;
    EXPECT_NE(r.output.find("Q4_K_M"), std::string::npos) << r.output;
    const GgufFile g = GgufFile::open(dir / "k.gguf");
    EXPECT_EQ(g.get_int("general.file_type"), 15);  // llama.cpp's MOSTLY_Q4_K_M
    for (const GgufTensorInfo& t : g.tensors()) {
      DType want = DType::Q4_K;
      const bool more_bits = t.name.rfind("blk.", 0) == 0 && std::string("0367").find(t.name[4]) != std::string::npos;
      if (t.shape.size() == 1) want = DType::F32;
      else if (t.name == "token_embd.weight" || (more_bits && (t.name.find("attn_v") != std::string::npos || t.name.find("ffn_down") != std::string::npos)))
        want = DType::Q6_K;
      // 288-wide rows are not whole 256-blocks: Q8_0 (ffn_down's 512-long rows still are)
      if (width == 288 && t.shape.size() == 2 && t.shape[1] % 256 != 0) want = DType::Q8_0;
      EXPECT_EQ(t.dtype, want) << width << " " << t.name;
    }
    // and it runs
    const auto run = test::run_distill("run " + (dir / "k.gguf") + " -p hi --raw --temp 0 -n 4");
    EXPECT_EQ(run.exit_code, 0) << run.output;
    std::filesystem::remove_all(dir / "m");
  }
  const auto bad = test::run_distill("quantize " + (dir / "k.gguf") + " -o " + (dir / "x.gguf") + " --type q3_k_s");
  EXPECT_NE(bad.exit_code, 0);
  EXPECT_NE(bad.output.find("'q3_k_s' is not one of f32, f16, bf16, q8_0, q4_0, q4_k_m, q5_k_m, q6_k"), std::string::npos) << bad.output;
}

}  // namespace distill
