// distill eval's measures on models whose answers are known: uniform logits give perplexity equal
// to the vocabulary size; a model agrees with itself 100 % with KL 0; task accuracy counts answers.
#include "eval/evaluate.h"
#include "tokenizer/byte_vocab.h"
#include "test_util.h"

#include "model/decoder.h"

#include <algorithm>
#include <cmath>
#include <numeric>

namespace distill {

namespace {
Model tiny(const Tokenizer& tok, float init_std) {
  ModelConfig c;
  c.model_type = "llama";
  c.n_vocab = tok.vocab_size(), c.n_embd = 32, c.n_ff = 48, c.n_layer = 2, c.n_head = 4, c.n_kv_head = 2, c.head_dim = 8;
  c.max_position_embeddings = 256;
  c.tie_word_embeddings = false;
  return Model::random(c, DType::F32, 3, init_std);
}
std::shared_ptr<const Tokenizer> bytes() {
  const TokenizerFiles f = make_byte_level_tokenizer("", 0, false);
  return Tokenizer::from_json(f.tokenizer_json, f.tokenizer_config_json, "bytes");
}
}  // namespace

TEST(Eval, UniformLogitsGivePerplexityEqualToTheVocabulary) {
  const auto tok = bytes();
  Model m = tiny(*tok, 0.5f);
  m.weights.lm_head = Tensor::zeros(DType::F32, {m.config.n_vocab, m.config.n_embd});  // every logit 0
  Example ex;
  ex.ids = tok->encode("some text to score, any text at all", false);
  const TokenDataset data = TokenDataset::build({ex}, 16, m.config.n_vocab);
  const TextEval t = evaluate_text(m, data);
  EXPECT_NEAR(t.perplexity, double(m.config.n_vocab), 1e-3 * double(m.config.n_vocab));
  EXPECT_GT(t.tokens, 0);
}

TEST(Eval, AModelAgreesWithItself) {
  const auto tok = bytes();
  const Model a = tiny(*tok, 0.5f);
  Example ex;
  ex.ids = tok->encode("The quick brown fox jumps over the lazy dog, twice over.", false);
  const TokenDataset data = TokenDataset::build({ex}, 16, a.config.n_vocab);
  const Fidelity self = evaluate_fidelity(a, a, data);
  EXPECT_EQ(self.top1_agreement, 1.0);
  EXPECT_NEAR(self.kl, 0.0, 1e-6);
  Model b = tiny(*tok, 0.5f);
  b = Model::random(b.config, DType::F32, 99, 0.5f);
  const Fidelity other = evaluate_fidelity(a, b, data);
  EXPECT_LT(other.top1_agreement, 1.0);
  EXPECT_GT(other.kl, 0.01);
}

// The logits are made a few rows at a time (never [batch tokens, vocabulary] whole): 3-row parts,
// which cut rows and batches anywhere, give the numbers of whole batches.
TEST(Eval, LogitsInPartsGiveTheWholeBatchNumbers) {
  const auto tok = bytes();
  const Model a = tiny(*tok, 0.5f), b = Model::random(a.config, DType::F32, 7, 0.5f);
  std::vector<Example> text;
  for (const char* s : {"The quick brown fox jumps over the lazy dog.", "Pack my box with five dozen liquor jugs!",
                        "Sphinx of black quartz, judge my vow."}) {
    Example ex;
    ex.ids = tok->encode(s, false);
    ex.mask.assign(ex.ids.size(), 1);
    std::fill_n(ex.mask.begin(), ex.ids.size() / 3, 0);  // a "prompt": parts hold different numbers of targets
    text.push_back(ex);
  }
  const TokenDataset data = TokenDataset::build(text, 48, a.config.n_vocab);
  const TextEval whole = evaluate_text(a, data), parts = evaluate_text(a, data, 3);
  EXPECT_EQ(parts.tokens, whole.tokens);
  EXPECT_NEAR(parts.loss, whole.loss, 1e-6 * whole.loss);
  EXPECT_GT(whole.loss, 1.0);
  const Fidelity fw = evaluate_fidelity(a, b, data), fp = evaluate_fidelity(a, b, data, 3);
  EXPECT_EQ(fp.positions, fw.positions);
  EXPECT_NEAR(fp.kl, fw.kl, 1e-6 * fw.kl);
  EXPECT_EQ(fp.top1_agreement, fw.top1_agreement);
  EXPECT_GT(fw.kl, 0.01);
}

// Soft labels of a `distill label` dataset written by the model itself: it follows them exactly;
// another model does not.
TEST(Eval, FidelityToSoftLabelsOfItself) {
  const auto tok = bytes();
  const Model a = tiny(*tok, 0.5f);
  Example ex;
  ex.ids = tok->encode("Soft labels: the teacher's top-k per token.", false);
  const int64_t L = int64_t(ex.ids.size()), V = a.config.n_vocab, K = 4;
  Decoder dec(a);
  const Tensor z = dec.forward_full(ex.ids.data(), 1, L);
  ex.k = int(K);
  ex.mask.assign(size_t(L), 1);
  ex.mask[0] = 0;
  ex.soft.assign(size_t(L), 0);
  ex.topk_ids.assign(size_t(L * K), 0);
  ex.topk_logp.assign(size_t(L * K), 0.0f);
  for (int64_t t = 1; t < L; ++t) {  // token t's label: the distribution at position t - 1
    const float* row = z.data<float>() + (t - 1) * V;
    std::vector<int32_t> order(static_cast<size_t>(V));
    std::iota(order.begin(), order.end(), 0);
    std::partial_sort(order.begin(), order.begin() + K, order.end(), [&](int32_t x, int32_t y) { return row[x] > row[y]; });
    double lse = 0;
    for (int64_t v = 0; v < V; ++v) lse += std::exp(double(row[v] - row[order[0]]));
    lse = std::log(lse) + row[order[0]];
    ex.soft[size_t(t)] = 1;
    for (int64_t k = 0; k < K; ++k)
      ex.topk_ids[size_t(t * K + k)] = order[size_t(k)], ex.topk_logp[size_t(t * K + k)] = float(row[order[size_t(k)]] - lse);
  }
  const TokenDataset data = TokenDataset::build({ex}, L - 1, V);
  const Fidelity self = evaluate_fidelity(a, data);
  EXPECT_EQ(self.positions, L - 1);
  EXPECT_EQ(self.top1_agreement, 1.0);
  EXPECT_NEAR(self.kl, 0.0, 1e-5);
  const Model b = Model::random(a.config, DType::F32, 77, 0.5f);
  const Fidelity other = evaluate_fidelity(b, data);
  EXPECT_LT(other.top1_agreement, 0.9);
  EXPECT_GT(other.kl, 0.01);
}

TEST(Eval, TaskAccuracyCountsExactAnswers) {
  const auto tok = bytes();
  const Model m = tiny(*tok, 0.5f);
  // whatever the model says, "answer" tasks whose answer it cannot produce score 0, and a reward
  // that accepts anything scores 1
  std::vector<Task> tasks(3);
  for (Task& t : tasks) t.task = {{"prompt", "2+2="}, {"answer", "4"}}, t.prompt = tok->encode("2+2=", false);
  const TaskEval any = evaluate_task_accuracy(m, *tok, tasks, RewardSpec::parse("regex:.*|^$"), 4, 1, 0.0f);
  EXPECT_EQ(any.accuracy, 1.0);
  const TaskEval sampled = evaluate_task_accuracy(m, *tok, tasks, RewardSpec::parse("regex:.*|^$"), 4, 3, 1.0f);
  EXPECT_EQ(sampled.pass_at_n, 1.0);
  EXPECT_EQ(sampled.samples, 3);
  EXPECT_GT(evaluate_speed(m).decode_tps, 0.0);
}

}  // namespace distill
