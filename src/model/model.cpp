#include "model/model.h"

#include "core/error.h"
#include "formats/checkpoint.h"
#include "model/gguf_model.h"

#include <filesystem>

namespace distill {

namespace fs = std::filesystem;

Model Model::from_store(const ModelConfig& config, const TensorStore& store, const std::string& prefix) {
  Model m;
  m.config = config;
  m.weights = load_weights(config, store, prefix);
  m.inv_freq = config.rope_inv_freq();
  return m;
}

Model Model::load(const std::string& dir) {
  if (is_gguf_file(dir)) return load_gguf_model(dir);
  if (!fs::is_directory(dir)) fail("{}: not a model directory or GGUF file", dir);
  const ModelConfig config = ModelConfig::from_file((fs::path(dir) / "config.json").string());
  return from_store(config, TensorStore::open_dir(dir));
}

void Model::save(const std::string& dir) const {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) fail("{}: cannot create directory: {}", dir, ec.message());
  ModelWeights w = weights;  // handles only; list_params needs mutable refs
  SafetensorsWriter writer;
  for (const ParamRef& p : list_params(config, w)) writer.add(p.name, *p.tensor);
  writer.set_metadata("format", "pt");  // what transformers expects of a PyTorch checkpoint
  writer.write((fs::path(dir) / "model.safetensors").string());
  config.save((fs::path(dir) / "config.json").string());
}

}  // namespace distill
