#include "model/model.h"

#include "core/error.h"
#include "formats/checkpoint.h"
#include "kernels/kernels.h"
#include "model/gguf_model.h"
#include "model/gpt_oss_hf.h"

#include <cmath>
#include <filesystem>

namespace distill {

namespace fs = std::filesystem;

Model Model::from_store(const ModelConfig& config, const TensorStore& store, const std::string& prefix) {
  Model m;
  m.config = config;
  // gpt_oss's files are the release layout: MXFP4 expert stacks, repacked once (model/gpt_oss_hf.h)
  m.weights = config.model_type == "gpt_oss" ? load_gpt_oss_hf(config, store, prefix) : load_weights(config, store, prefix);
  m.inv_freq = config.rope_inv_freq();
  return m;
}

Model Model::load(const std::string& dir, bool prepare) {
  Model m;
  if (is_gguf_file(dir)) {
    m = load_gguf_model(dir);
  } else {
    if (!fs::is_directory(dir)) fail("{}: not a model directory or GGUF file", dir);
    const ModelConfig config = ModelConfig::from_file((fs::path(dir) / "config.json").string());
    m = from_store(config, TensorStore::open_dir(dir));
  }
  if (prepare) m.prepare_weights();
  return m;
}

size_t Model::stored_bytes() const {
  ModelWeights handles = weights;  // list_params needs mutable refs; handles share the storage
  size_t b = 0;
  for (const ParamRef& p : list_params(config, handles)) b += p.tensor->defined() ? p.tensor->nbytes() : 0;
  return b;
}

size_t Model::decode_bytes_per_token() const {
  // what is stored, less what a token does not read: an untied embedding table (one row of it) and
  // the experts it does not choose
  double unread = config.tie_word_embeddings ? 0.0 : double(weights.tok_embd.nbytes());
  if (config.is_moe()) {
    const double unchosen = 1.0 - double(config.n_expert_used) / double(config.n_expert);
    for (const LayerWeights& l : weights.layers)
      for (const std::vector<Tensor>* ex : {&l.exp_gate, &l.exp_up, &l.exp_down, &l.exp_gate_b, &l.exp_up_b, &l.exp_down_b})
        for (const Tensor& t : *ex) unread += unchosen * double(t.defined() ? t.nbytes() : 0);
  }
  return stored_bytes() - size_t(std::llround(unread));
}

size_t Model::held_bytes() const {
  size_t b = stored_bytes() + prepared_bytes;
  for (const Tensor& t : adapters) b += t.nbytes();
  return b;
}

void Model::prepare_weights() {
  auto prepare = [this](Tensor& t) {
    if (!t.defined() || t.ndim() != 2 || t.prepared()) return;
    if (auto p = prepare_weight(t.raw(), t.dtype(), t.dim(0), t.dim(1))) {
      prepared_bytes += distill::prepared_bytes(*p);
      t.set_prepared(std::move(p));
    }
  };
  for (LayerWeights& l : weights.layers) {
    for (Tensor* t : {&l.wq, &l.wk, &l.wv, &l.wo, &l.w_gate, &l.w_up, &l.w_down, &l.router}) prepare(*t);
    for (std::vector<Tensor>* ex : {&l.exp_gate, &l.exp_up, &l.exp_down})
      for (Tensor& t : *ex) prepare(t);
  }
  prepare(weights.lm_head);  // (the embedding's handle when tied: the lookup reads the original)
}

void Model::save(const std::string& dir) const {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) fail("{}: cannot create directory: {}", dir, ec.message());
  SafetensorsWriter writer;
  if (config.model_type == "gpt_oss") {
    add_gpt_oss_hf_tensors(config, weights, writer);  // the release layout, experts in MXFP4
  } else {
    ModelWeights w = weights;  // handles only; list_params needs mutable refs
    for (const ParamRef& p : list_params(config, w)) writer.add(p.name, *p.tensor);
  }
  writer.set_metadata("format", "pt");  // what transformers expects of a PyTorch checkpoint
  writer.write((fs::path(dir) / "model.safetensors").string());
  config.save((fs::path(dir) / "config.json").string());
}

}  // namespace distill
