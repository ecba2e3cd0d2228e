// Training attention: causal GQA over whole sequences, memory-lean. The forward keeps, per
// (sequence, head, position), only the log of the softmax's denominator; the backward recomputes
// the probabilities block by block from it. Memory per layer is O(T) instead of the T×T
// probabilities, at the price of one more Q K^T product in the backward. Work happens in blocks of
// kBlock query rows against the keys they can see, each a few OpenBLAS products inside an OpenMP
// loop (OpenBLAS runs single-threaded when called from a parallel region).
//
// Forward, per sequence b, query head h (KV head g = h / group) and query block I:
//   S = scale · Q_I K^T (future positions and those past a sliding window masked),
//   lse_i = log Σ_j exp S_ij,  P = exp(S − lse),  O_I = P V
// Backward, per block, with P recomputed from lse:
//   dV += P^T dO_I,  dP = dO_I V^T,  dS = P ⊙ (dP − rowsum(dP ⊙ P)),
//   dQ_I = scale · dS K,  dK += scale · dS^T Q_I
#include "kernels/kernels.h"

#include <cblas.h>
#include <omp.h>

#include <algorithm>
#include <cmath>
#include <cstring>

namespace distill {

namespace {

constexpr int64_t kBlock = 64;  // query rows per block

// The keys rows [i0, i1) of a block can see: [first, i1) (a sliding window starts them later).
int64_t first_key(int64_t i0, const TrainAttentionShape& s) { return s.window > 0 ? std::max<int64_t>(0, i0 - s.window + 1) : 0; }

// Row i's visible keys, as offsets into a block's key range starting at `kf`: [lo, hi).
void visible(int64_t i, int64_t kf, const TrainAttentionShape& s, int64_t* lo, int64_t* hi) {
  *lo = (s.window > 0 ? std::max<int64_t>(0, i - s.window + 1) : 0) - kf;
  *hi = i + 1 - kf;
}

// One block's scores: P [rows, nk] = scale · Q_I K^T for query rows [i0, i0 + rows) against keys
// [kf, kf + nk); then `row_fn(row, lo, hi, r)` turns row r's visible entries [lo, hi) into
// probabilities, and the masked ones (past the window, the future) are set to 0.
template <class RowFn>
void block_probabilities(float* P, const float* qb, const float* kb, int64_t i0, int64_t rows, int64_t kf, int64_t nk,
                         const TrainAttentionShape& s, RowFn&& row_fn) {
  const int64_t QD = s.n_head * s.head_dim, KVD = s.n_kv_head * s.head_dim;
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(rows), int(nk), int(s.head_dim), s.scale, qb, int(QD), kb,
              int(KVD), 0.0f, P, int(nk));
  for (int64_t r = 0; r < rows; ++r) {
    float* row = P + r * nk;
    int64_t lo, hi;
    visible(i0 + r, kf, s, &lo, &hi);
    row_fn(row, lo, hi, r);
    std::fill(row, row + lo, 0.0f);
    std::fill(row + hi, row + nk, 0.0f);
  }
}

}  // namespace

size_t attention_train_scratch_floats(const TrainAttentionShape& s) {
  return size_t(2 * kBlock * s.seq_len) * size_t(omp_get_max_threads());
}

void attention_train_forward(float* out, float* lse, const float* q, const float* k, const float* v,
                             const TrainAttentionShape& s, float* scratch) {
  const int64_t T = s.seq_len, HD = s.head_dim, group = s.n_head / s.n_kv_head;
  const int64_t QD = s.n_head * HD, KVD = s.n_kv_head * HD;
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t bh = 0; bh < s.n_seq * s.n_head; ++bh) {
    const int64_t b = bh / s.n_head, h = bh % s.n_head, g = h / group;
    float* P = scratch + int64_t(omp_get_thread_num()) * 2 * kBlock * T;
    for (int64_t i0 = 0; i0 < T; i0 += kBlock) {
      const int64_t i1 = std::min(T, i0 + kBlock), rows = i1 - i0, kf = first_key(i0, s), nk = i1 - kf;
      const float* qb = q + (b * T + i0) * QD + h * HD;
      const float* kb = k + (b * T + kf) * KVD + g * HD;
      const float* vb = v + (b * T + kf) * KVD + g * HD;
      block_probabilities(P, qb, kb, i0, rows, kf, nk, s, [&](float* row, int64_t lo, int64_t hi, int64_t r) {
        float max = row[lo];
        for (int64_t j = lo + 1; j < hi; ++j) max = std::max(max, row[j]);
        float sum = 0.0f;
        for (int64_t j = lo; j < hi; ++j) sum += (row[j] = std::exp(row[j] - max));
        const float inv = 1.0f / sum;
        for (int64_t j = lo; j < hi; ++j) row[j] *= inv;
        lse[bh * T + i0 + r] = max + std::log(sum);
      });
      cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(rows), int(HD), int(nk), 1.0f, P, int(nk), vb, int(KVD),
                  0.0f, out + (b * T + i0) * QD + h * HD, int(QD));
    }
  }
}

