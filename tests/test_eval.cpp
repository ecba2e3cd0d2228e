// distill eval's measures on models whose answers are known: uniform logits give perplexity equal
// to the vocabulary size; a model agrees with itself 100 % with KL 0; task accuracy counts answers.
#include "eval/evaluate.h"
#include "tokenizer/byte_vocab.h"
#include "test_util.h"

#include <cmath>

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
