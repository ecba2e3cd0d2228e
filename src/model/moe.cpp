#include "model/moe.h"

#include "core/error.h"
#include "kernels/kernels.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <numeric>

namespace distill {

namespace {

// y[rows, N] = x[rows, K] · Wᵀ (+ b) in the weight's dtype (or its load-time prepared form).
void linear(float* y, const float* x, const Tensor& w, int64_t rows, const Tensor* b = nullptr) {
  matmul_prepared(y, x, w.raw(), w.dtype(), static_cast<const PreparedWeight*>(w.prepared()),
                  b && b->defined() ? b->data<float>() : nullptr, rows, w.dim(0), w.dim(1));
}

// GPT-OSS's clamped SwiGLU, in place over gate: g = min(gate, L), u = clamp(up, −L, L),
// h = g · sigmoid(1.702 g) · (u + 1).
void swiglu_clamped(float* gate, const float* up, int64_t n, float limit) {
  for (int64_t i = 0; i < n; ++i) {
    const float g = std::min(gate[i], limit), u = std::clamp(up[i], -limit, limit);
    gate[i] = g / (1.0f + std::exp(-1.702f * g)) * (u + 1.0f);
  }
}

// Buffers grown to the largest batch seen (per thread: the decoder runs on one thread).
struct MoeScratch {
  std::vector<float> logits, weight, xg, gate, up, yg, y;
  std::vector<int32_t> expert, count, start, slot;
  std::vector<MatvecJob> jobs;
};

template <typename T>
T* sized(std::vector<T>& v, int64_t n) {
  if (int64_t(v.size()) < n) v.resize(size_t(n));
  return v.data();
}

const float* bias_of(const ModelConfig& c, const std::vector<Tensor>& biases, int64_t e) {
  return c.moe_bias ? biases[size_t(e)].data<float>() : nullptr;
}

// The activation between an expert's up and down products, in place over gate.
void expert_activation(const ModelConfig& c, float* gate, const float* up, int64_t n) {
  if (c.swiglu_limit > 0) swiglu_clamped(gate, up, n, float(c.swiglu_limit));
  else swiglu_forward(gate, gate, up, n);
}

// One token (decode): the chosen experts' gate and up products as one matvec batch, their down
// products as a second, so the K experts cost two parallel regions instead of 3·K. y[k] is rank
// k's output, the value the general path computes for the pair (0, k).
void experts_decode(const ModelConfig& c, const LayerWeights& l, const float* x, const int32_t* expert, float* y,
                    MoeScratch& s) {
  const int64_t E = c.n_embd, F = c.n_ff_expert, K = c.n_expert_used;
  float* gate = sized(s.gate, K * F);
  float* up = sized(s.up, K * F);
  MatvecJob* jobs = sized(s.jobs, 2 * K);
  auto job = [](float* out, const float* in, const Tensor& w, const float* b) {
    return MatvecJob{out, in, w.raw(), w.dtype(), b, w.dim(0), w.dim(1)};
  };
  for (int64_t k = 0; k < K; ++k) {
    const int64_t e = expert[k];
    jobs[2 * k] = job(gate + k * F, x, l.exp_gate[size_t(e)], bias_of(c, l.exp_gate_b, e));
    jobs[2 * k + 1] = job(up + k * F, x, l.exp_up[size_t(e)], bias_of(c, l.exp_up_b, e));
  }
  matvec_batch(jobs, int(2 * K));
  expert_activation(c, gate, up, K * F);
  for (int64_t k = 0; k < K; ++k)
    jobs[k] = job(y + k * E, gate + k * F, l.exp_down[size_t(expert[k])], bias_of(c, l.exp_down_b, expert[k]));
  matvec_batch(jobs, int(K));
}

// Several tokens: each chosen expert once, over the tokens that chose it (a batch of rows).
void experts_by_group(const ModelConfig& c, const LayerWeights& l, const float* x, int64_t T, const int32_t* expert,
                      float* y, MoeScratch& s) {
  const int64_t E = c.n_embd, F = c.n_ff_expert, NE = c.n_expert, K = c.n_expert_used;
  // Group the T·K (token, rank) pairs by expert: a counting sort, pairs of an expert in token order.
  int32_t* count = sized(s.count, NE);
  int32_t* start = sized(s.start, NE + 1);
  int32_t* slot = sized(s.slot, T * K);  // pair indices t·K + k, grouped by expert
  std::fill(count, count + NE, 0);
  for (int64_t i = 0; i < T * K; ++i) ++count[expert[i]];
  start[0] = 0;
  for (int64_t e = 0; e < NE; ++e) start[e + 1] = start[e] + count[e];
  std::fill(count, count + NE, 0);
  for (int64_t i = 0; i < T * K; ++i) slot[start[expert[i]] + count[expert[i]]++] = int32_t(i);

  // Each chosen expert once, over all its tokens: y[pair] = down(silu(gate x) · up x).
  for (int64_t e = 0; e < NE; ++e) {
    const int64_t n = count[e];
    if (n == 0) continue;  // never read
    float* xg = sized(s.xg, n * E);
    for (int64_t r = 0; r < n; ++r) std::memcpy(xg + r * E, x + (slot[start[e] + r] / K) * E, size_t(E) * sizeof(float));
    float* gate = sized(s.gate, n * F);
    float* up = sized(s.up, n * F);
    const bool bias = c.moe_bias;
    linear(gate, xg, l.exp_gate[size_t(e)], n, bias ? &l.exp_gate_b[size_t(e)] : nullptr);
    linear(up, xg, l.exp_up[size_t(e)], n, bias ? &l.exp_up_b[size_t(e)] : nullptr);
    expert_activation(c, gate, up, n * F);
    float* yg = sized(s.yg, n * E);
    linear(yg, gate, l.exp_down[size_t(e)], n, bias ? &l.exp_down_b[size_t(e)] : nullptr);
    for (int64_t r = 0; r < n; ++r) std::memcpy(y + int64_t(slot[start[e] + r]) * E, yg + r * E, size_t(E) * sizeof(float));
  }
}

}  // namespace

void route_tokens(const ModelConfig& c, const float* logits, int64_t T, int32_t* expert, float* weight) {
  const int64_t NE = c.n_expert, K = c.n_expert_used;
  static thread_local std::vector<float> p;
  static thread_local std::vector<int32_t> idx;
  p.resize(size_t(NE)), idx.resize(size_t(NE));
  for (int64_t t = 0; t < T; ++t) {
    const float* l = logits + t * NE;
    if (c.moe_softmax_after_topk) {  // GPT-OSS: the top k logits, softmaxed among themselves
      std::copy(l, l + NE, p.begin());
    } else {  // softmax over all experts
      const float mx = *std::max_element(l, l + NE);
      double sum = 0;
      for (int64_t e = 0; e < NE; ++e) sum += (p[size_t(e)] = std::exp(l[e] - mx));
      for (int64_t e = 0; e < NE; ++e) p[size_t(e)] = float(p[size_t(e)] / sum);
    }
    std::iota(idx.begin(), idx.end(), 0);
    std::partial_sort(idx.begin(), idx.begin() + K, idx.end(), [&](int32_t a, int32_t b) {
      return p[size_t(a)] > p[size_t(b)] || (p[size_t(a)] == p[size_t(b)] && a < b);
    });
    for (int64_t k = 0; k < K; ++k) expert[t * K + k] = idx[size_t(k)];
    if (c.moe_softmax_after_topk) {
      const float top = p[size_t(idx[0])];  // the largest
      double sum = 0;
      for (int64_t k = 0; k < K; ++k) sum += std::exp(double(p[size_t(idx[size_t(k)])] - top));
      for (int64_t k = 0; k < K; ++k) weight[t * K + k] = float(std::exp(double(p[size_t(idx[size_t(k)])] - top)) / sum);
      continue;
    }
    float kept = 0;
    for (int64_t k = 0; k < K; ++k) kept += p[size_t(idx[size_t(k)])];
    for (int64_t k = 0; k < K; ++k) weight[t * K + k] = c.norm_topk_prob ? p[size_t(idx[size_t(k)])] / kept : p[size_t(idx[size_t(k)])];
  }
}

void moe_forward(const ModelConfig& c, const LayerWeights& l, const float* x, float* out, int64_t T) {
  const int64_t E = c.n_embd, F = c.n_ff_expert, NE = c.n_expert, K = c.n_expert_used;
  static thread_local MoeScratch s;
  float* logits = sized(s.logits, T * NE);
  int32_t* expert = sized(s.expert, T * K);
  float* weight = sized(s.weight, T * K);
  linear(logits, x, l.router, T, &l.router_b);
  route_tokens(c, logits, T, expert, weight);

  float* y = sized(s.y, T * K * E);
  if (T == 1) {
    experts_decode(c, l, x, expert, y, s);
  } else {
    experts_by_group(c, l, x, T, expert, y, s);
  }
  // out_t = Σ_k w_tk · y_tk, in rank order.
  for (int64_t t = 0; t < T; ++t) {
    float* o = out + t * E;
    for (int64_t k = 0; k < K; ++k) {
      const float w = weight[t * K + k];
      const float* yk = y + (t * K + k) * E;
      if (k == 0) for (int64_t i = 0; i < E; ++i) o[i] = w * yk[i];
      else for (int64_t i = 0; i < E; ++i) o[i] += w * yk[i];
    }
  }
}

}  // namespace distill
