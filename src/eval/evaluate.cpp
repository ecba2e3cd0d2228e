#include "eval/evaluate.h"

#include "core/error.h"
#include "generate/batch_generate.h"
#include "model/decoder.h"
#include "train/kd_loss.h"
#include "train/losses.h"

#include <algorithm>
#include <chrono>
#include <cmath>

namespace distill {

namespace {

// Calls fn(ids, targets, n_rows) for batches of the rows of `data`.
template <typename Fn>
void for_each_batch(const TokenDataset& data, Fn fn) {
  const int64_t B = 8, T = data.seq_len();
  std::vector<int32_t> in(size_t(B * T)), tg(size_t(B * T));
  for (int64_t r0 = 0; r0 < data.n_rows(); r0 += B) {
    const int64_t rows = std::min(B, data.n_rows() - r0);
    for (int64_t b = 0; b < rows; ++b) data.row(r0 + b, in.data() + b * T, tg.data() + b * T);
    fn(in, tg, rows);
  }
}

}  // namespace

TextEval evaluate_text(const Model& model, const TokenDataset& data) {
  Decoder dec(model);
  TextEval r;
  double total = 0;
  const int64_t T = data.seq_len();
  for_each_batch(data, [&](const std::vector<int32_t>& in, const std::vector<int32_t>& tg, int64_t rows) {
    const Tensor logits = dec.forward_full(in.data(), rows, T);
    int64_t n = 0;
    for (int64_t i = 0; i < rows * T; ++i) n += tg[size_t(i)] != kIgnoreIndex;
    if (n == 0) return;
    total += cross_entropy_forward(logits.data<float>(), tg.data(), rows * T, model.config.n_vocab) * double(n);
    r.tokens += n;
  });
  if (r.tokens == 0) fail("the evaluation data has no target tokens");
  r.loss = total / double(r.tokens);
  r.perplexity = std::exp(r.loss);
  return r;
}

Fidelity evaluate_fidelity(const Model& student, const Model& teacher, const TokenDataset& data) {
  Decoder ds(student), dt(teacher);
  Fidelity f;
  double kl_total = 0;
  int64_t agree = 0;
  const int64_t vs = student.config.n_vocab, vt = teacher.config.n_vocab, V = std::min(vs, vt), T = data.seq_len();
  for_each_batch(data, [&](const std::vector<int32_t>& in, const std::vector<int32_t>& tg, int64_t rows) {
    const Tensor ls = ds.forward_full(in.data(), rows, T), lt = dt.forward_full(in.data(), rows, T);
    const int64_t N = rows * T;
    std::vector<uint8_t> mask(static_cast<size_t>(N));
    int64_t n = 0;
    for (int64_t i = 0; i < N; ++i) n += (mask[size_t(i)] = tg[size_t(i)] != kIgnoreIndex);
    if (n == 0) return;
    kl_total += kd_loss_full(ls.data<float>(), vs, lt.data<float>(), vt, mask.data(), N, KdSettings{}, nullptr, 0.0f) * double(n);
    for (int64_t i = 0; i < N; ++i) {
      if (!mask[size_t(i)]) continue;
      const float* a = ls.data<float>() + i * vs;
      const float* b = lt.data<float>() + i * vt;
      agree += std::max_element(a, a + V) - a == std::max_element(b, b + V) - b;
    }
    f.positions += n;
  });
  if (f.positions == 0) fail("the evaluation data has no target tokens");
  f.kl = kl_total / double(f.positions);
  f.top1_agreement = double(agree) / double(f.positions);
  return f;
}

TaskEval evaluate_task_accuracy(const Model& model, const Tokenizer& tok, const std::vector<RlTask>& tasks,
                                const RewardSpec& reward, int64_t max_new_tokens, int64_t samples, float temperature) {
  TaskEval r;
  r.samples = samples;
  r.tasks = int64_t(tasks.size());
  if (tasks.empty()) return r;
  double correct = 0, any = 0;
  size_t answer_term = reward.terms().size();
  for (size_t i = 0; i < reward.terms().size(); ++i)
    if (reward.terms()[i].kind == "answer") answer_term = i;
  for (size_t b = 0; b < tasks.size(); b += 16) {
    std::vector<std::vector<int32_t>> prompts;
    for (size_t i = b; i < std::min(tasks.size(), b + 16); ++i) prompts.push_back(tasks[i].prompt);
    BatchGenerateOptions o;
    o.group = samples;
    o.max_new_tokens = max_new_tokens;
    o.sampler.temperature = samples == 1 ? 0.0f : temperature;
    o.sampler.top_k = 0, o.sampler.top_p = 1.0f, o.sampler.min_p = 0.0f;
    o.sampler.seed = 1234;
    const auto out = generate_batch(model, tok, prompts, o, nullptr);
    for (size_t p = 0; p < prompts.size(); ++p) {
      bool hit = false;
      for (int64_t g = 0; g < samples; ++g) {
        const SampledCompletion& c = out[p * size_t(samples) + size_t(g)];
        std::vector<double> comp;
        const double total = reward.score(tasks[b + p].task, c.text, int64_t(c.completion.size()), max_new_tokens, &comp);
        const bool ok = answer_term < comp.size() ? comp[answer_term] >= 1.0 : total > 0;
        correct += ok;
        hit |= ok;
      }
      any += hit;
    }
  }
  r.accuracy = correct / double(tasks.size() * size_t(samples));
  r.pass_at_n = any / double(tasks.size());
  return r;
}

SpeedEval evaluate_speed(const Model& model) {
  const int64_t n_prompt = 128, n_decode = 64;
  KVCache cache(model.config, 1, n_prompt + n_decode);
  Decoder dec(model);
  Batch b;
  for (int64_t i = 0; i < n_prompt; ++i) b.add(int32_t((i * 7 + 3) % model.config.n_vocab), int32_t(i), 0, i + 1 == n_prompt);
  dec.forward(b, cache);  // warm-up (buffers, page-in)
  KVCache fresh(model.config, 1, n_prompt + n_decode);
  auto t0 = std::chrono::steady_clock::now();
  const float* logits = dec.forward(b, fresh);
  SpeedEval s;
  s.prefill_tps = double(n_prompt) / std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  t0 = std::chrono::steady_clock::now();
  for (int64_t i = 0; i < n_decode; ++i) {
    const int32_t next = int32_t(std::max_element(logits, logits + model.config.n_vocab) - logits);
    b.clear();
    b.add(next, int32_t(n_prompt + i), 0, true);
    logits = dec.forward(b, fresh);
  }
  s.decode_tps = double(n_decode) / std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return s;
}

}  // namespace distill
