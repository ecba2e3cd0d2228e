// Scalar reference: causal GQA attention over a KV cache, plain two-pass softmax.
#include "kernels/kernels.h"

#include <algorithm>
#include <cmath>
#include <vector>

namespace distill::ref {

namespace {

// Element i of a cache of f32 or f16 values.
float kv_at(const void* cache, int64_t i, DType t) {
  return t == DType::F16 ? f16_to_f32(static_cast<const uint16_t*>(cache)[i]) : static_cast<const float*>(cache)[i];
}

}  // namespace

void attention_forward(float* out, const float* q, const void* k_cache, const void* v_cache,
                       const AttentionShape& s, const int32_t* pos, const int32_t* seq) {
  const int64_t group = s.n_head / s.n_kv_head;  // query heads per KV head
  const int64_t kv_dim = s.n_kv_head * s.head_dim;
  std::vector<float> scores;
  for (int64_t t = 0; t < s.n_tokens; ++t) {
    const int64_t p = pos[t];
    const int64_t first = s.window > 0 ? std::max<int64_t>(0, p - s.window + 1) : 0;
    const int64_t slot = slot_origin(s, seq[t]) * kv_dim;  // where the slot's position 0 lies
    for (int64_t h = 0; h < s.n_head; ++h) {
      const float* qh = q + (t * s.n_head + h) * s.head_dim;
      const int64_t g = h / group;
      scores.assign(size_t(p - first + 1), 0.0f);
      float max = -INFINITY;
      for (int64_t j = first; j <= p; ++j) {
        const int64_t kj = slot + j * kv_dim + g * s.head_dim;
        float dot = 0.0f;
        for (int64_t d = 0; d < s.head_dim; ++d) dot += qh[d] * kv_at(k_cache, kj + d, s.kv_type);
        scores[j - first] = dot * s.scale;
        max = std::max(max, scores[j - first]);
      }
      if (s.sinks) max = std::max(max, s.sinks[h]);
      double sum = s.sinks ? std::exp(double(s.sinks[h]) - max) : 0.0;  // the sink: mass without a value
      for (float& sc : scores) {
        sc = std::exp(sc - max);
        sum += sc;
      }
      float* oh = out + (t * s.n_head + h) * s.head_dim;
      for (int64_t d = 0; d < s.head_dim; ++d) oh[d] = 0.0f;
      for (int64_t j = first; j <= p; ++j) {
        const float pj = float(scores[j - first] / sum);
        const int64_t vj = slot + j * kv_dim + g * s.head_dim;
        for (int64_t d = 0; d < s.head_dim; ++d) oh[d] += pj * kv_at(v_cache, vj + d, s.kv_type);
      }
    }
  }
}

}  // namespace distill::ref
