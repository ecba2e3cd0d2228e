#include "train/param_arena.h"

#include <cstring>

namespace distill {

ParamArena ParamArena::adopt(Model& model) {
  ParamArena a;
  a.config_ = model.config;
  std::vector<ParamRef> refs = list_params(model.config, model.weights);
  for (const ParamRef& r : refs) {
    const size_t numel = size_t(shape_numel(r.shape));
    a.entries_.push_back({r.name, r.shape, a.size_, numel, r.is_matrix});
    a.size_ += numel;
  }
  a.params_ = Tensor::zeros(DType::F32, {int64_t(a.size_)});
  for (size_t i = 0; i < refs.size(); ++i) {
    const Tensor f32 = refs[i].tensor->dtype() == DType::F32 ? *refs[i].tensor : refs[i].tensor->to(DType::F32);
    std::memcpy(a.data() + a.entries_[i].offset, f32.raw(), a.entries_[i].numel * sizeof(float));
  }
  model.weights = a.views(a.params_);
  return a;
}

ParamArena ParamArena::of_matrices(const std::vector<std::pair<std::string, Shape>>& matrices) {
  ParamArena a;
  for (const auto& [name, shape] : matrices) {
    const size_t numel = size_t(shape_numel(shape));
    a.entries_.push_back({name, shape, a.size_, numel, true});
    a.size_ += numel;
  }
  a.params_ = Tensor::zeros(DType::F32, {int64_t(a.size_)});
  return a;
}

ModelWeights ParamArena::views(Tensor& buffer) const {
  ModelWeights w;
  std::vector<ParamRef> refs = list_params(config_, w);
  for (size_t i = 0; i < refs.size(); ++i) {
    *refs[i].tensor = buffer.subview(int64_t(entries_[i].offset), entries_[i].shape);
  }
  tie_lm_head(config_, w);
  return w;
}

}  // namespace distill
