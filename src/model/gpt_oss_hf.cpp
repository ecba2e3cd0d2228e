#include "model/gpt_oss_hf.h"

#include "core/error.h"
#include "formats/checkpoint.h"
#include "formats/safetensors.h"
#include "kernels/kernels.h"

#include <string_view>
#include <utility>
#include <vector>

namespace distill {

namespace {

constexpr int64_t kHfBlockBytes = kQK / 2;  // 16 bytes: 32 codes, two per byte

// HF's names for the parameters list_params names like the other families; "" for the experts,
// which are read from their stacked tensors instead.
std::string hf_name(const std::string& name) {
  if (name.find(".mlp.experts.") != std::string::npos) return "";
  for (const auto& [ours, theirs] : {std::pair{".mlp.gate.weight", ".mlp.router.weight"}, std::pair{".mlp.gate.bias", ".mlp.router.bias"}}) {
    const std::string_view o = ours;
    if (name.size() > o.size() && name.compare(name.size() - o.size(), o.size(), o) == 0)
      return name.substr(0, name.size() - o.size()) + theirs;
  }
  return name;
}

// A stacked tensor of one layer's experts, its shape checked against what config.json implies.
Tensor stacked(const TensorStore& store, const std::string& name, DType want, const Shape& shape, bool any_float = false) {
  const Tensor t = store.get(name);
  if (t.shape() != shape)
    fail("{}: tensor '{}' has shape {} but config.json implies {}", store.source(name), name, shape_str(t.shape()), shape_str(shape));
  const bool float_ok = t.dtype() == DType::F32 || t.dtype() == DType::F16 || t.dtype() == DType::BF16;
  if (any_float ? !float_ok : t.dtype() != want)
    fail("{}: tensor '{}' has dtype {}; expected {}", store.source(name), name, dtype_name(t.dtype()),
         any_float ? "F32, F16 or BF16" : dtype_name(want));
  return any_float && t.dtype() != DType::F32 ? t.to(DType::F32) : t;
}

// Rows of an expert matrix in GGUF's MXFP4 blocks from HF's blocks and scales. src_row(r) is the
// HF row (within the layer's stack) that becomes row r of `dst` ([rows, K] MXFP4).
template <typename SrcRow>
void repack_rows(Tensor& dst, const uint8_t* blocks, const uint8_t* scales, int64_t rows, int64_t K, SrcRow src_row) {
  const int64_t nb = K / kQK;
  BlockMxfp4* out = static_cast<BlockMxfp4*>(dst.raw());
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < rows; ++r) {
    const int64_t s = src_row(r);
    for (int64_t b = 0; b < nb; ++b)
      out[r * nb + b] = mxfp4_block_from_hf(blocks + (s * nb + b) * kHfBlockBytes, scales[s * nb + b]);
  }
}

void load_layer_experts(const ModelConfig& c, const TensorStore& store, const std::string& prefix, int64_t il, LayerWeights& l) {
  const int64_t E = c.n_expert, I = c.n_ff_expert, H = c.n_embd;
  if (H % kQK != 0 || I % kQK != 0)
    fail("{}: gpt_oss experts are MXFP4 blocks of 32: hidden_size {} and intermediate_size {} must be multiples of 32",
         store.description(), H, I);
  const std::string ex = prefix + "model.layers." + std::to_string(il) + ".mlp.experts.";
  if (!store.find(ex + "gate_up_proj_blocks") && store.find(ex + "gate_up_proj"))
    fail("{}: '{}gate_up_proj' holds dequantized experts; this reader takes the MXFP4 release (gate_up_proj_blocks / "
         "_scales), as published for gpt-oss-20b and -120b", store.description(), ex);
  const Tensor gu_blocks = stacked(store, ex + "gate_up_proj_blocks", DType::U8, {E, 2 * I, H / kQK, kHfBlockBytes});
  const Tensor gu_scales = stacked(store, ex + "gate_up_proj_scales", DType::U8, {E, 2 * I, H / kQK});
  const Tensor gu_bias = stacked(store, ex + "gate_up_proj_bias", DType::F32, {E, 2 * I}, true);
  const Tensor dn_blocks = stacked(store, ex + "down_proj_blocks", DType::U8, {E, H, I / kQK, kHfBlockBytes});
  const Tensor dn_scales = stacked(store, ex + "down_proj_scales", DType::U8, {E, H, I / kQK});
  const Tensor dn_bias = stacked(store, ex + "down_proj_bias", DType::F32, {E, H}, true);
  // one owned buffer per kind for the whole layer; each expert a view of its rows
  Tensor gate = Tensor::zeros(DType::MXFP4, {E * I, H}), up = Tensor::zeros(DType::MXFP4, {E * I, H});
  Tensor down = Tensor::zeros(DType::MXFP4, {E * H, I});
  const uint8_t *gb = gu_blocks.data<uint8_t>(), *gs = gu_scales.data<uint8_t>();
  repack_rows(gate, gb, gs, E * I, H, [I](int64_t r) { return (r / I) * 2 * I + 2 * (r % I); });     // even rows: gate
  repack_rows(up, gb, gs, E * I, H, [I](int64_t r) { return (r / I) * 2 * I + 2 * (r % I) + 1; });   // odd rows: up
  repack_rows(down, dn_blocks.data<uint8_t>(), dn_scales.data<uint8_t>(), E * H, I, [](int64_t r) { return r; });
  l.exp_gate.resize(size_t(E)), l.exp_up.resize(size_t(E)), l.exp_down.resize(size_t(E));
  l.exp_gate_b.resize(size_t(E)), l.exp_up_b.resize(size_t(E)), l.exp_down_b.resize(size_t(E));
  const float* bias = gu_bias.data<float>();
  for (int64_t e = 0; e < E; ++e) {
    l.exp_gate[size_t(e)] = gate.slice_rows(e * I, (e + 1) * I);
    l.exp_up[size_t(e)] = up.slice_rows(e * I, (e + 1) * I);
    l.exp_down[size_t(e)] = down.slice_rows(e * H, (e + 1) * H);
    Tensor bg = Tensor::zeros(DType::F32, {I}), bu = Tensor::zeros(DType::F32, {I});
    for (int64_t i = 0; i < I; ++i)
      bg.data<float>()[i] = bias[e * 2 * I + 2 * i], bu.data<float>()[i] = bias[e * 2 * I + 2 * i + 1];
    l.exp_gate_b[size_t(e)] = bg, l.exp_up_b[size_t(e)] = bu;
    l.exp_down_b[size_t(e)] = dn_bias.slice_rows(e, e + 1).reshaped({H});
  }
}

// The HF blocks and scales of expert matrices: rows of expert e taken from mats[k][e], the k-th
// matrix kind interleaved row by row (gate, up) or alone (down).
void write_stacked(SafetensorsWriter& out, const std::string& name, const std::vector<const std::vector<Tensor>*>& mats,
                   int64_t E, int64_t rows, int64_t K) {
  const int64_t nb = K / kQK, n_kinds = int64_t(mats.size());
  Tensor blocks = Tensor::zeros(DType::U8, {E, n_kinds * rows, nb, kHfBlockBytes});
  Tensor scales = Tensor::zeros(DType::U8, {E, n_kinds * rows, nb});
  for (int64_t e = 0; e < E; ++e)
    for (int64_t k = 0; k < n_kinds; ++k) {
      const Tensor m = converted((*mats[size_t(k)])[size_t(e)], DType::MXFP4);  // MXFP4 rows, whatever held in
      const BlockMxfp4* src = static_cast<const BlockMxfp4*>(m.raw());
      for (int64_t r = 0; r < rows; ++r) {
        const int64_t hf_row = e * n_kinds * rows + r * n_kinds + k;
        for (int64_t b = 0; b < nb; ++b)
          mxfp4_block_to_hf(src[r * nb + b], blocks.data<uint8_t>() + (hf_row * nb + b) * kHfBlockBytes,
                            scales.data<uint8_t>() + hf_row * nb + b);
      }
    }
  out.add(name + "_blocks", blocks);
  out.add(name + "_scales", scales);
}

}  // namespace

