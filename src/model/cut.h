// A student cut from its teacher (`distill init --from TEACHER`): a subset of the teacher's layers
// (depth pruning, as in "The Unreasonable Ineffectiveness of the Deeper Layers" and Minitron), and
// optionally a narrower FFN keeping the channels that matter most, so that distillation starts
// from the teacher's knowledge instead of random weights.
//
// FFN channel importance (no data needed): channel j of a SwiGLU block contributes
// down[:, j] · silu(gate[j]·x) · (up[j]·x); its scale is bounded by ‖gate_j‖·‖up_j‖·‖down_:,j‖, and
// the channels with the largest product are kept (in their original order). A data-driven score
// (mean |activation| on calibration text) would rank better; this one needs no data and no forward.
#pragma once

#include "model/model.h"

#include <vector>

namespace distill {

struct CutOptions {
  std::vector<int64_t> layers;  // teacher layer indices to keep, increasing (empty: all)
  int64_t n_ff = 0;             // FFN width to keep (0: the teacher's)
  DType dtype = DType::F32;     // the student's matrices (quantized teachers are dequantized)
};

Model cut_model(const Model& teacher, const CutOptions& o);

// "0,2,4" or ranges "0-3,8,10-11" -> indices; "every:2" keeps 0, 2, 4, ...; checked against n_layer.
std::vector<int64_t> parse_layer_list(const std::string& spec, int64_t n_layer);

}  // namespace distill