void attention_backward(float* d_q, float* d_k, float* d_v, const float* d_out, const float* lse, const float* q,
                        const float* k, const float* v, const TrainAttentionShape& s, float* scratch) {
  const int64_t T = s.seq_len, HD = s.head_dim, group = s.n_head / s.n_kv_head;
  const int64_t QD = s.n_head * HD, KVD = s.n_kv_head * HD;
  // Work items are (sequence, KV head): the query heads of a group accumulate into the same
  // d_k / d_v rows, so they run one after another inside an item.
#pragma omp parallel for schedule(dynamic, 1)
  for (int64_t bg = 0; bg < s.n_seq * s.n_kv_head; ++bg) {
    const int64_t b = bg / s.n_kv_head, g = bg % s.n_kv_head;
    float* P = scratch + int64_t(omp_get_thread_num()) * 2 * kBlock * T;
    float* dP = P + kBlock * T;
    float* dkb = d_k + b * T * KVD + g * HD;
    float* dvb = d_v + b * T * KVD + g * HD;
    for (int64_t i = 0; i < T; ++i) {
      std::memset(dkb + i * KVD, 0, size_t(HD) * sizeof(float));
      std::memset(dvb + i * KVD, 0, size_t(HD) * sizeof(float));
    }
    for (int64_t h = g * group; h < (g + 1) * group; ++h) {
      const int64_t bh = b * s.n_head + h;
      for (int64_t i0 = 0; i0 < T; i0 += kBlock) {
        const int64_t i1 = std::min(T, i0 + kBlock), rows = i1 - i0, kf = first_key(i0, s), nk = i1 - kf;
        const float* qb = q + (b * T + i0) * QD + h * HD;
        const float* dOb = d_out + (b * T + i0) * QD + h * HD;
        const float* kb = k + (b * T + kf) * KVD + g * HD;
        const float* vb = v + (b * T + kf) * KVD + g * HD;
        // P again, from the scores and the forward's log-denominators
        block_probabilities(P, qb, kb, i0, rows, kf, nk, s, [&](float* row, int64_t lo, int64_t hi, int64_t r) {
          const float l = lse[bh * T + i0 + r];
          for (int64_t j = lo; j < hi; ++j) row[j] = std::exp(row[j] - l);
        });
        // dV += P^T dO ;  dP = dO V^T
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, int(nk), int(HD), int(rows), 1.0f, P, int(nk), dOb, int(QD),
                    1.0f, dvb + kf * KVD, int(KVD));
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, int(rows), int(nk), int(HD), 1.0f, dOb, int(QD), vb, int(KVD),
                    0.0f, dP, int(nk));
        // dS = P ⊙ (dP − Σ_j dP P), written over P; masked entries stay 0 (P is 0 there)
        for (int64_t r = 0; r < rows; ++r) {
          float* pr = P + r * nk;
          const float* dpr = dP + r * nk;
          float dot = 0.0f;
          for (int64_t j = 0; j < nk; ++j) dot += dpr[j] * pr[j];
          for (int64_t j = 0; j < nk; ++j) pr[j] = pr[j] * (dpr[j] - dot);
        }
        // dQ = scale · dS K ;  dK += scale · dS^T Q
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(rows), int(HD), int(nk), s.scale, P, int(nk), kb, int(KVD),
                    0.0f, d_q + (b * T + i0) * QD + h * HD, int(QD));
        cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, int(nk), int(HD), int(rows), s.scale, P, int(nk), qb, int(QD),
                    1.0f, dkb + kf * KVD, int(KVD));
      }
    }
  }
}

}  // namespace distill
