// distill convert / quantize / info: models between Hugging Face directories and GGUF files.
//   convert DIR|FILE -o OUT.gguf [--type f32|f16|bf16|q8_0|q4_0|q4_k_m|q5_k_m|q6_k]   to GGUF
//   convert FILE.gguf -o DIR [--type f32|f16|bf16]                  back to a Hugging Face directory
//   quantize IN -o OUT.gguf --type q4_k_m|…                         convert with a required type
//   info FILE|DIR [--tensors]                                       architecture, sizes, tensor types
#include "cli/commands.h"
#include "model/kv_cache.h"
#include "model/memory_plan.h"
#include "model/provenance.h"
#include "convert/export.h"
#include "core/error.h"
#include "core/progress.h"
#include "core/system.h"
#include "core/threads.h"
#include "kernels/kernels.h"
#include "formats/gguf.h"
#include "model/weights.h"
#include "model/gguf_model.h"
#include "tokenizer/byte_vocab.h"

#include <CLI/CLI.hpp>

#include <chrono>
#include <filesystem>
#include <map>

namespace distill {

namespace fs = std::filesystem;

namespace {

struct ConvertArgs {
  std::string in, out, type, expert_type;
  std::string name;
};

constexpr const char* kTypes = "f32, f16, bf16, q8_0, q4_0, q4_k_m, q5_k_m, q6_k";

// A --type: the matrices' type, and whether it is a K-quant "_M" mix (export.h).
std::pair<DType, bool> parse_type(const std::string& s) {
  static const std::map<std::string, std::pair<DType, bool>> types = {
      {"f32", {DType::F32, false}},   {"f16", {DType::F16, false}},   {"bf16", {DType::BF16, false}},
      {"q8_0", {DType::Q8_0, false}}, {"q4_0", {DType::Q4_0, false}}, {"q4_k_m", {DType::Q4_K, true}},
      {"q5_k_m", {DType::Q5_K, true}}, {"q6_k", {DType::Q6_K, false}}};
  std::string lower = s;
  for (char& ch : lower) ch = char(std::tolower(static_cast<unsigned char>(ch)));
  auto it = types.find(lower);
  if (it == types.end()) fail("--type '{}' is not one of {}", s, kTypes);
  return it->second;
}

// The dtype most of a model's matrices have (the default output type).
DType main_dtype(const Model& m) {
  std::map<DType, int64_t> count;
  ModelWeights w = m.weights;
  for (const ParamRef& p : list_params(m.config, w))
    if (p.is_matrix) count[p.tensor->dtype()] += p.tensor->numel();
  DType best = DType::F32;
  int64_t most = -1;
  for (auto [d, n] : count)
    if (n > most) best = d, most = n;
  return best;
}

void convert(const ConvertArgs& a) {
  const auto t0 = std::chrono::steady_clock::now();
  const Model m = Model::load(a.in);
  const TokenizerFiles tok = tokenizer_files_of(a.in);
  const bool to_gguf = a.out.size() > 5 && a.out.substr(a.out.size() - 5) == ".gguf";
  if (to_gguf) {
    GgufExportOptions o;
    if (a.type.empty()) {
      o.type = main_dtype(m);
      if (dtype_is_quantized(o.type) && o.type != DType::Q8_0 && o.type != DType::Q4_0)
        fail("{} holds {} weights; give --type ({}) to write them", a.in, dtype_name(o.type), kTypes);
    } else {
      std::tie(o.type, o.k_quant_mix) = parse_type(a.type);
    }
    if (!a.expert_type.empty()) {
      if (!m.config.is_moe()) fail("--expert-type: {} has no experts", a.in);
      o.expert_type = a.expert_type == "mxfp4" ? DType::MXFP4 : parse_type(a.expert_type).first;
    }
    o.name = a.name.empty() ? fs::path(a.in).filename().string() : a.name;
    o.show_progress = true;
    std::string label = a.type.empty() ? std::string(dtype_name(o.type)) : a.type;
    for (char& ch : label) ch = char(std::toupper(static_cast<unsigned char>(ch)));
    o.provenance = provenance_record("convert", a.in, "", {}, {{"to", "gguf"}, {"type", label}}).dump();
    export_gguf(m, tok, a.out, o);
    std::fprintf(stderr, "wrote %s: %s, %s weights, %s (%.1f s)\n", a.out.c_str(), gguf_arch(m.config).c_str(),
                 label.c_str(), human_bytes(double(fs::file_size(a.out))).c_str(),
                 std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    return;
  }
  if (!is_gguf_file(a.in)) fail("-o {}: a directory output needs a GGUF input (or give OUT.gguf)", a.out);
  const DType to = a.type.empty() ? DType::F32 : parse_type(a.type).first;
  if (dtype_is_quantized(to)) fail("--type {}: a Hugging Face directory holds f32, f16 or bf16 weights", a.type);
  const Model plain = dequantized(m, to);
  plain.save(a.out);
  write_tokenizer_files(a.out, tok);
  write_provenance(a.out, provenance_record("convert", a.in, "", {}, {{"to", "safetensors"}, {"type", dtype_name(to)}}));
  std::fprintf(stderr, "wrote %s: config.json, model.safetensors (%s), tokenizer.json (%.1f s)\n", a.out.c_str(),
               std::string(dtype_name(to)).c_str(), std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
}

// The machine as the kernels see it.
void system_info(bool bandwidth) {
  std::printf("cpu        %s\n", cpu_model_name().c_str());
  std::printf("isa        %s\n", cpu_isa_flags().c_str());
  std::printf("kernels    %s (best here: %s; DISTILL_ISA=scalar|avx2|avx512 chooses)\n",
              kernel_variant_name(active_kernel_variant()), kernel_variant_name(best_kernel_variant()));
  std::printf("threads    %d\n", num_threads());
  if (bandwidth) std::printf("read bw    %.1f GB/s (parallel streaming sum over 1 GiB, best of 5)\n", measure_read_bandwidth());
}

// The provenance record, one generation per indent: what made the model, from what.
void print_lineage(const nlohmann::json& r, int depth) {
  if (!r.is_object()) {
    if (depth == 0) std::printf("  lineage        none recorded (made outside distill, or before provenance.json)\n");
    return;
  }
  const std::string pad(size_t(2 * depth), ' ');
  auto named = [](const nlohmann::json& f) {
    const std::string where = f.value("path", f.value("url", std::string("?")));
    return f.contains("sha256") ? where + " (sha256 " + f["sha256"].get<std::string>().substr(0, 16) + "…)" : where;
  };
  std::printf("  %s%-14s %s by %s, %s\n", pad.c_str(), depth ? "made from" : "lineage", r.value("command", "?").c_str(),
              r.value("tool", "?").c_str(), r.value("created", "?").c_str());
  if (r.contains("teacher")) std::printf("  %s  teacher      %s\n", pad.c_str(), named(r["teacher"]).c_str());
  for (const auto& d : r.value("data", nlohmann::json::array())) std::printf("  %s  data         %s\n", pad.c_str(), named(d).c_str());
  if (r.contains("parent")) {
    std::printf("  %s  parent       %s\n", pad.c_str(), named(r["parent"]).c_str());
    print_lineage(r["parent"].value("provenance", nlohmann::json()), depth + 1);
  }
}

void info(const std::string& path, bool list_tensors, int64_t ctx, int64_t slots) {
  // The plan first, from the headers alone: what loading would take, before it takes it.
  const MemoryPlan plan = plan_memory(path, ctx, slots);
  const ModelConfig& c = plan.config;
  std::printf("%s\n", path.c_str());
  std::printf("  architecture   %s (%lld layers, %lld wide, %lld heads / %lld KV heads of %lld, ffn %lld)\n", c.model_type.c_str(),
              (long long)c.n_layer, (long long)c.n_embd, (long long)c.n_head, (long long)c.n_kv_head, (long long)c.head_dim,
              (long long)c.n_ff);
  if (c.is_moe())
    std::printf("  experts        %lld per layer of width %lld, %lld per token (router: %s)\n", (long long)c.n_expert,
                (long long)c.n_ff_expert, (long long)c.n_expert_used,
                c.moe_softmax_after_topk ? "top k of the logits, softmaxed among them"
                : c.norm_topk_prob      ? "softmax, top k, renormalised"
                                        : "softmax, top k");
  std::printf("  parameters     %.2f M%s", double(c.n_params()) / 1e6, c.tie_word_embeddings ? " (embeddings tied)" : "");
  if (c.is_moe()) std::printf(", %.2f M active per token", double(c.n_active_params()) / 1e6);
  std::printf("\n");
  std::printf("  vocabulary     %lld, context %lld, RoPE theta %g\n", (long long)c.n_vocab, (long long)c.max_position_embeddings, c.rope_theta);
  std::printf("  memory plan    %s\n", describe(plan).c_str());
  std::fflush(stdout);
  const Model m = Model::load(path, /*prepare=*/false);  // checks every tensor against the config
  std::map<DType, std::pair<int64_t, size_t>> by_type;  // elements, bytes
  ModelWeights w = m.weights;
  const auto params = list_params(c, w);
  size_t total = 0;
  for (const ParamRef& p : params) {
    auto& e = by_type[p.tensor->dtype()];
    e.first += p.tensor->numel(), e.second += p.tensor->nbytes();
    total += p.tensor->nbytes();
  }
  std::printf("  weights        %s", human_bytes(double(total)).c_str());
  for (const auto& [d, e] : by_type)
    std::printf("  | %s: %.2f M values, %s, %.2f bits/value", std::string(dtype_name(d)).c_str(), double(e.first) / 1e6,
                human_bytes(double(e.second)).c_str(), 8.0 * double(e.second) / double(e.first));
  std::printf("\n");
  print_lineage(read_provenance(path), 0);
  if (is_gguf_file(path)) {
    const GgufFile g = GgufFile::open(path);
    std::printf("  GGUF           version %u, %zu metadata keys, %zu tensors, alignment %zu\n", g.version(), g.metadata().size(),
                g.tensors().size(), g.alignment());
    for (const char* k : {"general.name", "tokenizer.ggml.model", "tokenizer.ggml.pre"})
      if (const GgufValue* v = g.find(k); v && v->type == GgufType::String) std::printf("  %-14s %s\n", k, v->s.c_str());
    if (list_tensors)
      for (const GgufTensorInfo& t : g.tensors())
        std::printf("    %-32s %-6s %-16s %s\n", t.name.c_str(), std::string(dtype_name(t.dtype)).c_str(), shape_str(t.shape).c_str(),
                    human_bytes(double(t.nbytes)).c_str());
  } else if (list_tensors) {
    for (const ParamRef& p : params)
      std::printf("    %-48s %-6s %-16s %s\n", p.name.c_str(), std::string(dtype_name(p.tensor->dtype())).c_str(),
                  shape_str(p.tensor->shape()).c_str(), human_bytes(double(p.tensor->nbytes())).c_str());
  }
}

}  // namespace

void register_convert(CLI::App& app) {
  auto a = std::make_shared<ConvertArgs>();
  CLI::App* cmd = app.add_subcommand("convert", "Convert a model: directory or GGUF to GGUF (-o X.gguf), GGUF to a directory");
  cmd->add_option("input", a->in, "Model directory or GGUF file")->required();
  cmd->add_option("-o,--out", a->out, "OUT.gguf, or a directory (from a GGUF input)")->required();
  cmd->add_option("--type", a->type, "Weights: f32 | f16 | bf16 | q8_0 | q4_0 | q4_k_m | q5_k_m | q6_k (default: as the input's)");
  cmd->add_option("--name", a->name, "general.name written into the GGUF");
  cmd->add_option("--expert-type", a->expert_type, "Experts of a mixture: mxfp4 (as GPT-OSS ships) or any --type");
  cmd->callback([a] { convert(*a); });

  auto q = std::make_shared<ConvertArgs>();
  CLI::App* quant = app.add_subcommand("quantize", "Write a quantized GGUF (convert with a required --type)");
  quant->add_option("input", q->in, "Model directory or GGUF file")->required();
  quant->add_option("-o,--out", q->out, "OUT.gguf")->required();
  quant->add_option("--type", q->type, "q4_k_m | q5_k_m | q6_k | q8_0 | q4_0 | f16 | bf16 | f32")->required();
  quant->callback([q] {
    if (q->out.size() <= 5 || q->out.substr(q->out.size() - 5) != ".gguf") fail("quantize: -o must name a .gguf file");
    convert(*q);
  });

  auto path = std::make_shared<std::string>();
  auto tensors = std::make_shared<bool>(false), system = std::make_shared<bool>(false), bandwidth = std::make_shared<bool>(false);
  auto ctx = std::make_shared<int64_t>(8192), slots = std::make_shared<int64_t>(1);
  CLI::App* inf = app.add_subcommand("info", "Describe a model directory or GGUF file, or this machine (--system)");
  inf->add_option("path", *path, "Model directory or GGUF file");
  inf->add_flag("--tensors", *tensors, "List every tensor");
  inf->add_flag("--system", *system, "The CPU, its instruction sets, the kernel variant chosen and the threads");
  inf->add_flag("--bandwidth", *bandwidth, "With --system: measure the memory read bandwidth (a few seconds)");
  inf->add_option("--ctx", *ctx, "Context the memory plan's KV cache holds per sequence (capped by the model's)")
      ->capture_default_str()->check(CLI::PositiveNumber);
  inf->add_option("--slots", *slots, "Sequences decoded together in the memory plan (serve --parallel)")
      ->capture_default_str()->check(CLI::Range(1, 256));
  inf->callback([path, tensors, system, bandwidth, ctx, slots] {
    if (*system) return system_info(*bandwidth);
    if (path->empty()) fail("info: give a model directory or GGUF file, or --system");
    info(*path, *tensors, *ctx, *slots);
  });
}

}  // namespace distill
