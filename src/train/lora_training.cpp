#include "train/lora_training.h"

#include "core/error.h"
#include "core/rng.h"

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

bool is_float(DType t) { return t == DType::F32 || t == DType::F16 || t == DType::BF16; }

}  // namespace

LoraTraining::LoraTraining(Model& model, const LoraConfig& cfg, uint64_t seed)
    : model_(model),
      cfg_(cfg),
      targets_(lora_targets(model.config, model.weights, cfg.targets)),
      arena_(ParamArena::of_matrices(adapter_matrices(targets_, cfg.rank))) {
  if (cfg_.rank <= 0) fail("--lora-rank must be positive");
  for (size_t i = 0; i < targets_.size(); ++i) {
    const LoraTarget& t = targets_[i];
    if (cfg_.rank > std::min(t.out, t.in)) fail("--lora-rank {} exceeds '{}' ({} × {})", cfg_.rank, t.weight_name, t.out, t.in);
    a_offset_.push_back(arena_.entries()[2 * i].offset);
  }
  // A ~ U(−1/√in, 1/√in) (PEFT's Kaiming-uniform with a = √5 gives this bound), B = 0.
  Rng rng(seed ^ 0x4c6f5241ull);
  for (size_t i = 0; i < targets_.size(); ++i) {
    const LoraTarget& t = targets_[i];
    float* ai = a(i);
    const float bound = 1.0f / std::sqrt(float(t.in));
    for (int64_t j = 0; j < cfg_.rank * t.in; ++j) ai[j] = bound * (2.0f * rng.uniform() - 1.0f);
    *t.adapter = LoraAdapter{ai, b(i), cfg_.rank, cfg_.scale()};  // the model runs W and the adapter
  }
}

LoraTraining::~LoraTraining() {
  for (const LoraTarget& t : targets_) *t.adapter = LoraAdapter{};
}

ModelWeights LoraTraining::grad_views(Tensor& grads) const {
  DISTILL_ASSERT(size_t(grads.numel()) == arena_.size());
  ModelWeights g;
  g.layers.resize(model_.weights.layers.size());
  // the same targets in g (undefined tensors, but the slots are what is wanted)
  const std::vector<LoraTarget> slots = lora_targets(model_.config, g, cfg_.targets);
  for (size_t i = 0; i < slots.size(); ++i) {
    float* ga = grads.data<float>() + a_offset_[i];
    *slots[i].adapter = LoraAdapter{ga, ga + size_t(cfg_.rank * targets_[i].in), cfg_.rank, cfg_.scale()};
  }
  return g;
}

void LoraTraining::write_peft(const std::string& dir) const {
  std::vector<const float*> as, bs;
  for (const LoraTarget& t : targets_) as.push_back(t.adapter->a), bs.push_back(t.adapter->b);
  write_peft_adapter(dir, cfg_, targets_, as, bs);
}

bool LoraTraining::base_is_float() const {
  for (const LoraTarget& t : targets_)
    if (!is_float(t.weight->dtype())) return false;
  return true;
}

void LoraTraining::save_merged(const std::string& dir) const {
  Model merged = model_;  // tensors share storage; each target is replaced by a merged f32 copy below
  std::vector<LoraTarget> into = lora_targets(merged.config, merged.weights, cfg_.targets);
  for (size_t i = 0; i < into.size(); ++i) {
    const LoraTarget& t = targets_[i];
    const Tensor stored = converted(*t.weight, DType::F32);
    Tensor w = Tensor::zeros(DType::F32, t.weight->shape());  // fresh: `stored` may be the model's own storage
    std::memcpy(w.raw(), stored.raw(), w.nbytes());
    lora_merge_into(w.data<float>(), t.adapter->a, t.adapter->b, t.out, t.in, cfg_.rank, cfg_.scale());
    *into[i].weight = std::move(w);
    *into[i].adapter = LoraAdapter{};
  }
  tie_lm_head(merged.config, merged.weights);
  merged.save(dir);
}

}  // namespace distill