BlockMxfp4 mxfp4_block_from_hf(const uint8_t* bytes16, uint8_t scale) {
  uint8_t code[kQK];
  for (int j = 0; j < kHfBlockBytes; ++j) code[2 * j] = bytes16[j] & 0x0F, code[2 * j + 1] = bytes16[j] >> 4;
  BlockMxfp4 b;
  b.e = scale;  // the same E8M0 byte: GGUF doubles the codes and halves the scale, 2^(e − 128) · 2c = 2^(e − 127) · c
  for (int j = 0; j < kHfBlockBytes; ++j) b.qs[j] = uint8_t(code[j] | (code[j + kHfBlockBytes] << 4));
  return b;
}

void mxfp4_block_to_hf(const BlockMxfp4& b, uint8_t* bytes16, uint8_t* scale) {
  uint8_t code[kQK];
  for (int j = 0; j < kHfBlockBytes; ++j) code[j] = b.qs[j] & 0x0F, code[j + kHfBlockBytes] = b.qs[j] >> 4;
  for (int j = 0; j < kHfBlockBytes; ++j) bytes16[j] = uint8_t(code[2 * j] | (code[2 * j + 1] << 4));
  *scale = b.e;
}

ModelWeights load_gpt_oss_hf(const ModelConfig& c, const TensorStore& store, const std::string& prefix) {
  ModelWeights w = load_weights(c, store, prefix, hf_name);
  for (int64_t il = 0; il < c.n_layer; ++il) load_layer_experts(c, store, prefix, il, w.layers[size_t(il)]);
  return w;
}

