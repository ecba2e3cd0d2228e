#include "train/lora_training.h"

#include "core/error.h"
#include "core/rng.h"

#include <cblas.h>

#include <cmath>
#include <cstring>

namespace distill {

namespace {

std::vector<std::pair<std::string, Shape>> adapter_matrices(const std::vector<LoraTarget>& targets, int64_t rank) {
  std::vector<std::pair<std::string, Shape>> m;
  for (const LoraTarget& t : targets) {
    m.push_back({t.peft_prefix + ".lora_A.weight", {rank, t.in}});
    m.push_back({t.peft_prefix + ".lora_B.weight", {t.out, rank}});
  }
  return m;
}

}  // namespace

LoraTraining::LoraTraining(Model& model, const LoraConfig& cfg, uint64_t seed)
    : model_(model),
      cfg_(cfg),
      targets_(lora_targets(model.config, model.weights, cfg.targets)),
      arena_(ParamArena::of_matrices(adapter_matrices(targets_, cfg.rank))) {
  if (cfg_.rank <= 0) fail("--lora-rank must be positive");
  size_t base_size = 0;
  for (size_t i = 0; i < targets_.size(); ++i) {
    const LoraTarget& t = targets_[i];
    if (t.weight->dtype() != DType::F32) fail("LoRA training needs the f32 arena; '{}' is {}", t.weight_name, dtype_name(t.weight->dtype()));
    if (cfg_.rank > std::min(t.out, t.in)) fail("--lora-rank {} exceeds '{}' ({} × {})", cfg_.rank, t.weight_name, t.out, t.in);
    a_offset_.push_back(arena_.entries()[2 * i].offset);
    base_offset_.push_back(base_size);
    base_size += size_t(t.out * t.in);
  }
  base_ = Tensor::zeros(DType::F32, {int64_t(base_size)});
  grads_ = arena_.new_buffer();
  // W₀ saved; A ~ U(−1/√in, 1/√in) (PEFT's Kaiming-uniform with a = √5 gives this bound), B = 0.
  Rng rng(seed ^ 0x4c6f5241ull);
  for (size_t i = 0; i < targets_.size(); ++i) {
    const LoraTarget& t = targets_[i];
    std::memcpy(base_.data<float>() + base_offset_[i], t.weight->raw(), size_t(t.out * t.in) * sizeof(float));
    float* ai = arena_.data() + a_offset_[i];
    const float bound = 1.0f / std::sqrt(float(t.in));
    for (int64_t j = 0; j < cfg_.rank * t.in; ++j) ai[j] = bound * (2.0f * rng.uniform() - 1.0f);
  }
}

void LoraTraining::project_grads(ModelWeights& full_grads) {
  const std::vector<LoraTarget> g = lora_targets(model_.config, full_grads, cfg_.targets);  // same order as targets_
  const float s = cfg_.scale();
  const int r = int(cfg_.rank);
#pragma omp parallel for schedule(dynamic, 1)
  for (size_t i = 0; i < targets_.size(); ++i) {
    const int out = int(targets_[i].out), in = int(targets_[i].in);
    const float* dw = g[i].weight->data<float>();
    float* da = grads() + a_offset_[i];
    float* db = da + size_t(r) * size_t(in);
    // dA [r, in] = s · Bᵀ [r, out] · dW [out, in]
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, r, in, out, s, b(i), r, dw, in, 0.0f, da, in);
    // dB [out, r] = s · dW [out, in] · Aᵀ [in, r]
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, out, r, in, s, dw, in, a(i), in, 0.0f, db, r);
  }
}

void LoraTraining::merge() {
#pragma omp parallel for schedule(dynamic, 1)
  for (size_t i = 0; i < targets_.size(); ++i) {
    const LoraTarget& t = targets_[i];
    float* w = t.weight->data<float>();
    std::memcpy(w, base_.data<float>() + base_offset_[i], size_t(t.out * t.in) * sizeof(float));
    lora_merge_into(w, a(i), b(i), t.out, t.in, cfg_.rank, cfg_.scale());
  }
}

void LoraTraining::write_peft(const std::string& dir) const {
  std::vector<const float*> as, bs;
  for (size_t i = 0; i < targets_.size(); ++i) as.push_back(a(i)), bs.push_back(b(i));
  write_peft_adapter(dir, cfg_, targets_, as, bs);
}

}  // namespace distill
