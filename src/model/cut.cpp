#include "model/cut.h"

#include "core/error.h"

#include <algorithm>
#include <cmath>
#include <numeric>
#include <sstream>

namespace distill {

namespace {

// A teacher matrix in the student's dtype (a copy: the student must not alias a mapped file).
Tensor convert(const Tensor& t, DType dtype) {
  if (!t.defined()) return t;
  return t.to(dtype);
}

Tensor as_f32(const Tensor& t) { return t.dtype() == DType::F32 ? t : t.to(DType::F32); }

// Row norms of a [rows, cols] matrix.
std::vector<double> row_norms(const Tensor& m) {
  const Tensor f = as_f32(m);
  const int64_t rows = f.shape()[0], cols = f.shape()[1];
  std::vector<double> n(size_t(rows), 0.0);
  const float* p = f.data<float>();
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) n[size_t(r)] += double(p[r * cols + c]) * p[r * cols + c];
  for (double& x : n) x = std::sqrt(x);
  return n;
}

// Column norms of a [rows, cols] matrix.
std::vector<double> col_norms(const Tensor& m) {
  const Tensor f = as_f32(m);
  const int64_t rows = f.shape()[0], cols = f.shape()[1];
  std::vector<double> n(size_t(cols), 0.0);
  const float* p = f.data<float>();
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t c = 0; c < cols; ++c) n[size_t(c)] += double(p[r * cols + c]) * p[r * cols + c];
  for (double& x : n) x = std::sqrt(x);
  return n;
}

// Rows `keep` of a [rows, cols] matrix (or of a vector), as f32.
Tensor take_rows(const Tensor& m, const std::vector<int64_t>& keep) {
  const Tensor f = as_f32(m);
  const int64_t cols = f.shape().size() > 1 ? f.shape()[1] : 1;
  Tensor out = Tensor::zeros(DType::F32, f.shape().size() > 1 ? Shape{int64_t(keep.size()), cols} : Shape{int64_t(keep.size())});
  for (size_t i = 0; i < keep.size(); ++i)
    std::copy_n(f.data<float>() + keep[i] * cols, cols, out.data<float>() + int64_t(i) * cols);
  return out;
}

// Columns `keep` of a [rows, cols] matrix, as f32.
Tensor take_cols(const Tensor& m, const std::vector<int64_t>& keep) {
  const Tensor f = as_f32(m);
  const int64_t rows = f.shape()[0], cols = f.shape()[1];
  Tensor out = Tensor::zeros(DType::F32, {rows, int64_t(keep.size())});
  for (int64_t r = 0; r < rows; ++r)
    for (size_t i = 0; i < keep.size(); ++i) out.data<float>()[r * int64_t(keep.size()) + int64_t(i)] = f.data<float>()[r * cols + keep[i]];
  return out;
}

// The n_ff most important FFN channels of a layer, in increasing order.
std::vector<int64_t> important_channels(const LayerWeights& l, int64_t n_ff) {
  const std::vector<double> g = row_norms(l.w_gate), u = row_norms(l.w_up), d = col_norms(l.w_down);
  std::vector<int64_t> idx(g.size());
  std::iota(idx.begin(), idx.end(), 0);
  std::stable_sort(idx.begin(), idx.end(), [&](int64_t a, int64_t b) {
    return g[size_t(a)] * u[size_t(a)] * d[size_t(a)] > g[size_t(b)] * u[size_t(b)] * d[size_t(b)];
  });
  idx.resize(size_t(n_ff));
  std::sort(idx.begin(), idx.end());
  return idx;
}

}  // namespace

