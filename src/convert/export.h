// Model export: a Hugging Face directory or GGUF file to GGUF (f32, f16, bf16, q8_0, q4_0), and a
// GGUF file back to a Hugging Face directory (weights dequantized). The GGUF carries the
// metadata keys, tensor names and tokenizer fields llama.cpp reads for llama / qwen2 / qwen3
// (model/gguf_model.h, tokenizer/gguf_vocab.h, docs/gguf.md).
#pragma once

#include "model/model.h"
#include "tokenizer/byte_vocab.h"

#include <optional>
#include <string>

namespace distill {

struct GgufExportOptions {
  DType type = DType::F16;   // matrices; 1-D tensors are always f32
  // llama.cpp's "_M" K-quant recipe (Q4_K_M, Q5_K_M): besides the output matrix, attn_v and
  // ffn_down of the first and last eighth of the layers and of every third layer between them
  // are written as Q6_K.
  bool k_quant_mix = false;
  std::optional<DType> expert_type;  // experts of a mixture (default: type); MXFP4 as GPT-OSS ships
  std::string name;          // general.name
  bool embed_tokenizer_json = true;  // also tokenizer.huggingface.json (exact round trip)
  std::string provenance;    // the model's lineage record (JSON), kept as "distill.provenance"
  bool show_progress = false;  // a progress line per tensor written (the CLI's convert: K-quants take minutes on big models)
};

// Writes `m` and its tokenizer as a GGUF file (atomically), each matrix as gguf_matrix_type says.
// Throws when a GGUF could not say what the config does (llama.cpp would run another model):
// call before a long job that ends in export_gguf, which checks it too.
void check_gguf_exportable(const ModelConfig& c);
void export_gguf(const Model& m, const TokenizerFiles& tokenizer, const std::string& path, const GgufExportOptions& o);

// The type a matrix of `o` is written as (GGUF tensor name, row length, layer count): the output
// matrix (or the embedding it is tied to) is Q6_K under any K-quant type; rows that are not whole
// blocks fall back to Q8_0 (K-quants, where rows are whole 32-blocks) or f16.
DType gguf_matrix_type(const GgufExportOptions& o, const std::string& name, int64_t cols, int64_t n_layer, bool tied);

// A copy whose matrices are quantized to `to` in memory (rows that are not whole blocks stay).
Model quantized(const Model& m, DType to);

// A copy whose block-quantized matrices are dequantized to `to` (f32, f16 or bf16).
Model dequantized(const Model& m, DType to);

// The tokenizer files of a model directory or GGUF file.
TokenizerFiles tokenizer_files_of(const std::string& path);

}  // namespace distill