void add_gpt_oss_hf_tensors(const ModelConfig& c, const ModelWeights& w, SafetensorsWriter& out) {
  ModelWeights handles = w;  // list_params needs mutable refs; handles share the storage
  for (const ParamRef& p : list_params(c, handles)) {
    const std::string name = hf_name(p.name);
    if (!name.empty()) out.add(name, *p.tensor);
  }
  const int64_t E = c.n_expert, I = c.n_ff_expert, H = c.n_embd;
  if (H % kQK != 0 || I % kQK != 0)
    fail("gpt_oss: experts are written as MXFP4 blocks of 32: hidden_size {} and intermediate_size {} must be multiples of 32", H, I);
  for (int64_t il = 0; il < c.n_layer; ++il) {
    const LayerWeights& l = w.layers[size_t(il)];
    const std::string ex = "model.layers." + std::to_string(il) + ".mlp.experts.";
    write_stacked(out, ex + "gate_up_proj", {&l.exp_gate, &l.exp_up}, E, I, H);
    write_stacked(out, ex + "down_proj", {&l.exp_down}, E, H, I);
    Tensor gu_bias = Tensor::zeros(DType::F32, {E, 2 * I}), dn_bias = Tensor::zeros(DType::F32, {E, H});
    for (int64_t e = 0; e < E; ++e) {
      for (int64_t i = 0; i < I; ++i) {
        gu_bias.data<float>()[e * 2 * I + 2 * i] = l.exp_gate_b[size_t(e)].data<float>()[i];
        gu_bias.data<float>()[e * 2 * I + 2 * i + 1] = l.exp_up_b[size_t(e)].data<float>()[i];
      }
      std::copy_n(l.exp_down_b[size_t(e)].data<float>(), H, dn_bias.data<float>() + e * H);
    }
    out.add(ex + "gate_up_proj_bias", gu_bias);
    out.add(ex + "down_proj_bias", dn_bias);
  }
}

}  // namespace distill
