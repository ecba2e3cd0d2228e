// The mixture-of-experts MLP of a layer (ModelConfig::is_moe), for inference.
#pragma once

#include "model/config.h"
#include "model/weights.h"

#include <cstdint>
#include <vector>

namespace distill {

// Which experts a token uses and with what weight: the router's softmax over all experts, the
// top n_expert_used kept (highest first; ties to the lower index), renormalised to sum 1 when
// norm_topk_prob — or (moe_softmax_after_topk, GPT-OSS) the top logits softmaxed among
// themselves. logits: [T, n_expert] -> expert, weight: [T, n_expert_used].
void route_tokens(const ModelConfig& c, const float* logits, int64_t T, int32_t* expert, float* weight);

// out[T, n_embd] = Σ_k weight_tk · down(silu(gate(x_t)) · up(x_t)) over token t's experts, for
// x [T, n_embd] (the normalised MLP input). Tokens are grouped by expert, so each chosen expert's
// matrices are read once per call whatever the number of its tokens, and only chosen experts are
// read. A token's k terms are added in rank order, so its output does not depend on the batch.
void moe_forward(const ModelConfig& c, const LayerWeights& l, const float* x, float* out, int64_t T);

}  // namespace distill
