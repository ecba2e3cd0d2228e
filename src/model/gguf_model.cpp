#include "model/gguf_model.h"

#include "core/error.h"
#include "formats/gguf.h"
#include "model/arch/arch.h"
#include "model/weights.h"

#include <nlohmann/json.hpp>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <regex>

namespace distill {

using json = nlohmann::json;

bool is_gguf_file(const std::string& path) {
  if (!std::filesystem::is_regular_file(path)) return false;
  std::ifstream in(path, std::ios::binary);
  char magic[4] = {};
  in.read(magic, 4);
  return in && std::memcmp(magic, "GGUF", 4) == 0;
}

std::string gguf_tensor_name(const std::string& hf, const std::string& arch) {
  static const std::pair<const char*, const char*> top[] = {
      {"model.embed_tokens.weight", "token_embd.weight"}, {"model.norm.weight", "output_norm.weight"}, {"lm_head.weight", "output.weight"}};
  for (const auto& [h, g] : top)
    if (hf == h) return g;
  static const std::pair<const char*, const char*> layer[] = {
      {"input_layernorm.weight", "attn_norm.weight"},      {"self_attn.q_proj.", "attn_q."},
      {"self_attn.k_proj.", "attn_k."},                    {"self_attn.v_proj.", "attn_v."},
      {"self_attn.o_proj.", "attn_output."},               {"self_attn.q_norm.weight", "attn_q_norm.weight"},
      {"self_attn.k_norm.weight", "attn_k_norm.weight"},   {"post_attention_layernorm.weight", "ffn_norm.weight"},
      {"mlp.gate_proj.", "ffn_gate."},                     {"mlp.up_proj.", "ffn_up."},
      {"mlp.down_proj.", "ffn_down."},                     {"mlp.gate.", "ffn_gate_inp."},
      {"self_attn.sinks", "attn_sinks.weight"}};
  static const std::regex re(R"(model\.layers\.(\d+)\.(.*))");
  std::smatch m;
  if (std::regex_match(hf, m, re)) {
    const std::string rest = m[2];
    // gpt-oss calls the norm before its experts post_attention_norm (ffn_norm elsewhere)
    if (arch == "gpt-oss" && rest == "post_attention_layernorm.weight") return "blk." + std::string(m[1]) + ".post_attention_norm.weight";
    for (const auto& [h, g] : layer)
      if (rest.rfind(h, 0) == 0) return "blk." + std::string(m[1]) + "." + g + rest.substr(std::strlen(h));
  }
  fail("no GGUF name for the tensor '{}'", hf);
}

bool gguf_expert_tensor(const std::string& hf, std::string* stacked, int64_t* expert) {
  static const std::regex re(R"(model\.layers\.(\d+)\.mlp\.experts\.(\d+)\.(gate|up|down)_proj\.(weight|bias))");
  std::smatch m;
  if (!std::regex_match(hf, m, re)) return false;
  *stacked = "blk." + std::string(m[1]) + ".ffn_" + std::string(m[3]) + "_exps." + std::string(m[4]);
  *expert = std::stoll(m[2]);
  return true;
}

std::string gguf_arch(const ModelConfig& c) { return arch_of(c.model_type).gguf_arch; }

bool gguf_permutes_qk(const std::string& arch) { return arch_of_gguf(arch).gguf_permutes_qk; }

char gguf_qk_tensor(const std::string& name) {
  if (name.find(".attn_q.") != std::string::npos) return 'q';
  if (name.find(".attn_k.") != std::string::npos) return 'k';
  return 0;
}

Tensor permute_qk_rows(const Tensor& w, int64_t n_head, bool to_gguf) {
  const int64_t rows = w.dim(0);
  if (n_head <= 0 || rows % (2 * n_head) != 0) fail("cannot permute {} rows over {} heads", rows, n_head);
  const int64_t hd = rows / n_head, half = hd / 2;
  const size_t row_bytes = w.nbytes() / size_t(rows);
  Tensor out = Tensor::zeros(w.dtype(), w.shape());
  const auto* src = static_cast<const char*>(w.raw());
  auto* dst = static_cast<char*>(out.raw());
  for (int64_t h = 0; h < n_head; ++h)
    for (int64_t i = 0; i < half; ++i)
      for (int64_t j = 0; j < 2; ++j) {
        const int64_t hf_row = h * hd + j * half + i;  // rotate-half: pair (i, i + d/2)
        const int64_t gg_row = h * hd + 2 * i + j;     // interleaved: pair (2i, 2i + 1)
        const int64_t from = to_gguf ? hf_row : gg_row, to = to_gguf ? gg_row : hf_row;
        std::memcpy(dst + size_t(to) * row_bytes, src + size_t(from) * row_bytes, row_bytes);
      }
  return out;
}

namespace {

// config.json fields from the architecture's GGUF keys.
json config_from_gguf(const GgufFile& g, const std::string& arch) {
  auto key = [&](const char* k) { return arch + "." + k; };
  const GgufTensorInfo* embd = g.find_tensor("token_embd.weight");
  if (!embd || embd->shape.size() != 2) fail("{}: no 2-D token_embd.weight tensor", g.path());
  json j = {{"model_type", arch_of_gguf(arch).model_type},
            {"vocab_size", embd->shape[0]},
            {"hidden_size", g.get_int(key("embedding_length"))},
            {"intermediate_size", g.find(key("feed_forward_length")) ? g.get_int(key("feed_forward_length"))
                                                                       : g.get_int(key("expert_feed_forward_length"))},
            {"num_hidden_layers", g.get_int(key("block_count"))},
            {"num_attention_heads", g.get_int(key("attention.head_count"))},
            {"rms_norm_eps", g.get_number(key("attention.layer_norm_rms_epsilon"))},
            {"tie_word_embeddings", g.find_tensor("output.weight") == nullptr},
            {"torch_dtype", "float32"}};
  j["num_key_value_heads"] = g.find(key("attention.head_count_kv")) ? g.get_int(key("attention.head_count_kv")) : j["num_attention_heads"].get<int64_t>();
  if (g.find(key("attention.key_length"))) j["head_dim"] = g.get_int(key("attention.key_length"));
  if (g.find(key("rope.freq_base"))) j["rope_theta"] = g.get_number(key("rope.freq_base"));
  if (g.find(key("context_length"))) j["max_position_embeddings"] = g.get_int(key("context_length"));
  if (g.find(key("rope.scaling.type"))) {
    const std::string t = g.get_string(key("rope.scaling.type"));
    if (t == "linear") {
      j["rope_scaling"] = {{"rope_type", "linear"}, {"factor", g.get_number(key("rope.scaling.factor"))}};
    } else if (t == "yarn") {  // llama.cpp rounds the band's edges to whole dimensions (truncate)
      j["rope_scaling"] = {{"rope_type", "yarn"}, {"factor", g.get_number(key("rope.scaling.factor"))},
                           {"original_max_position_embeddings", g.get_int(key("rope.scaling.original_context_length"))},
                           {"truncate", true}};
      if (g.find(key("rope.scaling.yarn_beta_fast"))) j["rope_scaling"]["beta_fast"] = g.get_number(key("rope.scaling.yarn_beta_fast"));
      if (g.find(key("rope.scaling.yarn_beta_slow"))) j["rope_scaling"]["beta_slow"] = g.get_number(key("rope.scaling.yarn_beta_slow"));
    } else if (t != "none") {
      fail("{}: {} '{}' is not supported (linear and yarn are)", g.path(), key("rope.scaling.type"), t);
    }
  }
  if (const auto read_gguf = arch_of_gguf(arch).read_gguf) read_gguf(g, j);
  if (const GgufValue* v = g.find("tokenizer.ggml.bos_token_id")) j["bos_token_id"] = v->as_int();
  if (const GgufValue* v = g.find("tokenizer.ggml.eos_token_id")) j["eos_token_id"] = v->as_int();
  return j;
}

}  // namespace

ModelConfig gguf_model_config(const GgufFile& g) {
  const std::string arch = g.get_string("general.architecture");
  with_context(g.path(), [&] { arch_of_gguf(arch); });  // refuses an unknown one, naming the known
  return ModelConfig::from_json(config_from_gguf(g, arch), g.path());
}

Model load_gguf_model(const std::string& path) {
  const GgufFile g = GgufFile::open(path);
  const std::string arch = g.get_string("general.architecture");
  Model m;
  m.config = gguf_model_config(g);
  const ModelConfig& c = m.config;
  for (ParamRef& p : list_params(c, m.weights)) {
    std::string stacked;
    int64_t expert = 0;
    if (gguf_expert_tensor(p.name, &stacked, &expert)) {  // a view of its expert in the stacked tensor
      const GgufTensorInfo* info = g.find_tensor(stacked);
      Shape want{c.n_expert};
      want.insert(want.end(), p.shape.begin(), p.shape.end());
      if (!info) fail("{}: tensor '{}' is missing ({} with {} layers needs it)", path, stacked, arch, c.n_layer);
      if (info->shape != want)
        fail("{}: tensor '{}' has shape {} but the metadata implies {}", path, stacked, shape_str(info->shape), shape_str(want));
      Tensor t = g.tensor(*info).subview(expert * shape_numel(p.shape), p.shape);
      if (!p.is_matrix) t = t.dtype() == DType::F32 ? t : t.to(DType::F32);  // expert biases
      *p.tensor = t;
      continue;
    }
    const std::string name = gguf_tensor_name(p.name, arch);
    const GgufTensorInfo* info = g.find_tensor(name);
    if (!info) fail("{}: tensor '{}' is missing ({} with {} layers needs it)", path, name, arch, c.n_layer);
    if (info->shape != p.shape)
      fail("{}: tensor '{}' has shape {} but the metadata implies {}", path, name, shape_str(info->shape), shape_str(p.shape));
    Tensor t = g.tensor(*info);
    if (!p.is_matrix && dtype_is_quantized(t.dtype())) fail("{}: tensor '{}' is a quantized vector", path, name);
    if (!p.is_matrix) t = t.dtype() == DType::F32 ? t : t.to(DType::F32);
    if (const char qk = gguf_qk_tensor(name); qk && gguf_permutes_qk(arch))
      t = permute_qk_rows(t, qk == 'q' ? c.n_head : c.n_kv_head, /*to_gguf=*/false);
    *p.tensor = t;
  }
  const std::string extra = fmt::format("blk.{}.", c.n_layer);
  for (const GgufTensorInfo& t : g.tensors())
    if (t.name.compare(0, extra.size(), extra) == 0)
      fail("{}: tensor '{}' belongs to a layer past block_count = {}", path, t.name, c.n_layer);
  tie_lm_head(c, m.weights);
  m.inv_freq = c.rope_inv_freq();
  if (const GgufTensorInfo* rf = g.find_tensor("rope_freqs.weight")) {  // Llama 3 scaling, precomputed
    if (rf->shape != Shape{int64_t(m.inv_freq.size())} || rf->dtype != DType::F32)
      fail("{}: rope_freqs.weight must be f32 [{}]", path, m.inv_freq.size());
    const float* f = g.tensor(*rf).data<float>();
    for (size_t i = 0; i < m.inv_freq.size(); ++i) m.inv_freq[i] /= f[i];
  }
  return m;
}

}  // namespace distill
