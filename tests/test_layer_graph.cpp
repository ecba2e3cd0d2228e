// One layer graph for inference and training: on a Mistral-style model whose sliding window is
// shorter than the training sequence, the training pass computes the same logits (and so the
// same loss) as the inference decoder, and its gradients match central finite differences.
#include "model/decoder.h"
#include "train/losses.h"
#include "train/param_arena.h"
#include "train/training_pass.h"
#include "test_util.h"

namespace distill {

namespace {

Model windowed_model(const std::string& type, int64_t window) {
  ModelConfig c;
  c.model_type = type;
  c.n_vocab = 37, c.n_embd = 24, c.n_ff = 40, c.n_layer = 2, c.n_head = 4, c.n_kv_head = 2, c.head_dim = 6;
  c.sliding_window = window;
  c.qk_norm = type == "qwen3";
  c.qkv_bias = type != "mistral";
  c.max_position_embeddings = 64;
  return Model::random(c, DType::F32, 5, 0.4f);
}

// The cross-entropy gradients of one forward + backward of `pass` on ids → targets, into grads.
void ce_gradients(TrainingPass& pass, const ParamArena& arena, Tensor& grads, const std::vector<int32_t>& ids,
                  const std::vector<int32_t>& targets, int64_t V) {
  const int64_t N = int64_t(ids.size());
  const float* logits = pass.forward(ids.data());
  std::vector<float> d_logits(size_t(N * V));
  cross_entropy_backward(d_logits.data(), logits, targets.data(), N, V);
  ModelWeights g = arena.views(grads);
  pass.backward(d_logits.data(), g);
}

std::vector<int32_t> random_ids(int64_t n, int64_t vocab, uint64_t seed) {
  Rng rng(seed);
  std::vector<int32_t> out(static_cast<size_t>(n));
  for (auto& id : out) id = int32_t(rng.next_u64() % uint64_t(vocab));
  return out;
}

// The windowed model of an architecture (window 3), its arena, and 2 × 11 random ids → targets.
struct GradientCase {
  static constexpr int64_t B = 2, S = 11, N = B * S;
  Model model;
  ParamArena arena;
  int64_t V;
  std::vector<int32_t> ids, targets;
  explicit GradientCase(const std::string& arch)
      : model(windowed_model(arch, 3)), arena(ParamArena::adopt(model)), V(model.config.n_vocab),
        ids(random_ids(N, V, 5)), targets(random_ids(N, V, 6)) {}
};

}  // namespace

class LayerGraph : public ::testing::TestWithParam<std::string> {};

TEST_P(LayerGraph, TrainingLossEqualsDecoderLossWithASlidingWindow) {
  const int64_t B = 2, S = 13, window = 4;
  Model model = windowed_model(GetParam(), window);
  ParamArena arena = ParamArena::adopt(model);
  const int64_t V = model.config.n_vocab;
  const std::vector<int32_t> ids = random_ids(B * S, V, 1), targets = random_ids(B * S, V, 2);

  Decoder dec(model);
  const Tensor want = dec.forward_full(ids.data(), B, S);
  TrainingPass pass(model, B, S);
  const float* got = pass.forward(ids.data());
  EXPECT_LT(test::max_abs_diff(got, want.data<float>(), size_t(B * S * V)), 2e-5f);
  EXPECT_NEAR(cross_entropy_forward(got, targets.data(), B * S, V),
              cross_entropy_forward(want.data<float>(), targets.data(), B * S, V), 1e-6);

  // The forward without the head (a teacher's hidden states), its logits made 5 rows at a time,
  // gives the same logits; the decoder then makes whole logits again, the same as before.
  const Tensor hidden = dec.forward_full_hidden(ids.data(), B, S);
  ASSERT_EQ(hidden.numel(), B * S * model.config.n_embd);
  std::vector<float> parts(size_t(B * S * V));
  for (int64_t r0 = 0; r0 < B * S; r0 += 5)
    dec.head_rows(hidden.data<float>() + r0 * model.config.n_embd, std::min<int64_t>(5, B * S - r0), parts.data() + r0 * V);
  EXPECT_LT(test::max_abs_diff(parts.data(), want.data<float>(), parts.size()), 1e-5f);
  EXPECT_EQ(test::max_abs_diff(dec.forward_full(ids.data(), B, S).data<float>(), want.data<float>(), parts.size()), 0.0f);

  // The window matters here: without it the decoder computes something else past position 3.
  Model unwindowed = windowed_model(GetParam(), 0);
  const Tensor full = Decoder(unwindowed).forward_full(ids.data(), B, S);
  EXPECT_GT(test::max_abs_diff(full.data<float>(), want.data<float>(), size_t(B * S * V)), 1e-3f);
}

TEST_P(LayerGraph, GradientsMatchFiniteDifferencesWithASlidingWindow) {
  const int64_t B = 2, S = 11, window = 3;
  Model model = windowed_model(GetParam(), window);
  ParamArena arena = ParamArena::adopt(model);
  const int64_t V = model.config.n_vocab, N = B * S;
  const std::vector<int32_t> ids = random_ids(N, V, 3), targets = random_ids(N, V, 4);
  TrainingPass pass(model, B, S);
  const auto loss = [&] { return cross_entropy_forward(pass.forward(ids.data()), targets.data(), N, V); };

  const float* logits = pass.forward(ids.data());
  std::vector<float> d_logits(size_t(N * V));
  cross_entropy_backward(d_logits.data(), logits, targets.data(), N, V);
  Tensor grads = arena.new_buffer();
  ModelWeights g = arena.views(grads);
  pass.backward(d_logits.data(), g);

  // A few entries of every parameter tensor, by central differences in f32 (h = 1e-2).
  Rng rng(9);
  int checked = 0;
  for (const ParamEntry& e : arena.entries()) {
    double worst = 0, largest = 0;
    for (int k = 0; k < 3; ++k) {
      const size_t i = e.offset + size_t(rng.next_u64() % e.numel);
      const double fd = test::central_difference(arena.data()[i], 1e-2f, loss), an = grads.data<float>()[i];
      worst = std::max(worst, std::fabs(fd - an));
      largest = std::max(largest, std::fabs(fd));
      ++checked;
    }
    EXPECT_LT(worst, 1e-3 + 2e-2 * largest) << e.name << " (largest |fd| " << largest << ")";
  }
  EXPECT_GT(checked, 40);
}

// Activation checkpointing: the backward recomputes each layer's activations from its kept input,
// with the same kernels on the same values, so logits and gradients are identical, bit for bit,
// while only one layer's activations (besides each layer's input) are held.
TEST_P(LayerGraph, RecomputedLayersGiveTheSameGradients) {
  GradientCase tc(GetParam());
  auto& [model, arena, V, ids, targets] = tc;
  constexpr int64_t B = GradientCase::B, S = GradientCase::S, N = GradientCase::N;
  TrainingPass kept(model, B, S), recomputed(model, B, S, true);
  Tensor g_kept = arena.new_buffer(), g_recomputed = arena.new_buffer();
  for (auto [pass, grads] : {std::pair{&kept, &g_kept}, std::pair{&recomputed, &g_recomputed}})
    ce_gradients(*pass, arena, *grads, ids, targets, V);
  EXPECT_EQ(test::max_abs_diff(kept.forward(ids.data()), recomputed.forward(ids.data()), size_t(N * V)), 0.0f);
  EXPECT_EQ(test::max_abs_diff(g_kept.data<float>(), g_recomputed.data<float>(), arena.size()), 0.0f);
  double norm = 0;
  for (size_t i = 0; i < arena.size(); ++i) norm += std::fabs(g_kept.data<float>()[i]);
  EXPECT_GT(norm, 0.0) << "the gradients are not all zero";
  // per layer the input [N, E] is kept; one layer's other activations are shared
  const ModelConfig& c = model.config;
  const size_t E = size_t(c.n_embd), per_layer_rest = kept.activation_bytes() - recomputed.activation_bytes();
  EXPECT_EQ(per_layer_rest % size_t(c.n_layer - 1), 0u);
  EXPECT_GT(per_layer_rest / size_t(c.n_layer - 1), 4 * size_t(N) * E * sizeof(float)) << "a layer keeps far more than its input";
}

// --precision bf16: the linears' kept inputs (xn1, att, xn2, h) are stored as bf16, which changes
// no value, since their products round them to bf16 anyway: the gradients equal, bit for bit, those
// of a pass that recomputes every layer in f32 buffers (checkpointing keeps no bf16 copy). They
// stay within bf16's rounding of the f32 pass's, and the pass keeps fewer bytes.
TEST_P(LayerGraph, Bf16KeptLinearInputsChangeNoGradient) {
  GradientCase tc(GetParam());
  auto& [model, arena, V, ids, targets] = tc;
  constexpr int64_t B = GradientCase::B, S = GradientCase::S, N = GradientCase::N;
  TrainingPass kept(model, B, S, false, 0, true), recomputed(model, B, S, true, 0, true), f32(model, B, S);
  Tensor g_kept = arena.new_buffer(), g_recomputed = arena.new_buffer(), g_f32 = arena.new_buffer();
  for (auto [pass, grads] : {std::pair{&kept, &g_kept}, std::pair{&recomputed, &g_recomputed}, std::pair{&f32, &g_f32}})
    ce_gradients(*pass, arena, *grads, ids, targets, V);
  EXPECT_EQ(test::max_abs_diff(g_kept.data<float>(), g_recomputed.data<float>(), arena.size()), 0.0f);
  double err = 0, norm = 0;  // relative error of the whole gradient vector
  for (size_t i = 0; i < arena.size(); ++i) {
    const double d = double(g_kept.data<float>()[i]) - g_f32.data<float>()[i];
    err += d * d, norm += double(g_f32.data<float>()[i]) * g_f32.data<float>()[i];
  }
  EXPECT_GT(err, 0.0) << "bf16 products must change the gradients";
  // (3.5 % on this random model: sums of 24 products with cancellation, carried through 2 layers)
  EXPECT_LT(std::sqrt(err / norm), 0.06) << "but only by bf16's rounding";
  const ModelConfig& c = model.config;
  // each layer's 3 [N, E] + [N, F] linear inputs (q_dim = E here) at 2 bytes instead of 4, and one
  // f32 staging set of them added (2 × those savings)
  const size_t per_layer = size_t(N) * size_t(3 * c.n_embd + c.n_ff) * 2;
  EXPECT_EQ(f32.activation_bytes() + 2 * per_layer, kept.activation_bytes() + per_layer * size_t(c.n_layer));
}

// The training step's head in chunks of rows (TrainingPass::forward_backward: the [N, vocabulary]
// logits never held at once) gives the gradients of the whole-logits forward and backward, up to
// the summation order of the head's gradient over the chunks.
TEST_P(LayerGraph, HeadInChunksGivesTheGradientsOfTheWholeLogits) {
  const int64_t B = 2, S = 11;
  Model model = windowed_model(GetParam(), 3);
  ParamArena arena = ParamArena::adopt(model);
  const int64_t V = model.config.n_vocab, N = B * S;
  const std::vector<int32_t> ids = random_ids(N, V, 7), targets = random_ids(N, V, 8);
  TrainingPass whole(model, B, S), chunked(model, B, S, false, 5);  // 22 rows: chunks of 5, 5, 5, 5, 2
  Tensor g_whole = arena.new_buffer(), g_chunked = arena.new_buffer();
  ModelWeights gw = arena.views(g_whole), gc = arena.views(g_chunked);
  const float* logits = whole.forward(ids.data());
  std::vector<float> d_logits(size_t(N * V));
  const double loss_whole = cross_entropy_backward(d_logits.data(), logits, targets.data(), N, V);
  whole.backward(d_logits.data(), gw);
  double loss_chunked = 0;
  std::vector<int64_t> chunk_rows;
  chunked.forward_backward(ids.data(), [&](int64_t r0, int64_t n, const float* l, float* d) {
    EXPECT_EQ(r0, int64_t(chunk_rows.size()) * 5);
    chunk_rows.push_back(n);
    EXPECT_LT(test::max_abs_diff(l, logits + r0 * V, size_t(n * V)), 1e-5f) << "the chunk's logits are its rows'";
    loss_chunked += cross_entropy_backward(d, l, targets.data() + r0, n, V) * double(n) / double(N);
    for (int64_t i = 0; i < n * V; ++i) d[i] *= float(n) / float(N);
  }, gc);
  EXPECT_EQ(chunk_rows, (std::vector<int64_t>{5, 5, 5, 5, 2}));
  EXPECT_NEAR(loss_chunked, loss_whole, 1e-6 * loss_whole);
  double worst = 0, largest = 0;
  for (size_t i = 0; i < arena.size(); ++i) {
    worst = std::max(worst, double(std::fabs(g_whole.data<float>()[i] - g_chunked.data<float>()[i])));
    largest = std::max(largest, double(std::fabs(g_whole.data<float>()[i])));
  }
  EXPECT_GT(largest, 1e-3);
  EXPECT_LT(worst, 1e-5 * largest);
  EXPECT_LT(chunked.activation_bytes() + size_t(2 * (N - 5) * V) * sizeof(float), whole.activation_bytes() + 1)
      << "the chunked pass holds 2 × 5 rows of logits, the whole one N rows (+ their gradient, the caller's)";
}

INSTANTIATE_TEST_SUITE_P(Archs, LayerGraph, ::testing::Values("mistral", "qwen3"));

}  // namespace distill
