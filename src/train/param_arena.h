// ParamArena: all of a model's parameters in one contiguous f32 buffer, in checkpoint order.
// Gradients and AdamW moments are buffers of the same size and layout, so the optimizer, the
// gradient-norm clip and an MPI all-reduce each see one flat array, while the forward and
// backward see named per-layer views (ModelWeights) into whichever buffer they need.
#pragma once

#include "core/tensor.h"
#include "model/model.h"

#include <string>
#include <vector>

namespace distill {

struct ParamEntry {
  std::string name;  // Hugging Face name
  Shape shape;
  size_t offset;     // floats from the start of the arena
  size_t numel;
  bool is_matrix;    // matrices are decayed by AdamW; vectors (norms, biases) by default not
};

class ParamArena {
public:
  // Copies `model`'s weights (any float dtype) into a new f32 arena and points the model's
  // weights at it: training updates the arena and the model sees the updates.
  static ParamArena adopt(Model& model);
  // A zeroed arena of named matrices that belong to no model (LoRA adapters); offsets assigned here.
  static ParamArena of_matrices(const std::vector<std::pair<std::string, Shape>>& matrices);

  size_t size() const { return size_; }
  float* data() { return params_.data<float>(); }
  const float* data() const { return params_.data<float>(); }
  const std::vector<ParamEntry>& entries() const { return entries_; }

  // A new zeroed buffer with the arena's layout (gradients, moments).
  Tensor new_buffer() const { return Tensor::zeros(DType::F32, {int64_t(size_)}); }
  // Per-parameter views into `buffer` (which has the arena's layout), lm_head tied as in the model.
  ModelWeights views(Tensor& buffer) const;

private:
  ModelConfig config_;
  std::vector<ParamEntry> entries_;
  size_t size_ = 0;
  Tensor params_;
};

}  // namespace distill
