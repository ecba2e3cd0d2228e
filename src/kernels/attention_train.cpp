// Training attention: causal GQA over whole sequences, keeping the softmax probabilities for the
// backward. Each (sequence, head) is a few small matrix products done with OpenBLAS inside an
// OpenMP loop (OpenBLAS runs single-threaded when called from a parallel region).
//
// Forward, per sequence b and query head h (KV head g = h / group):
//   S = scale · Q K^T (T×T, future positions and those past a sliding window masked),  P = softmax_rows(S),  O = P V
// Backward:
//   dV += P^T dO,  dP = dO V^T,  dS = P ⊙ (dP - rowsum(dP ⊙ P)),
//   dQ = scale · dS K,  dK += scale · dS^T Q
#include "kernels/kernels.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>

namespace distill {

void attention_train_forward(float* out, float* probs, const float* q, const float* k, const float* v,
                             const TrainAttentionShape& s) {
  const int64_t T = s.seq_len, HD = s.head_dim, group = s.n_head / s.n_kv_head;
  const int64_t QD = s.n_head * HD, KVD = s.n_kv_head * HD;
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t bh = 0; bh < s.n_seq * s.n_head; ++bh) {
    const int64_t b = bh / s.n_head, h = bh % s.n_head, g = h / group;
    const float* qb = q + b * T * QD + h * HD;
    const float* kb = k + b * T * KVD + g * HD;
    const float* vb = v + b * T * KVD + g * HD;
    float* P = probs + bh * T * T;
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(T), int(T), int(HD), s.scale, qb, int(QD), kb,
                int(KVD), 0.0f, P, int(T));
    for (int64_t i = 0; i < T; ++i) {
      float* row = P + i * T;
      const int64_t first = s.window > 0 ? std::max<int64_t>(0, i - s.window + 1) : 0;
      float max = row[first];
      for (int64_t j = first + 1; j <= i; ++j) max = std::max(max, row[j]);
      float sum = 0.0f;
      for (int64_t j = first; j <= i; ++j) {
        row[j] = std::exp(row[j] - max);
        sum += row[j];
      }
      const float inv = 1.0f / sum;
      for (int64_t j = first; j <= i; ++j) row[j] *= inv;
      // Masked positions (past the window, and the future) get probability 0, which also zeroes
      // their gradient in the backward (dS = P ⊙ ...).
      for (int64_t j = 0; j < first; ++j) row[j] = 0.0f;
      for (int64_t j = i + 1; j < T; ++j) row[j] = 0.0f;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(T), int(HD), int(T), 1.0f, P, int(T), vb, int(KVD),
                0.0f, out + b * T * QD + h * HD, int(QD));
  }
}

void attention_backward(float* d_q, float* d_k, float* d_v, const float* d_out, float* probs, const float* q,
                        const float* k, const float* v, const TrainAttentionShape& s, float* scratch) {
  const int64_t T = s.seq_len, HD = s.head_dim, group = s.n_head / s.n_kv_head;
  const int64_t QD = s.n_head * HD, KVD = s.n_kv_head * HD;
  // Work items are (sequence, KV head): the query heads of a group accumulate into the same
  // d_k / d_v columns, so they run one after another inside an item.
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t bg = 0; bg < s.n_seq * s.n_kv_head; ++bg) {
    const int64_t b = bg / s.n_kv_head, g = bg % s.n_kv_head;
    float* dP = scratch + int64_t(omp_get_thread_num()) * T * T;
    const float* kb = k + b * T * KVD + g * HD;
    const float* vb = v + b * T * KVD + g * HD;
    float* dkb = d_k + b * T * KVD + g * HD;
    float* dvb = d_v + b * T * KVD + g * HD;
    for (int64_t i = 0; i < T; ++i) {
      std::memset(dkb + i * KVD, 0, size_t(HD) * sizeof(float));
      std::memset(dvb + i * KVD, 0, size_t(HD) * sizeof(float));
    }
    for (int64_t h = g * group; h < (g + 1) * group; ++h) {
      float* P = probs + (b * s.n_head + h) * T * T;
      const float* dOb = d_out + b * T * QD + h * HD;
      const float* qb = q + b * T * QD + h * HD;
      // dV += P^T dO
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, int(T), int(HD), int(T), 1.0f, P, int(T), dOb, int(QD),
                  1.0f, dvb, int(KVD));
      // dP = dO V^T
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(T), int(T), int(HD), 1.0f, dOb, int(QD), vb,
                  int(KVD), 0.0f, dP, int(T));
      // dS = P ⊙ (dP - Σ_j dP P), written over P (P is not needed after this)
      for (int64_t i = 0; i < T; ++i) {
        float* pr = P + i * T;
        const float* dpr = dP + i * T;
        float dot = 0.0f;
        for (int64_t j = 0; j <= i; ++j) dot += dpr[j] * pr[j];
        for (int64_t j = 0; j <= i; ++j) pr[j] = pr[j] * (dpr[j] - dot);
      }
      // dQ = scale · dS K ; dK += scale · dS^T Q
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(T), int(HD), int(T), s.scale, P, int(T), kb,
                  int(KVD), 0.0f, d_q + b * T * QD + h * HD, int(QD));
      cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, int(T), int(HD), int(T), s.scale, P, int(T), qb, int(QD),
                  1.0f, dkb, int(KVD));
    }
  }
}

}  // namespace distill
