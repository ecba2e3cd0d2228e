// Training against ../shared/reference: the whole model's gradients (grad.*), one AdamW step
// (adamw_step1.*) and the distillation losses (kd-losses.safetensors). Gradients and AdamW
// results within 1e-4 relative to each tensor's largest magnitude.
#include "formats/checkpoint.h"
#include "train/adamw.h"
#include "train/kd_loss.h"
#include "train/losses.h"
#include "train/param_arena.h"
#include "train/training_pass.h"
#include "test_util.h"

#include <nlohmann/json.hpp>

#include <filesystem>

namespace distill {

namespace {

// |a - b| / max|b| over all elements.
float relative_error(const float* a, const Tensor& want) {
  const size_t n = size_t(want.numel());
  return test::max_abs_diff(a, want.data<float>(), n) / std::max(1e-30f, test::max_abs(want.data<float>(), n));
}

struct Loaded {
  TensorStore store;
  Model model;
};

Loaded load(const std::string& name) {
  const std::string path = test::reference_path(name + ".safetensors");
  if (!std::filesystem::exists(path)) throw Error(path + " not found: ../shared/reference must sit beside the checkout");
  TensorStore store = TensorStore::open_file(path);
  Model model = Model::from_store(ModelConfig::from_file(test::reference_path(name + ".config.json")), store, "param.");
  return {store, std::move(model)};
}

}  // namespace

class TrainReference : public ::testing::TestWithParam<std::string> {};

TEST_P(TrainReference, GradientsMatch) {
  Loaded r = load(GetParam());
  ParamArena arena = ParamArena::adopt(r.model);
  const Tensor ids = r.store.get("input_ids"), targets = r.store.get("targets");
  const int64_t B = ids.dim(0), S = ids.dim(1), V = r.model.config.n_vocab;
  TrainingPass pass(r.model, B, S);
  const float* logits = pass.forward(ids.data<int32_t>());
  EXPECT_LT(test::max_abs_diff(logits, r.store.get("logits").data<float>(), size_t(B * S * V)), 1e-4f);
  const double loss = cross_entropy_forward(logits, targets.data<int32_t>(), B * S, V);
  EXPECT_NEAR(loss, r.store.get("loss").data<float>()[0], 1e-4);
  std::vector<float> d_logits_buf(size_t(B * S * V));
  float* d_logits = d_logits_buf.data();
  cross_entropy_backward(d_logits, logits, targets.data<int32_t>(), B * S, V);

  Tensor grads = arena.new_buffer();
  ModelWeights g = arena.views(grads);
  pass.backward(d_logits, g);
  for (const ParamEntry& e : arena.entries()) {
    const Tensor want = r.store.get("grad." + e.name);
    ASSERT_EQ(want.shape(), e.shape) << e.name;
    EXPECT_LT(relative_error(grads.data<float>() + e.offset, want), 1e-4f) << e.name;
  }

  // A second backward accumulates: gradients double (micro-batch accumulation).
  pass.forward(ids.data<int32_t>());
  pass.backward(d_logits, g);
  const ParamEntry& e0 = arena.entries()[1];
  const Tensor want0 = r.store.get("grad." + e0.name);
  EXPECT_NEAR(grads.data<float>()[e0.offset], 2 * want0.data<float>()[0], 1e-4f * test::max_abs(want0.data<float>(), size_t(want0.numel())) * 2);
}

TEST_P(TrainReference, AdamWStepMatches) {
  Loaded r = load(GetParam());
  ParamArena arena = ParamArena::adopt(r.model);
  const auto hp = nlohmann::json::parse(r.store.metadata().at("adamw"));
  AdamWSettings s;
  s.beta1 = hp["beta1"], s.beta2 = hp["beta2"], s.eps = hp["eps"], s.weight_decay = hp["weight_decay"];
  s.decay_vectors = true;  // the reference decays every parameter (torch's default)
  AdamW opt(arena, s);
  Tensor grads = arena.new_buffer();
  for (const ParamEntry& e : arena.entries()) {
    const Tensor g = r.store.get("grad." + e.name);
    std::memcpy(grads.data<float>() + e.offset, g.raw(), g.nbytes());
  }
  opt.step(arena.data(), grads.data<float>(), float(hp["lr"]));
  for (const ParamEntry& e : arena.entries())
    EXPECT_LT(relative_error(arena.data() + e.offset, r.store.get("adamw_step1." + e.name)), 1e-4f) << e.name;
  // The model's weights are views of the arena: it sees the update.
  EXPECT_EQ(r.model.weights.out_norm.data<float>(), arena.data() + arena.entries()[arena.entries().size() - (r.model.config.tie_word_embeddings ? 1 : 2)].offset);
}

INSTANTIATE_TEST_SUITE_P(Models, TrainReference, ::testing::Values("llama-tiny", "qwen2-tiny", "qwen3-tiny"),
                         [](const auto& info) {
                           std::string n = info.param;
                           std::replace(n.begin(), n.end(), '-', '_');
                           return n;
                         });

TEST(KdReference, LossesAndGradientsMatch) {
  const std::string path = test::reference_path("kd-losses.safetensors");
  const TensorStore st = TensorStore::open_file(path);
  const Tensor s = st.get("student_logits"), t = st.get("teacher_logits");
  const int64_t n = s.dim(0), V = s.dim(1);
  KdSettings ks;
  ks.temperature = std::stof(st.metadata().at("temperature"));
  ks.beta = std::stof(st.metadata().at("beta"));
  for (const char* name : {"forward_kl", "reverse_kl", "jsd", "tvd"}) {
    const std::string n_str = name;
    ks.divergence = n_str == "forward_kl" ? Divergence::ForwardKL
                    : n_str == "reverse_kl" ? Divergence::ReverseKL
                    : n_str == "jsd"        ? Divergence::JSD
                                            : Divergence::TVD;
    std::vector<float> grad(static_cast<size_t>(n * V), 0.0f);
    const double loss = kd_loss_full(s.data<float>(), V, t.data<float>(), V, nullptr, n, ks, grad.data(), 1.0f);
    EXPECT_NEAR(loss, st.get("loss." + n_str).data<float>()[0], 1e-5) << name;
    EXPECT_LT(relative_error(grad.data(), st.get("grad." + n_str)), 1e-4f) << name;
  }
}

}  // namespace distill
