// distill init: a new randomly initialised model directory in a preset size (or any config.json),
// optionally with a tokenizer copied in — the starting point of a student.
#include "cli/commands.h"
#include "core/error.h"
#include "convert/export.h"
#include "model/arch/arch.h"
#include "model/cut.h"
#include "model/model.h"
#include "tokenizer/byte_vocab.h"
#include "tokenizer/tokenizer.h"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>

namespace distill {

namespace fs = std::filesystem;

namespace {

struct InitArgs {
  std::string preset = "tiny", config, tokenizer, out, arch = "llama", dtype = "f32", from, layers, corpus, expert_type;
  int64_t vocab = 0, ffn = 0;
  int64_t experts = 8, experts_used = 2, expert_ffn = 0;  // --arch qwen3_moe
  uint64_t seed = 1;
};

struct Preset {
  const char* name;
  int64_t dim, layers, heads, kv_heads, ffn;
};
constexpr Preset kPresets[] = {
    {"tiny", 64, 2, 4, 2, 176},      // ~0.1 M + embeddings: tests, toy tasks
    {"15m", 288, 6, 6, 6, 768},      // llama2.c stories15M shape
    {"30m", 512, 8, 8, 4, 1376},     // GQA
    {"110m", 768, 12, 12, 12, 2048}, // llama2.c stories110M shape
};

DType parse_dtype(const std::string& name) {
  if (name != "f32" && name != "bf16" && name != "f16") fail("--dtype '{}': use f32, bf16 or f16", name);
  return name == "bf16" ? DType::BF16 : name == "f16" ? DType::F16 : DType::F32;
}

// A student cut from a teacher: some of its layers, optionally a narrower FFN (model/cut.h).
void run_init_from(const InitArgs& a) {
  if (!a.config.empty() || !a.tokenizer.empty() || a.vocab > 0)
    fail("--from takes the architecture and tokenizer from the teacher: drop --config, --tokenizer and --vocab");
  const Model teacher = Model::load(a.from);
  CutOptions o;
  if (!a.layers.empty()) o.layers = parse_layer_list(a.layers, teacher.config.n_layer);
  o.n_ff = a.ffn;
  o.dtype = parse_dtype(a.dtype);
  const Model student = cut_model(teacher, o);
  student.save(a.out);
  write_tokenizer_files(a.out, tokenizer_files_of(a.from));
  std::string kept;
  for (int64_t l : o.layers) kept += (kept.empty() ? "" : ",") + std::to_string(l);
  std::printf("%s: cut from %s — %lld of %lld layers (%s), FFN %lld of %lld, %.2f M of %.2f M parameters, %s\n", a.out.c_str(),
              a.from.c_str(), (long long)student.config.n_layer, (long long)teacher.config.n_layer,
              kept.empty() ? "all" : kept.c_str(), (long long)student.config.n_ff, (long long)teacher.config.n_ff,
              double(student.config.n_params()) / 1e6, double(teacher.config.n_params()) / 1e6, a.dtype.c_str());
}

void run_init(const InitArgs& a) {
  const bool gguf_out = a.out.size() > 5 && a.out.compare(a.out.size() - 5, 5, ".gguf") == 0;
  if (!a.from.empty()) return run_init_from(a);
  if (!a.layers.empty() || a.ffn > 0) fail("--layers and --ffn cut a student from a teacher: give --from TEACHER");
  ModelConfig c;
  if (!a.config.empty()) {
    c = ModelConfig::from_file(a.config);
  } else {
    const Preset* p = nullptr;
    std::string known;
    for (const Preset& q : kPresets) {
      if (a.preset == q.name) p = &q;
      known += (known.empty() ? "" : ", ") + std::string(q.name);
    }
    if (!p) fail("--preset '{}' is not known (known: {})", a.preset, known);
    nlohmann::json j = {{"model_type", a.arch}, {"hidden_size", p->dim}, {"num_hidden_layers", p->layers},
                        {"num_attention_heads", p->heads}, {"num_key_value_heads", p->kv_heads},
                        {"intermediate_size", p->ffn}, {"vocab_size", 32000}, {"head_dim", p->dim / p->heads},
                        {"rms_norm_eps", 1e-5}, {"max_position_embeddings", 2048}, {"tie_word_embeddings", true},
                        {"rope_theta", a.arch == "llama" ? 10000.0 : 1000000.0}};
    if (a.arch == "qwen3_moe") {
      // the preset's FFN split over the experts a token uses, so active parameters stay the preset's
      j["num_experts"] = a.experts, j["num_experts_per_tok"] = a.experts_used, j["norm_topk_prob"] = true;
      j["moe_intermediate_size"] = a.expert_ffn > 0 ? a.expert_ffn : std::max<int64_t>(1, p->ffn / a.experts_used);
    } else if (a.arch == "gpt_oss") {
      j["num_local_experts"] = a.experts, j["num_experts_per_tok"] = a.experts_used, j["tie_word_embeddings"] = false;
      j["intermediate_size"] = a.expert_ffn > 0 ? a.expert_ffn : std::max<int64_t>(1, p->ffn / a.experts_used);
      j["rope_theta"] = 150000.0;
    }
    c = ModelConfig::from_json(j, "--preset " + a.preset);
  }
  std::string tokenizer_dir = a.tokenizer;
  const bool made_here = a.tokenizer == "bytes" || a.tokenizer.rfind("bpe:", 0) == 0;
  if (a.tokenizer.rfind("bpe:", 0) == 0) {
    // a byte-level BPE learned from --corpus: N merges over the 256 bytes
    char* end = nullptr;
    const long merges = std::strtol(a.tokenizer.c_str() + 4, &end, 10);
    if (*end != '\0' || merges < 1 || merges > 200000) fail("--tokenizer '{}': bpe:N needs a number of merges N in 1..200000", a.tokenizer);
    if (a.corpus.empty()) fail("--tokenizer {} learns its merges from a text: give --corpus FILE", a.tokenizer);
    std::ifstream in(a.corpus, std::ios::binary);
    if (!in) fail("--corpus {}: cannot open", a.corpus);
    std::string text(std::istreambuf_iterator<char>(in), {});
    if (text.size() > (8u << 20)) text.resize(8u << 20);  // merges from the first 8 MB
    tokenizer_dir = gguf_out ? a.out + ".tokenizer-bpe" : (fs::path(a.out) / ".tokenizer-bpe").string();
    write_tokenizer_files(tokenizer_dir, make_byte_level_tokenizer(text, int(merges), true, a.vocab));
  } else if (a.tokenizer == "bytes") {
    // a byte-level tokenizer made here (256 bytes + ChatML specials): no download needed
    tokenizer_dir = gguf_out ? a.out + ".tokenizer-bytes" : (fs::path(a.out) / ".tokenizer-bytes").string();
    // with --vocab, padded to exactly that many tokens (a benchmark model of a real shape)
    write_tokenizer_files(tokenizer_dir, make_byte_level_tokenizer("", 0, true, a.vocab));
  }
  if (!tokenizer_dir.empty()) {
    const fs::path tok = fs::path(tokenizer_dir) / "tokenizer.json";
    if (!fs::exists(tok)) fail("--tokenizer {}: no tokenizer.json in it", a.tokenizer);
    const auto t = Tokenizer::load(tokenizer_dir);  // refuses a tokenizer we cannot run, now rather than later
    c.n_vocab = t->vocab_size();
    if (t->bos_id() >= 0) c.bos_token_id = t->bos_id();
    if (t->eos_id() >= 0) c.eos_token_ids = {t->eos_id()};
  }
  if (a.vocab > 0) c.n_vocab = a.vocab;
  const DType dt = gguf_out ? DType::F32 : parse_dtype(a.dtype);
  c.torch_dtype = a.dtype == "bf16" ? "bfloat16" : a.dtype == "f16" ? "float16" : "float32";
  if (gguf_out) {
    // straight to GGUF (a benchmark or test model; gpt_oss has no directory form here)
    if (tokenizer_dir.empty()) fail("-o {}: a GGUF needs a tokenizer (--tokenizer DIR, bytes or bpe:N)", a.out);
    check_gguf_exportable(c);  // before drawing the weights, not after
    GgufExportOptions o;
    o.type = a.dtype == "q8_0" ? DType::Q8_0 : a.dtype == "q4_0" ? DType::Q4_0 : parse_dtype(a.dtype);
    if (!a.expert_type.empty()) o.expert_type = a.expert_type == "mxfp4" ? DType::MXFP4 : a.expert_type == "q8_0" ? DType::Q8_0
                                                 : a.expert_type == "q4_0" ? DType::Q4_0 : parse_dtype(a.expert_type);
    o.name = fs::path(a.out).stem().string();
    export_gguf(Model::random(c, DType::F32, a.seed, 0.02f, o.expert_type.value_or(DType::F32)), tokenizer_files_of(tokenizer_dir),
                a.out, o);
    if (made_here) fs::remove_all(tokenizer_dir);
    std::printf("%s: %s GGUF, %.2f M parameters (%.2f M active), %s%s\n", a.out.c_str(), c.model_type.c_str(),
                double(c.n_params()) / 1e6, double(c.n_active_params()) / 1e6, a.dtype.c_str(),
                a.expert_type.empty() ? "" : (", experts " + a.expert_type).c_str());
    return;
  }
  // GPT-2-style initialisation: N(0, 0.02²) for every matrix.
  Model::random(c, dt, a.seed, 0.02f).save(a.out);
  if (!tokenizer_dir.empty()) copy_tokenizer_files(tokenizer_dir, a.out);
  if (made_here) fs::remove_all(tokenizer_dir);
  std::printf("%s: %s, %.2f M parameters (%lld layers, dim %lld, vocab %lld), %s\n", a.out.c_str(), c.model_type.c_str(),
              double(c.n_params()) / 1e6, (long long)c.n_layer, (long long)c.n_embd, (long long)c.n_vocab, a.dtype.c_str());
}

}  // namespace

void register_init(CLI::App& app) {
  auto a = std::make_shared<InitArgs>();
  CLI::App* cmd = app.add_subcommand("init", "Create a randomly initialised model directory");
  cmd->add_option("--preset", a->preset, "tiny | 15m | 30m | 110m")->capture_default_str();
  cmd->add_option("--config", a->config, "A config.json to use instead of a preset");
  cmd->add_option("--arch", a->arch, "model_type of a preset: llama | qwen2 | qwen3 | mistral | qwen3_moe | gpt_oss (-o X.gguf)")->capture_default_str();
  cmd->add_option("--experts", a->experts, "With --arch qwen3_moe or gpt_oss: experts per layer")->capture_default_str()->check(CLI::Range(1, 4096));
  cmd->add_option("--experts-used", a->experts_used, "With --arch qwen3_moe or gpt_oss: experts per token")->capture_default_str()->check(CLI::Range(1, 4096));
  cmd->add_option("--expert-type", a->expert_type, "With -o X.gguf: the experts' type (mxfp4, q8_0, q4_0, ...)");
  cmd->add_option("--expert-ffn", a->expert_ffn, "With --arch qwen3_moe or gpt_oss: width of an expert (default: the preset's FFN / experts used)")->check(CLI::PositiveNumber);
  cmd->add_option("--tokenizer", a->tokenizer, "Directory whose tokenizer files are copied (sets the vocabulary size), \"bytes\" for a byte-level tokenizer made here, or \"bpe:N\" for a byte-level BPE with N merges learned from --corpus");
  cmd->add_option("--vocab", a->vocab, "Vocabulary size (overrides the preset and the tokenizer; with --tokenizer bytes, the byte-level vocabulary is padded to it)")->check(CLI::PositiveNumber);
  cmd->add_option("--dtype", a->dtype, "Weight dtype: f32 | bf16 | f16")->capture_default_str();
  cmd->add_option("--seed", a->seed, "Initialisation seed")->capture_default_str();
  cmd->add_option("--corpus", a->corpus, "Text the merges of --tokenizer bpe:N are learned from");
  cmd->add_option("--from", a->from, "Cut the student from this teacher (model directory or GGUF) instead of random weights");
  cmd->add_option("--layers", a->layers, "With --from: teacher layers to keep, e.g. 0,2,4 or 0-3,10-11 or every:2 (default: all)");
  cmd->add_option("--ffn", a->ffn, "With --from: FFN width to keep, the channels with the largest ‖gate‖·‖up‖·‖down‖")->check(CLI::PositiveNumber);
  cmd->add_option("-o,--out", a->out, "Output model directory, or X.gguf for a GGUF file (--dtype may then be q8_0 or q4_0)")->required();
  cmd->callback([a] { run_init(*a); });
}

}  // namespace distill
