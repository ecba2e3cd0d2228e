#include "model/lora.h"

#include "core/atomic_file.h"
#include "core/error.h"
#include "formats/json_fields.h"
#include "formats/safetensors.h"

#include <cblas.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <set>

namespace distill {

namespace fs = std::filesystem;
using nlohmann::json;

float LoraConfig::scale() const { return rslora ? alpha / std::sqrt(float(rank)) : alpha / float(rank); }

json LoraConfig::to_json() const { return {{"rank", rank}, {"alpha", alpha}, {"rslora", rslora}, {"targets", targets}}; }

const std::vector<std::string>& lora_modules() {
  static const std::vector<std::string> names = {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"};
  return names;
}

std::vector<std::string> parse_lora_targets(const std::string& text) {
  if (text == "all-linear" || text == "all") return lora_modules();
  std::vector<std::string> out;
  size_t start = 0;
  while (start <= text.size()) {
    const size_t comma = std::min(text.find(',', start), text.size());
    const std::string name = text.substr(start, comma - start);
    if (std::find(lora_modules().begin(), lora_modules().end(), name) == lora_modules().end())
      fail("--lora-targets: unknown module '{}' (known: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, or all-linear)",
           name);
    if (std::find(out.begin(), out.end(), name) == out.end()) out.push_back(name);
    start = comma + 1;
  }
  return out;
}

namespace {

LoraAdapter* adapter_slot(LayerAdapters& l, const std::string& module) {
  LoraAdapter* slots[] = {&l.q_proj, &l.k_proj, &l.v_proj, &l.o_proj, &l.gate_proj, &l.up_proj, &l.down_proj};
  for (size_t i = 0; i < lora_modules().size(); ++i)
    if (lora_modules()[i] == module) return slots[i];
  fail("internal: no LoRA slot for module '{}'", module);
}

}  // namespace

std::vector<LoraTarget> lora_targets(const ModelConfig& c, ModelWeights& w, const std::vector<std::string>& modules) {
  if (c.is_moe()) fail("LoRA adapters on a mixture of experts ({}) are not supported; a dense model is", c.model_type);
  std::vector<LoraTarget> out;
  for (const ParamRef& p : list_params(c, w)) {
    if (!p.is_matrix || p.name.rfind("model.layers.", 0) != 0) continue;
    const std::string path = p.name.substr(0, p.name.size() - std::string(".weight").size());
    const std::string module = path.substr(path.rfind('.') + 1);
    if (std::find(modules.begin(), modules.end(), module) == modules.end()) continue;
    // model.layers.<i>.<self_attn|mlp>.<module>
    const int64_t layer = std::stoll(path.substr(std::string("model.layers.").size()));
    out.push_back({p.name, "base_model.model." + path, p.shape[0], p.shape[1], p.tensor,
                   adapter_slot(w.layers[size_t(layer)].lora, module)});
  }
  if (out.empty()) fail("LoRA: the model has no matrix named by the targets");
  return out;
}

void lora_merge_into(float* w, const float* a, const float* b, int64_t out, int64_t in, int64_t r, float scale) {
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, int(out), int(in), int(r), scale, b, int(r), a, int(in), 1.0f, w,
              int(in));
}

void write_peft_adapter(const std::string& dir, const LoraConfig& cfg, const std::vector<LoraTarget>& targets,
                        const std::vector<const float*>& a, const std::vector<const float*>& b) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) fail("{}: cannot create directory: {}", dir, ec.message());
  SafetensorsWriter st;
  for (size_t i = 0; i < targets.size(); ++i) {
    const LoraTarget& t = targets[i];
    st.add(t.peft_prefix + ".lora_A.weight", Tensor::view(DType::F32, {cfg.rank, t.in}, const_cast<float*>(a[i]), nullptr));
    st.add(t.peft_prefix + ".lora_B.weight", Tensor::view(DType::F32, {t.out, cfg.rank}, const_cast<float*>(b[i]), nullptr));
  }
  st.set_metadata("format", "pt");
  st.write((fs::path(dir) / "adapter_model.safetensors").string());
  // The fields PEFT's LoraConfig reads; the rest take its defaults.
  const json config = {{"peft_type", "LORA"},      {"task_type", "CAUSAL_LM"},   {"base_model_name_or_path", cfg.base_model},
                       {"r", cfg.rank},            {"lora_alpha", cfg.alpha},    {"use_rslora", cfg.rslora},
                       {"target_modules", cfg.targets}, {"lora_dropout", 0.0},   {"bias", "none"},
                       {"fan_in_fan_out", false},  {"inference_mode", true},     {"use_dora", false},
                       {"modules_to_save", nullptr}, {"rank_pattern", json::object()}, {"alpha_pattern", json::object()}};
  const std::string text = config.dump(2) + "\n";
  write_file_atomic((fs::path(dir) / "adapter_config.json").string(), text.data(), text.size());
}

