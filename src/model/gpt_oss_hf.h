// Hugging Face's gpt-oss checkpoint layout (how gpt-oss-20b and -120b are released), read and
// written. Everything but the experts is named as load_weights expects, except the router
// (mlp.router.weight / .bias where other families say mlp.gate). A layer's experts are four
// stacked tensors plus two biases, already in [out, in] orientation:
//
//   mlp.experts.gate_up_proj_blocks  U8 [E, 2I, H/32, 16]   rows alternate gate 0, up 0, gate 1, up 1, …
//   mlp.experts.gate_up_proj_scales  U8 [E, 2I, H/32]       E8M0: a block's scale is 2^(s − 127)
//   mlp.experts.gate_up_proj_bias       [E, 2I]             interleaved like the rows
//   mlp.experts.down_proj_blocks     U8 [E, H, I/32, 16]
//   mlp.experts.down_proj_scales     U8 [E, H, I/32]
//   mlp.experts.down_proj_bias          [E, H]
//
// A block's 16 bytes hold its 32 E2M1 codes two per byte, value 2j in the low nibble and 2j + 1
// in the high one. GGUF's MXFP4 block (kernels/quant_blocks.h) keeps the same scale byte inline
// and puts values j and j + 16 in byte j. Loading repacks each block into GGUF's layout, in memory
// the model owns: the same 4.25 bits per weight, nothing dequantized (gpt-oss-20b: ~12 GB of
// experts, read once from the mapped files).
#pragma once

#include "kernels/quant_blocks.h"
#include "model/weights.h"

namespace distill {

class SafetensorsWriter;

// The weights of a gpt_oss model's files (config.json's model_type gpt_oss), tensor names under
// `prefix` as load_weights takes them.
ModelWeights load_gpt_oss_hf(const ModelConfig& c, const TensorStore& store, const std::string& prefix = "");

// Every parameter of `w` under its Hugging Face name into `out`, experts as MXFP4 blocks and scales
// (quantized to MXFP4 first where they are held in another type). The tensors made here stay alive
// in `out` until it is written.
void add_gpt_oss_hf_tensors(const ModelConfig& c, const ModelWeights& w, SafetensorsWriter& out);

// One block between the two layouts.
BlockMxfp4 mxfp4_block_from_hf(const uint8_t* bytes16, uint8_t scale);
void mxfp4_block_to_hf(const BlockMxfp4& b, uint8_t* bytes16, uint8_t* scale);

}  // namespace distill
