// Model: a config and its weights, loaded from a Hugging Face model directory, created with
// random weights, or saved back as one.
#pragma once

#include "model/config.h"
#include "model/weights.h"

#include <string>
#include <vector>

namespace distill {

class TensorStore;

struct Model {
  ModelConfig config;
  ModelWeights weights;
  std::vector<float> inv_freq;  // RoPE inverse frequencies [head_dim / 2], scaling applied
  size_t prepared_bytes = 0;    // memory of the weights' load-time kernel forms (see prepare_weights)
  std::vector<Tensor> adapters; // A and B of a LoRA adapter applied unmerged (the layers' lora slots point here)

  // A Hugging Face directory: config.json and model.safetensors (or a sharded index); or a GGUF file.
  // `prepare`: build the kernels' load-time forms (prepare_weights); `distill info` needs none.
  static Model load(const std::string& dir, bool prepare = true);
  // Weights named `prefix` + HF name in an open store (e.g. "param." in the reference files).
  static Model from_store(const ModelConfig& config, const TensorStore& store, const std::string& prefix = "");
  // Random weights: matrices N(0, std²) stored as `dtype` (experts' as `expert_dtype` unless F32),
  // norms 1, biases 0. Deterministic in seed.
  static Model random(const ModelConfig& config, DType dtype, uint64_t seed, float std = 0.02f,
                      DType expert_dtype = DType::F32);

  // Builds the kernels' load-time form of every matrix the decoder multiplies by (int8 panels
  // for quantized weights on AVX-512; nothing elsewhere), adding to prepared_bytes. Model::load
  // calls it; the original weights stay as they are.
  void prepare_weights();
  // Bytes of every parameter tensor as stored (a file's weights; `bench`'s size column).
  size_t stored_bytes() const;
  // Weight bytes one decoded token reads: every layer's tensors (a mixture's experts at the share
  // n_expert_used / n_expert, the average a token reads), the final norm and the head (the
  // embedding table when tied); not the untied embedding table, of which a token reads one row.
  // Decode is bound by these bytes: `bench` divides them by the time per token (GB/s).
  size_t decode_bytes_per_token() const;
  // Memory the weights take as held: stored_bytes, the kernels' load-time forms and an unmerged
  // adapter (memory estimates).
  size_t held_bytes() const;

  // Writes config.json and model.safetensors into `dir` (created if needed), atomically per file.
  void save(const std::string& dir) const;
};

}  // namespace distill
