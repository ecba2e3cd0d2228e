// Model::random: a model with random weights for students, tests and benchmarks.
#include "core/rng.h"
#include "model/model.h"

#include <omp.h>

namespace distill {

Model Model::random(const ModelConfig& config, DType dtype, uint64_t seed, float std, DType expert_dtype) {
  Model m;
  m.config = config;
  m.inv_freq = config.rope_inv_freq();
  std::vector<ParamRef> params = list_params(m.config, m.weights);
  for (size_t i = 0; i < params.size(); ++i) {
    ParamRef& p = params[i];
    Tensor t = Tensor::zeros(DType::F32, p.shape);
    float* d = t.data<float>();
    const bool is_norm = !p.is_matrix && p.name.find("norm") != std::string::npos;
    if (is_norm) {
      for (int64_t k = 0; k < t.numel(); ++k) d[k] = 1.0f;
    } else if (p.is_matrix) {
      // Rows are filled in parallel from per-row generators so the result does not depend on
      // the thread count.
      const int64_t rows = p.shape[0], cols = p.shape[1];
#pragma omp parallel for schedule(static)
      for (int64_t r = 0; r < rows; ++r) {
        Rng rng(seed * 1000003u + i * 7919u + uint64_t(r));
        for (int64_t k = 0; k < cols; ++k) d[r * cols + k] = std * rng.normal();
      }
    }
    // Each matrix takes its type as soon as it is drawn: a large mixture of experts never exists in f32 whole.
    // (A row that is not whole blocks of expert_dtype stays f32: the GGUF exporter picks its fallback.)
    const bool expert = p.name.find(".experts.") != std::string::npos && expert_dtype != DType::F32 && p.is_matrix &&
                        p.shape[1] % dtype_block(expert_dtype) == 0;
    const DType to = expert ? expert_dtype : dtype;
    *p.tensor = p.is_matrix ? converted(t, to) : t;
  }
  tie_lm_head(m.config, m.weights);
  return m;
}

}  // namespace distill
