#include "convert/export.h"
#include "model/provenance.h"

#include "core/error.h"
#include "core/progress.h"
#include "formats/gguf.h"
#include "kernels/kernels.h"
#include "model/arch/arch.h"
#include "model/gguf_model.h"
#include "model/weights.h"
#include "tokenizer/gguf_vocab.h"

#include <cstring>
#include <filesystem>
#include <map>
#include <optional>
#include <fstream>
#include <sstream>

namespace distill {

namespace {

std::string read_text(const std::filesystem::path& p) {
  std::ifstream in(p, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// ggml's general.file_type of a model whose matrices are `t`.
uint32_t file_type(DType t) {
  switch (t) {
    case DType::F32: return 0;
    case DType::F16: return 1;
    case DType::Q4_0: return 2;
    case DType::Q8_0: return 7;
    case DType::BF16: return 32;
    case DType::Q6_K: return 18;
    default: fail("convert: --type {} is not offered (f32, f16, bf16, q8_0, q4_0, q4_k_m, q5_k_m, q6_k are)", dtype_name(t));
  }
}

uint32_t file_type(const GgufExportOptions& o) {
  if (o.expert_type == DType::MXFP4) return 38;  // llama.cpp's "mostly MXFP4 experts"
  if (o.type == DType::Q4_K && o.k_quant_mix) return 15;  // MOSTLY_Q4_K_M
  if (o.type == DType::Q5_K && o.k_quant_mix) return 17;  // MOSTLY_Q5_K_M
  return file_type(o.type);
}

bool is_k_quant(DType t) { return t == DType::Q4_K || t == DType::Q5_K || t == DType::Q6_K; }

// The layer index of a GGUF tensor name "blk.N.…", or −1.
int64_t gguf_layer(const std::string& name) {
  if (name.rfind("blk.", 0) != 0) return -1;
  return std::strtoll(name.c_str() + 4, nullptr, 10);
}

}  // namespace

DType gguf_matrix_type(const GgufExportOptions& o, const std::string& name, int64_t cols, int64_t n_layer, bool tied) {
  DType to = o.type;
  if (is_k_quant(to)) {
    const bool output = name == "output.weight" || (tied && name == "token_embd.weight");
    const int64_t i = gguf_layer(name);
    // llama.cpp's use_more_bits: the first and last eighth of the layers, and every third between
    const bool more_bits = i >= 0 && (i < n_layer / 8 || i >= 7 * n_layer / 8 || (i - n_layer / 8) % 3 == 2);
    const bool mixed = name.find(".attn_v.") != std::string::npos || name.find(".ffn_down") != std::string::npos;
    if (output || (o.k_quant_mix && mixed && more_bits)) to = DType::Q6_K;
  }
  if (dtype_is_quantized(to) && cols % dtype_block(to) != 0)
    to = is_k_quant(to) && cols % dtype_block(DType::Q8_0) == 0 ? DType::Q8_0 : DType::F16;
  return to;
}

TokenizerFiles tokenizer_files_of(const std::string& path) {
  if (is_gguf_file(path)) return tokenizer_files_from_gguf(GgufFile::open(path));
  const std::filesystem::path d(path);
  if (!std::filesystem::exists(d / "tokenizer.json")) fail("{}: no tokenizer.json to export with the model", path);
  TokenizerFiles f;
  f.tokenizer_json = read_text(d / "tokenizer.json");
  if (std::filesystem::exists(d / "tokenizer_config.json")) f.tokenizer_config_json = read_text(d / "tokenizer_config.json");
  return f;
}

void check_gguf_exportable(const ModelConfig& c) {
  const RopeScaling& r = c.rope_scaling;
  if (r.type == RopeScalingType::Yarn && (!r.truncate || r.attention_factor > 0 || r.beta_fast != 32.0 || r.beta_slow != 1.0))
    fail("convert: this YaRN (truncate false, an attention_factor or other betas) differs from llama.cpp's; not exported");
  if (c.sliding_window > 0 && c.layer_window.empty()) fail("convert: sliding-window attention is not exported to GGUF");
}

void export_gguf(const Model& m, const TokenizerFiles& tokenizer, const std::string& path, const GgufExportOptions& o) {
  const ModelConfig& c = m.config;
  check_gguf_exportable(c);
  const std::string arch = gguf_arch(c);
  auto key = [&](const char* k) { return arch + "." + k; };
  GgufWriter w;
  w.set("general.architecture", GgufValue::of_string(arch));
  w.set("general.name", GgufValue::of_string(o.name.empty() ? "distill model" : o.name));
  if (!o.provenance.empty()) w.set(kProvenanceGgufKey, GgufValue::of_string(o.provenance));
  // llama.cpp's file type "mostly MXFP4 experts" (38) where the experts are MXFP4
  w.set("general.file_type", GgufValue::of_u32(file_type(o)));
  if (dtype_is_quantized(o.type)) w.set("general.quantization_version", GgufValue::of_u32(2));
  w.set(key("vocab_size"), GgufValue::of_u32(uint32_t(c.n_vocab)));
  w.set(key("context_length"), GgufValue::of_u32(uint32_t(c.max_position_embeddings)));
  w.set(key("embedding_length"), GgufValue::of_u32(uint32_t(c.n_embd)));
  w.set(key("block_count"), GgufValue::of_u32(uint32_t(c.n_layer)));
  w.set(key("feed_forward_length"), GgufValue::of_u32(uint32_t(c.n_ff)));
  w.set(key("attention.head_count"), GgufValue::of_u32(uint32_t(c.n_head)));
  w.set(key("attention.head_count_kv"), GgufValue::of_u32(uint32_t(c.n_kv_head)));
  w.set(key("attention.key_length"), GgufValue::of_u32(uint32_t(c.head_dim)));
  w.set(key("attention.value_length"), GgufValue::of_u32(uint32_t(c.head_dim)));
  w.set(key("attention.layer_norm_rms_epsilon"), GgufValue::of_f32(float(c.norm_eps)));
  w.set(key("rope.freq_base"), GgufValue::of_f32(float(c.rope_theta)));
  w.set(key("rope.dimension_count"), GgufValue::of_u32(uint32_t(c.head_dim)));
  if (c.rope_scaling.type == RopeScalingType::Linear) {
    w.set(key("rope.scaling.type"), GgufValue::of_string("linear"));
    w.set(key("rope.scaling.factor"), GgufValue::of_f32(float(c.rope_scaling.factor)));
  } else if (c.rope_scaling.type == RopeScalingType::Yarn) {
    const RopeScaling& r = c.rope_scaling;
    w.set(key("rope.scaling.type"), GgufValue::of_string("yarn"));
    w.set(key("rope.scaling.factor"), GgufValue::of_f32(float(r.factor)));
    w.set(key("rope.scaling.original_context_length"), GgufValue::of_u32(uint32_t(r.original_max_position_embeddings)));
  }
  if (const auto write_gguf = arch_of(c.model_type).write_gguf) write_gguf(c, w);
  add_tokenizer_to_gguf(w, tokenizer, o.embed_tokenizer_json);

  if (c.rope_scaling.type == RopeScalingType::Llama3) {
    // llama.cpp reads Llama 3's scaling as a divisor per inverse frequency.
    ModelConfig plain = c;
    plain.rope_scaling = RopeScaling{};
    const std::vector<float> base = plain.rope_inv_freq();
    std::vector<float> factors(base.size());
    for (size_t i = 0; i < base.size(); ++i) factors[i] = base[i] / m.inv_freq[i];
    w.add_tensor("rope_freqs.weight", DType::F32, {int64_t(factors.size())}, factors.data(), factors.size() * 4);
  }
  ModelWeights weights = m.weights;
  std::map<std::string, std::vector<uint8_t>> stacks;  // a layer's experts of each projection, in expert order
  const std::vector<ParamRef> params = list_params(c, weights);
  std::optional<Progress> progress;
  if (o.show_progress) progress.emplace("convert", int64_t(params.size()));
  int64_t n_done = 0;
  for (const ParamRef& p : params) {
    if (progress) progress->update(n_done++, p.name);
    std::string stacked;
    int64_t expert = 0;
    if (gguf_expert_tensor(p.name, &stacked, &expert)) {
      // Every expert of a projection in one tensor [n_expert, rows, cols] of one dtype.
      GgufExportOptions experts = o;
      experts.type = o.expert_type.value_or(o.type);
      DType to = p.is_matrix ? gguf_matrix_type(experts, stacked, p.shape.back(), c.n_layer, false) : DType::F32;  // biases stay f32
      std::vector<uint8_t>& stack = stacks[stacked];
      const Tensor q = converted(*p.tensor, to);  // (as stored when already `to`: no copy)
      const auto* raw = static_cast<const uint8_t*>(q.raw());
      stack.insert(stack.end(), raw, raw + q.nbytes());
      if (expert + 1 == c.n_expert) {
        Shape shape{c.n_expert};
        shape.insert(shape.end(), p.shape.begin(), p.shape.end());
        w.add_tensor(stacked, to, shape, stack.data(), stack.size());
        stacks.erase(stacked);
      }
      continue;
    }
    const std::string name = gguf_tensor_name(p.name, arch);
    Tensor t = *p.tensor;
    if (const char qk = gguf_qk_tensor(name); qk && gguf_permutes_qk(arch))
      t = permute_qk_rows(t, qk == 'q' ? c.n_head : c.n_kv_head, /*to_gguf=*/true);
    DType to = p.is_matrix ? gguf_matrix_type(o, name, t.dim(-1), c.n_layer, c.tie_word_embeddings) : DType::F32;
    // The router stays f32, as llama.cpp's quantizer keeps it: it is small, and rounding its
    // logits can change which experts a token uses.
    if (name.find(".ffn_gate_inp.") != std::string::npos) to = DType::F32;
    const Tensor q = converted(t, to);
    w.add_tensor(name, to, q.shape(), q.raw(), q.nbytes());
  }
  if (progress) progress->update(n_done, "writing " + path), progress->finish();
  w.write(path);
}

Model quantized(const Model& m, DType to) {
  Model out = m;
  for (const ParamRef& p : list_params(out.config, out.weights)) {
    if (!p.is_matrix || p.tensor->dtype() == to || p.tensor->dim(-1) % dtype_block(to) != 0) continue;
    *p.tensor = converted(*p.tensor, to);
  }
  tie_lm_head(out.config, out.weights);
  return out;
}

Model dequantized(const Model& m, DType to) {
  Model out = m;
  for (const ParamRef& p : list_params(out.config, out.weights)) {
    const Tensor& t = *p.tensor;
    if (!p.is_matrix || t.dtype() == to) continue;  // vectors are f32 (never quantized)
    Tensor f = Tensor::zeros(DType::F32, t.shape());
    dequantize_row(f.data<float>(), t.raw(), t.dtype(), t.numel());
    *p.tensor = to == DType::F32 ? f : f.to(to);
  }
  tie_lm_head(out.config, out.weights);
  return out;
}

}  // namespace distill
