#include "train/text_eval.h"

#include "core/error.h"
#include "model/decoder.h"
#include "train/kd_loss.h"
#include "train/losses.h"

#include <algorithm>
#include <cmath>

namespace distill {

void for_each_batch(const TokenDataset& data,
                    const std::function<void(const std::vector<int32_t>&, const std::vector<int32_t>&, int64_t)>& fn) {
  const int64_t B = 8, T = data.seq_len();
  std::vector<int32_t> in(size_t(B * T)), tg(size_t(B * T));
  for (int64_t r0 = 0; r0 < data.n_rows(); r0 += B) {
    const int64_t rows = std::min(B, data.n_rows() - r0);
    for (int64_t b = 0; b < rows; ++b) data.row(r0 + b, in.data() + b * T, tg.data() + b * T);
    fn(in, tg, rows);
  }
}

namespace {

int64_t count_targets(const int32_t* tg, int64_t n) {
  int64_t c = 0;
  for (int64_t i = 0; i < n; ++i) c += tg[i] != kIgnoreIndex;
  return c;
}

}  // namespace

TextEval evaluate_text(const Model& model, const TokenDataset& data, int64_t part_rows) {
  LogitParts logits(model);
  const int64_t V = model.config.n_vocab, T = data.seq_len(), P = part_rows > 0 ? part_rows : logit_part_rows(V);
  TextEval r;
  double total = 0;
  for_each_batch(data, [&](const std::vector<int32_t>& in, const std::vector<int32_t>& tg, int64_t rows) {
    if (count_targets(tg.data(), rows * T) == 0) return;
    logits.run(in.data(), rows, T);
    for (int64_t r0 = 0; r0 < rows * T; r0 += P) {  // each part's mean CE, weighted by its targets
      const int64_t n = std::min(P, rows * T - r0), counted = count_targets(tg.data() + r0, n);
      if (counted == 0) continue;
      total += cross_entropy_forward(logits.rows(r0, n), tg.data() + r0, n, V) * double(counted);
      r.tokens += counted;
    }
  });
  if (r.tokens == 0) fail("the evaluation data has no target tokens");
  r.loss = total / double(r.tokens);
  r.perplexity = std::exp(r.loss);
  return r;
}

namespace {

// log-softmax of one row of logits into out.
void log_softmax(const float* z, int64_t n, std::vector<double>& out) {
  out.resize(size_t(n));
  const float mx = *std::max_element(z, z + n);
  double sum = 0;
  for (int64_t i = 0; i < n; ++i) sum += std::exp(double(z[i] - mx));
  const double lse = double(mx) + std::log(sum);
  for (int64_t i = 0; i < n; ++i) out[size_t(i)] = double(z[i]) - lse;
}

}  // namespace

Fidelity evaluate_fidelity(const Model& student, const Model& teacher, const TokenDataset& data, int64_t part_rows) {
  LogitParts ps(student), pt(teacher);
  Fidelity f;
  double kl_total = 0;
  int64_t agree = 0;
  const int64_t vs = student.config.n_vocab, vt = teacher.config.n_vocab, V = std::min(vs, vt), T = data.seq_len();
  const int64_t P = part_rows > 0 ? part_rows : logit_part_rows(std::max(vs, vt));
  for_each_batch(data, [&](const std::vector<int32_t>& in, const std::vector<int32_t>& tg, int64_t rows) {
    if (count_targets(tg.data(), rows * T) == 0) return;
    ps.run(in.data(), rows, T), pt.run(in.data(), rows, T);
    std::vector<uint8_t> mask(static_cast<size_t>(P));
    for (int64_t r0 = 0; r0 < rows * T; r0 += P) {
      const int64_t n = std::min(P, rows * T - r0);
      int64_t counted = 0;
      for (int64_t i = 0; i < n; ++i) counted += (mask[size_t(i)] = tg[size_t(r0 + i)] != kIgnoreIndex);
      if (counted == 0) continue;
      const float* ls = ps.rows(r0, n);
      const float* lt = pt.rows(r0, n);
      kl_total += kd_loss_full(ls, vs, lt, vt, mask.data(), n, KdSettings{}, nullptr, 0.0f) * double(counted);
      for (int64_t i = 0; i < n; ++i) {
        if (!mask[size_t(i)]) continue;
        const float* a = ls + i * vs;
        const float* b = lt + i * vt;
        agree += std::max_element(a, a + V) - a == std::max_element(b, b + V) - b;
      }
      f.positions += counted;
    }
  });
  if (f.positions == 0) fail("the evaluation data has no target tokens");
  f.kl = kl_total / double(f.positions);
  f.top1_agreement = double(agree) / double(f.positions);
  return f;
}

Fidelity evaluate_fidelity(const Model& student, const TokenDataset& data) {
  Fidelity f;
  if (data.k() == 0) return f;
  LogitParts ps(student);
  const int64_t T = data.seq_len(), V = student.config.n_vocab, K = data.k(), P = logit_part_rows(V);
  double kl = 0;
  int64_t agree = 0, n = 0;
  std::vector<uint8_t> soft(static_cast<size_t>(T));
  std::vector<int32_t> ids(static_cast<size_t>(T * K)), in(static_cast<size_t>(T)), tg(static_cast<size_t>(T));
  std::vector<float> logp(static_cast<size_t>(T * K));
  std::vector<double> ls;
  for (int64_t r = 0; r < data.n_rows(); ++r) {
    data.row_soft(r, soft.data(), ids.data(), logp.data());
    data.row(r, in.data(), tg.data());
    bool any = false;
    for (uint8_t x : soft) any = any || x;
    if (!any) continue;
    ps.run(in.data(), 1, T);
    const float* part = nullptr;
    for (int64_t i = 0; i < T; ++i) {
      if (i % P == 0) part = nullptr;  // a new part of rows: its logits when a position needs them
      if (!soft[size_t(i)]) continue;
      if (!part) part = ps.rows(i - i % P, std::min(P, T - (i - i % P)));
      const float* s = part + (i % P) * V;
      log_softmax(s, V, ls);
      const int32_t* ti = ids.data() + i * K;
      const float* tl = logp.data() + i * K;
      // both restricted to the teacher's k ids and renormalised there
      double zt = 0, zst = 0;
      for (int64_t k = 0; k < K; ++k) zt += std::exp(double(tl[k])), zst += std::exp(ls[size_t(ti[k])]);
      int64_t best = 0;
      for (int64_t k = 0; k < K; ++k) {
        const double pt = std::exp(double(tl[k])) / zt;
        if (pt > 0) kl += pt * (std::log(pt) - (ls[size_t(ti[k])] - std::log(zst)));
        if (tl[k] > tl[best]) best = k;
      }
      agree += std::max_element(s, s + V) - s == ti[best];
      ++n;
    }
  }
  f.positions = n;
  if (n > 0) f.kl = kl / double(n), f.top1_agreement = double(agree) / double(n);
  return f;
}

}  // namespace distill
