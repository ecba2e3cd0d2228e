#include "train/kd_loss.h"

#include "kernels/logprobs.h"  // log_sum_exp

#include "core/error.h"

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>
#include <vector>

namespace distill {

Divergence parse_divergence(const std::string& name) {
  if (name == "fkl") return Divergence::ForwardKL;
  if (name == "rkl") return Divergence::ReverseKL;
  if (name == "jsd") return Divergence::JSD;
  if (name == "tvd") return Divergence::TVD;
  fail("unknown divergence '{}' (known: fkl, rkl, jsd, tvd)", name);
}

TopKMode parse_topk_mode(const std::string& name) {
  if (name == "renormalize") return TopKMode::Renormalize;
  if (name == "tail") return TopKMode::Tail;
  fail("unknown top-k mode '{}' (known: renormalize, tail)", name);
}

namespace {

// log-softmax of x[0..n)/T into out (double).
void log_softmax(double* out, const float* x, int64_t n, double inv_t) {
  const double lse = log_sum_exp(x, n, inv_t);
  for (int64_t i = 0; i < n; ++i) out[i] = double(x[i]) * inv_t - lse;
}

// The divergence between teacher lp and student lq (log-probabilities over one support of m
// outcomes). Returns the loss and writes g = d loss / d lq.
double divergence(const double* lp, const double* lq, double* g, int64_t m, Divergence d, double beta) {
  if (d == Divergence::JSD && beta <= 0.0) d = Divergence::ForwardKL;
  if (d == Divergence::JSD && beta >= 1.0) d = Divergence::ReverseKL;
  double loss = 0.0;
  for (int64_t i = 0; i < m; ++i) {
    const double p = std::exp(lp[i]), q = std::exp(lq[i]);
    switch (d) {
      case Divergence::ForwardKL:
        if (p > 0) loss += p * (lp[i] - lq[i]);
        g[i] = -p;
        break;
      case Divergence::ReverseKL:
        loss += q > 0 ? q * (lq[i] - lp[i]) : 0.0;
        g[i] = q * (lq[i] - lp[i] + 1.0);
        break;
      case Divergence::JSD: {
        const double mix = beta * p + (1.0 - beta) * q;
        const double lm = std::log(mix);
        if (p > 0) loss += beta * p * (lp[i] - lm);
        if (q > 0) loss += (1.0 - beta) * q * (lq[i] - lm);
        // d/dq of the sum reduces to (1-β)(log q - log m); times q for d/d log q
        g[i] = (1.0 - beta) * q * (lq[i] - lm);
        break;
      }
      case Divergence::TVD:
        loss += 0.5 * std::fabs(p - q);
        g[i] = 0.5 * q * (q > p ? 1.0 : (q < p ? -1.0 : 0.0));
        break;
    }
  }
  return loss;
}

int64_t counted_rows(const uint8_t* mask, int64_t n) {
  if (!mask) return n;
  int64_t c = 0;
  for (int64_t i = 0; i < n; ++i) c += mask[i] != 0;
  return c;
}

struct RowBuffers {
  std::vector<double> lp, lq, g;
  std::vector<uint8_t> in_topk;
  std::vector<float> row;  // gathered student logits (renormalize) or teacher log-probs (tail)
};

}  // namespace

double kd_loss_full(const float* student, int64_t v_student, const float* teacher, int64_t v_teacher,
                    const uint8_t* mask, int64_t n, const KdSettings& st, float* d_student, float grad_scale) {
  const int64_t counted = counted_rows(mask, n);
  if (counted == 0) return 0.0;
  const int64_t V = std::min(v_student, v_teacher);  // shared ids (vocabularies padded differently)
  const double T = st.temperature, inv_t = 1.0 / T;
  const double scale = (st.t2_scale ? T * T : 1.0) / double(counted);
  double total = 0.0;
#pragma omp parallel reduction(+ : total)
  {
    RowBuffers buf;
    buf.lp.resize(size_t(V)), buf.lq.resize(size_t(V)), buf.g.resize(size_t(V));
#pragma omp for schedule(static)
    for (int64_t r = 0; r < n; ++r) {
      if (mask && !mask[r]) continue;
      log_softmax(buf.lp.data(), teacher + r * v_teacher, V, inv_t);
      log_softmax(buf.lq.data(), student + r * v_student, V, inv_t);
      total += divergence(buf.lp.data(), buf.lq.data(), buf.g.data(), V, st.divergence, st.beta);
      if (!d_student) continue;
      // back through log-softmax(z/T): dz_j = (g_j − q_j Σ g) / T
      double gsum = 0.0;
      for (int64_t j = 0; j < V; ++j) gsum += buf.g[size_t(j)];
      float* d = d_student + r * v_student;
      const double f = scale * grad_scale * inv_t;
      for (int64_t j = 0; j < V; ++j) d[j] += float(f * (buf.g[size_t(j)] - std::exp(buf.lq[size_t(j)]) * gsum));
    }
  }
  return total * scale;
}

double kd_loss_topk(const float* student, int64_t v_student, const int32_t* ids, const float* logprobs, int64_t k,
                    const uint8_t* mask, int64_t n, const KdSettings& st, TopKMode mode, float* d_student,
                    float grad_scale) {
  for (int64_t i = 0; i < n * k; ++i)
    if (ids[i] < 0 || ids[i] >= v_student)
      fail("teacher top-k id {} (row {}) is outside the student's vocabulary [0, {})", ids[i], i / k, v_student);
  const int64_t counted = counted_rows(mask, n);
  if (counted == 0) return 0.0;
  const double T = st.temperature, inv_t = 1.0 / T;
  const double scale = (st.t2_scale ? T * T : 1.0) / double(counted);
  const bool tail = mode == TopKMode::Tail;
  const int64_t m = tail ? k + 1 : k;  // support size
  double total = 0.0;
#pragma omp parallel reduction(+ : total)
  {
    RowBuffers buf;
    buf.lp.resize(size_t(m)), buf.lq.resize(size_t(m)), buf.g.resize(size_t(m)), buf.row.resize(size_t(m));
    std::vector<double> q_full;  // tail mode: the student's full softmax
    if (tail) buf.in_topk.assign(size_t(v_student), 0), q_full.resize(size_t(v_student));
#pragma omp for schedule(static)
    for (int64_t r = 0; r < n; ++r) {
      if (mask && !mask[r]) continue;
      const int32_t* id = ids + r * k;
      const float* z = student + r * v_student;
      float* d = d_student ? d_student + r * v_student : nullptr;
      if (!tail) {
        // Both sides restricted to the k ids and renormalised there.
        for (int64_t i = 0; i < k; ++i) buf.row[size_t(i)] = z[id[i]];
        log_softmax(buf.lq.data(), buf.row.data(), k, inv_t);
        log_softmax(buf.lp.data(), logprobs + r * k, k, inv_t);
        total += divergence(buf.lp.data(), buf.lq.data(), buf.g.data(), k, st.divergence, st.beta);
        if (!d) continue;
        double gsum = 0.0;
        for (int64_t i = 0; i < k; ++i) gsum += buf.g[size_t(i)];
        const double f = scale * grad_scale * inv_t;
        for (int64_t i = 0; i < k; ++i)
          d[id[i]] += float(f * (buf.g[size_t(i)] - std::exp(buf.lq[size_t(i)]) * gsum));
        continue;
      }
      // Tail: the student's full softmax, coarse-grained to k ids + "the rest".
      log_softmax(q_full.data(), z, v_student, inv_t);  // log q, overwritten by q below
      for (int64_t j = 0; j < v_student; ++j) q_full[size_t(j)] = std::exp(q_full[size_t(j)]);
      for (int64_t i = 0; i < k; ++i) buf.in_topk[size_t(id[i])] = 1;
      double q_tail = 0.0;
      for (int64_t j = 0; j < v_student; ++j)
        if (!buf.in_topk[size_t(j)]) q_tail += q_full[size_t(j)];
      q_tail = std::max(q_tail, 1e-30);
      for (int64_t i = 0; i < k; ++i) buf.lq[size_t(i)] = std::log(std::max(q_full[size_t(id[i])], 1e-300));
      buf.lq[size_t(k)] = std::log(q_tail);
      // Teacher: the k stored probabilities plus the rest, tempered as one (k+1)-outcome distribution.
      float* tp = buf.row.data();
      double p_sum = 0.0;
      for (int64_t i = 0; i < k; ++i) p_sum += std::exp(double(logprobs[r * k + i]));
      for (int64_t i = 0; i < k; ++i) tp[i] = logprobs[r * k + i];
      tp[k] = float(std::log(std::max(1.0 - p_sum, 1e-30)));
      log_softmax(buf.lp.data(), tp, k + 1, inv_t);
      total += divergence(buf.lp.data(), buf.lq.data(), buf.g.data(), k + 1, st.divergence, st.beta);
      if (d) {
        // d/da_j = h_j − q_j Σg, with h_j = g_j on the top-k and q_j g_tail / q_tail elsewhere
        double gsum = 0.0;
        for (int64_t i = 0; i <= k; ++i) gsum += buf.g[size_t(i)];
        const double f = scale * grad_scale * inv_t;
        const double tail_h = buf.g[size_t(k)] / q_tail;
        for (int64_t j = 0; j < v_student; ++j)
          if (!buf.in_topk[size_t(j)]) d[j] += float(f * q_full[size_t(j)] * (tail_h - gsum));
        for (int64_t i = 0; i < k; ++i) d[id[i]] += float(f * (buf.g[size_t(i)] - q_full[size_t(id[i])] * gsum));
      }
      for (int64_t i = 0; i < k; ++i) buf.in_topk[size_t(id[i])] = 0;
    }
  }
  return total * scale;
}

double uld_loss_topk(const float* student, int64_t v_student, const float* sorted_logp, int64_t k, const uint8_t* mask,
                     int64_t n, float* d_student, float grad_scale) {
  const int64_t counted = counted_rows(mask, n);
  if (counted == 0 || k <= 0) return 0.0;
  const double scale = 1.0 / double(counted);
  double total = 0.0;
#pragma omp parallel reduction(+ : total)
  {
    std::vector<double> lq(static_cast<size_t>(v_student));
    std::vector<int32_t> order(static_cast<size_t>(v_student));
    std::vector<double> p(static_cast<size_t>(k));
#pragma omp for schedule(static)
    for (int64_t r = 0; r < n; ++r) {
      if (mask && !mask[r]) continue;
      log_softmax(lq.data(), student + r * v_student, v_student, 1.0);  // log q
      // the student's k likeliest tokens, likeliest first (ties by id: a deterministic sort)
      std::iota(order.begin(), order.end(), 0);
      const int64_t kk = std::min(k, v_student);
      std::partial_sort(order.begin(), order.begin() + kk, order.end(), [&](int32_t a, int32_t b) {
        return lq[size_t(a)] > lq[size_t(b)] || (lq[size_t(a)] == lq[size_t(b)] && a < b);
      });
      for (int64_t i = 0; i < k; ++i) p[size_t(i)] = std::exp(double(sorted_logp[r * k + i]));
      std::sort(p.begin(), p.end(), std::greater<double>());
      // loss Σ_i |q_(i) − p_(i)|; with s_i its sign, d loss / d z_j = q_j (s_i(j) − Σ_i s_i q_(i))
      double sq = 0.0;
      for (int64_t i = 0; i < kk; ++i) {
        const double q = std::exp(lq[size_t(order[size_t(i)])]);
        total += std::fabs(q - p[size_t(i)]);
        sq += (q > p[size_t(i)] ? 1.0 : q < p[size_t(i)] ? -1.0 : 0.0) * q;
      }
      for (int64_t i = kk; i < k; ++i) total += p[size_t(i)];  // a teacher rank the student's vocabulary lacks
      if (!d_student) continue;
      float* d = d_student + r * v_student;
      const double f = scale * grad_scale;
      for (int64_t j = 0; j < v_student; ++j) d[j] -= float(f * std::exp(lq[size_t(j)]) * sq);
      for (int64_t i = 0; i < kk; ++i) {
        const double q = std::exp(lq[size_t(order[size_t(i)])]);
        const double sign = q > p[size_t(i)] ? 1.0 : q < p[size_t(i)] ? -1.0 : 0.0;
        d[order[size_t(i)]] += float(f * q * sign);
      }
    }
  }
  return total * scale;
}

}  // namespace distill