std::vector<int64_t> parse_layer_list(const std::string& spec, int64_t n_layer) {
  std::vector<int64_t> out;
  if (spec.rfind("every:", 0) == 0) {
    char* end = nullptr;
    const long step = std::strtol(spec.c_str() + 6, &end, 10);
    if (*end != '\0' || step < 1) fail("--layers '{}': every:N needs a positive N", spec);
    for (int64_t i = 0; i < n_layer; i += step) out.push_back(i);
  } else {
    std::stringstream ss(spec);
    std::string part;
    while (std::getline(ss, part, ',')) {
      long a = 0, b = 0;
      char extra = 0;
      if (std::sscanf(part.c_str(), "%ld-%ld%c", &a, &b, &extra) == 2) {
      } else if (std::sscanf(part.c_str(), "%ld%c", &a, &extra) == 1) {
        b = a;
      } else {
        fail("--layers '{}': '{}' is not a layer index or a range A-B", spec, part);
      }
      if (a > b) fail("--layers '{}': range {}-{} runs backwards", spec, a, b);
      for (long i = a; i <= b; ++i) out.push_back(i);
    }
  }
  if (out.empty()) fail("--layers '{}': no layers", spec);
  for (size_t i = 0; i < out.size(); ++i) {
    if (out[i] < 0 || out[i] >= n_layer) fail("--layers '{}': layer {} does not exist (the teacher has {})", spec, out[i], n_layer);
    if (i > 0 && out[i] <= out[i - 1]) fail("--layers '{}': layers must be increasing and distinct", spec);
  }
  return out;
}

Model cut_model(const Model& teacher, const CutOptions& o) {
  const ModelConfig& tc = teacher.config;
  if (tc.is_moe()) fail("--from: cutting a student from a mixture-of-experts teacher ({}) is not supported", tc.model_type);
  std::vector<int64_t> layers = o.layers;
  if (layers.empty())
    for (int64_t i = 0; i < tc.n_layer; ++i) layers.push_back(i);
  const int64_t n_ff = o.n_ff > 0 ? o.n_ff : tc.n_ff;
  if (n_ff > tc.n_ff) fail("--ffn {}: wider than the teacher's FFN ({})", n_ff, tc.n_ff);
  if (dtype_is_quantized(o.dtype)) fail("a cut student is stored as f32, bf16 or f16");
  Model s;
  s.config = tc;
  s.config.n_layer = int64_t(layers.size());
  s.config.n_ff = n_ff;
  s.config.torch_dtype = o.dtype == DType::BF16 ? "bfloat16" : o.dtype == DType::F16 ? "float16" : "float32";
  s.inv_freq = teacher.inv_freq;
  const ModelWeights& tw = teacher.weights;
  ModelWeights& w = s.weights;
  w.tok_embd = convert(tw.tok_embd, o.dtype);
  w.out_norm = convert(tw.out_norm, DType::F32);
  const bool tied = tw.lm_head.raw() == tw.tok_embd.raw();
  w.lm_head = tied ? w.tok_embd : convert(tw.lm_head, o.dtype);
  for (int64_t li : layers) {
    const LayerWeights& t = tw.layers[size_t(li)];
    LayerWeights l;
    l.attn_norm = convert(t.attn_norm, DType::F32), l.ffn_norm = convert(t.ffn_norm, DType::F32);
    l.wq = convert(t.wq, o.dtype), l.wk = convert(t.wk, o.dtype), l.wv = convert(t.wv, o.dtype), l.wo = convert(t.wo, o.dtype);
    l.bq = convert(t.bq, DType::F32), l.bk = convert(t.bk, DType::F32), l.bv = convert(t.bv, DType::F32), l.bo = convert(t.bo, DType::F32);
    l.q_norm = convert(t.q_norm, DType::F32), l.k_norm = convert(t.k_norm, DType::F32);
    if (n_ff == tc.n_ff) {
      l.w_gate = convert(t.w_gate, o.dtype), l.w_up = convert(t.w_up, o.dtype), l.w_down = convert(t.w_down, o.dtype);
      l.b_gate = convert(t.b_gate, DType::F32), l.b_up = convert(t.b_up, DType::F32);
    } else {
      const std::vector<int64_t> keep = important_channels(t, n_ff);
      l.w_gate = take_rows(t.w_gate, keep).to(o.dtype), l.w_up = take_rows(t.w_up, keep).to(o.dtype);
      l.w_down = take_cols(t.w_down, keep).to(o.dtype);
      if (t.b_gate.defined()) l.b_gate = take_rows(t.b_gate, keep);
      if (t.b_up.defined()) l.b_up = take_rows(t.b_up, keep);
    }
    l.b_down = convert(t.b_down, DType::F32);
    w.layers.push_back(std::move(l));
  }
  return s;
}

}  // namespace distill