namespace {

LoraConfig read_adapter_config(const std::string& path) {
  const json j = jsonf::parse(read_text_file(path, "adapter config"), path);
  if (!j.is_object()) fail("{}: expected a JSON object", path);
  const std::string type = jsonf::get_string(j, "peft_type", path, "LORA");
  if (type != "LORA") fail("{}: peft_type is '{}'; only LORA adapters are supported", path, type);
  if (jsonf::get_bool(j, "use_dora", path, false)) fail("{}: DoRA adapters (use_dora) are not supported", path);
  if (jsonf::get_bool(j, "fan_in_fan_out", path, false)) fail("{}: fan_in_fan_out adapters (GPT-2 Conv1D) are not supported", path);
  for (const char* key : {"rank_pattern", "alpha_pattern"})
    if (jsonf::has(j, key) && !j[key].is_null() && !j[key].empty())
      fail("{}: per-module {} is not supported", path, key);
  if (jsonf::has(j, "modules_to_save") && !j["modules_to_save"].is_null() && !j["modules_to_save"].empty())
    fail("{}: modules_to_save (fully trained extra modules) is not supported", path);
  const std::string bias = jsonf::get_string(j, "bias", path, "none");
  if (bias != "none") fail("{}: bias '{}' is not supported (\"none\" is)", path, bias);
  LoraConfig cfg;
  cfg.rank = jsonf::get_int(j, "r", path, 1, 1 << 16);
  cfg.alpha = float(jsonf::get_number(j, "lora_alpha", path, double(cfg.rank)));
  cfg.rslora = jsonf::get_bool(j, "use_rslora", path, false);
  cfg.base_model = jsonf::get_string(j, "base_model_name_or_path", path, "");
  return cfg;
}

}  // namespace

LoraConfig apply_peft_adapter(Model& model, const std::string& dir) {
  return with_context(dir, [&] {
    LoraConfig cfg = read_adapter_config((fs::path(dir) / "adapter_config.json").string());
    const SafetensorsFile file = SafetensorsFile::open((fs::path(dir) / "adapter_model.safetensors").string());
    // Every adapted matrix the file holds must be one of the model's; each pair is merged once.
    std::vector<LoraTarget> targets = lora_targets(model.config, model.weights, lora_modules());
    std::set<std::string> used;
    int64_t merged = 0;
    for (LoraTarget& t : targets) {
      const std::string ka = t.peft_prefix + ".lora_A.weight", kb = t.peft_prefix + ".lora_B.weight";
      if (!file.contains(ka) && !file.contains(kb)) continue;
      if (!file.contains(ka) || !file.contains(kb)) fail("adapter_model.safetensors: '{}' has only one of lora_A / lora_B", t.peft_prefix);
      const Tensor a = file.get(ka).to(DType::F32), b = file.get(kb).to(DType::F32);
      if (a.shape() != Shape{cfg.rank, t.in} || b.shape() != Shape{t.out, cfg.rank})
        fail("adapter_model.safetensors: '{}' has A {} and B {}; the model and r = {} need [{}, {}] and [{}, {}]", t.peft_prefix,
             shape_str(a.shape()), shape_str(b.shape()), cfg.rank, cfg.rank, t.in, t.out, cfg.rank);
      const DType stored_as = t.weight->dtype();
      if (stored_as == DType::F32 || stored_as == DType::F16 || stored_as == DType::BF16) {
        // A fresh f32 copy: the stored weights may be mapped read-only from the file.
        const Tensor stored = t.weight->to(DType::F32);
        Tensor w = Tensor::zeros(DType::F32, t.weight->shape());
        std::memcpy(w.raw(), stored.raw(), w.nbytes());
        lora_merge_into(w.data<float>(), a.data<float>(), b.data<float>(), t.out, t.in, cfg.rank, cfg.scale());
        *t.weight = std::move(w);
      } else {
        // owned f32 copies (the file's may be mapped and typed otherwise), kept alive by the model
        Tensor own_a = Tensor::zeros(DType::F32, a.shape()), own_b = Tensor::zeros(DType::F32, b.shape());
        std::memcpy(own_a.raw(), a.raw(), a.nbytes());
        std::memcpy(own_b.raw(), b.raw(), b.nbytes());
        *t.adapter = LoraAdapter{own_a.data<float>(), own_b.data<float>(), cfg.rank, cfg.scale()};
        model.adapters.push_back(std::move(own_a)), model.adapters.push_back(std::move(own_b));
      }
      used.insert(ka), used.insert(kb);
      ++merged;
    }
    for (const std::string& name : file.names())
      if (!used.count(name)) fail("adapter_model.safetensors: tensor '{}' adapts nothing in this model ({})", name, model.config.model_type);
    if (merged == 0) fail("adapter_model.safetensors holds no LoRA pair");
    for (const LoraTarget& t : targets) {
      const std::string module = t.peft_prefix.substr(t.peft_prefix.rfind('.') + 1);
      if (used.count(t.peft_prefix + ".lora_A.weight") &&
          std::find(cfg.targets.begin(), cfg.targets.end(), module) == cfg.targets.end())
        cfg.targets.push_back(module);
    }
    tie_lm_head(model.config, model.weights);
    model.prepare_weights();
    return cfg;
  });
}

}  // namespace distill
