#include "model/memory_plan.h"

#include "core/error.h"
#include "core/progress.h"
#include "formats/checkpoint.h"
#include "formats/gguf.h"
#include "kernels/kernels.h"
#include "model/gguf_model.h"
#include "model/kv_cache.h"

#include <fmt/format.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <vector>

namespace distill {

namespace {

struct StoredTensor {
  std::string name;
  DType dtype;
  Shape shape;
  size_t nbytes;
};

bool ends_with(const std::string& s, const std::string& tail) {
  return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

// Adds what loading does with each stored tensor to the plan.
void plan_weights(MemoryPlan& p, const std::vector<StoredTensor>& tensors, bool gguf, bool permutes_qk) {
  bool has_output = false;
  for (const StoredTensor& t : tensors) has_output |= t.name == "output.weight" || t.name == "lm_head.weight";
  for (const StoredTensor& t : tensors) {
    const bool vector = t.shape.size() == 1 || ends_with(t.name, "bias");
    if (vector) {  // used in place when f32, else widened to f32 into the model's memory
      if (t.dtype == DType::F32) p.mapped += t.nbytes;
      else p.copied += size_t(shape_numel(t.shape)) * 4;
      continue;
    }
    const bool repacked = !gguf && p.config.model_type == "gpt_oss" && (ends_with(t.name, "_blocks") || ends_with(t.name, "_scales"));
    const bool permuted = gguf && permutes_qk && gguf_qk_tensor(t.name);
    (repacked || permuted ? p.copied : p.mapped) += t.nbytes;
    const bool lookup_only = (t.name == "token_embd.weight" || t.name == "model.embed_tokens.weight") && has_output;
    if (lookup_only || t.shape.size() < 2) continue;
    const int64_t n_stack = t.shape.size() == 3 ? t.shape[0] : 1;  // a GGUF expert stack: one matrix per expert
    p.prepared += size_t(n_stack) * prepared_bytes_for(t.dtype, t.shape[t.shape.size() - 2], t.shape.back());
  }
}

}  // namespace

MemoryPlan plan_memory(const std::string& path, int64_t n_ctx, int64_t n_slots, DType kv) {
  MemoryPlan p;
  std::vector<StoredTensor> tensors;
  const bool gguf = is_gguf_file(path);
  bool permutes = false;
  if (gguf) {
    const GgufFile g = GgufFile::open(path);
    p.config = gguf_model_config(g);
    permutes = gguf_permutes_qk(g.get_string("general.architecture"));
    for (const GgufTensorInfo& t : g.tensors()) tensors.push_back({t.name, t.dtype, t.shape, t.nbytes});
  } else {
    if (!std::filesystem::is_directory(path)) fail("{}: not a model directory or GGUF file", path);
    p.config = ModelConfig::from_file((std::filesystem::path(path) / "config.json").string());
    const TensorStore store = TensorStore::open_dir(path);
    for (const std::string& name : store.names()) {
      const Tensor t = store.get(name);
      tensors.push_back({name, t.dtype(), t.shape(), t.nbytes()});
    }
  }
  plan_weights(p, tensors, gguf, permutes);
  const ModelConfig& c = p.config;
  p.n_ctx = std::max<int64_t>(1, std::min(n_ctx, c.max_position_embeddings > 0 ? c.max_position_embeddings : n_ctx));
  p.n_slots = n_slots;
  p.kv_type = kv;
  p.kv_cache = kv_cache_bytes(c, n_slots, p.n_ctx, kv);
  const int64_t T = std::min<int64_t>(p.n_ctx * n_slots, 512);
  const int64_t ff = std::max(c.n_ff, c.n_ff_expert * std::max<int64_t>(1, c.n_expert_used));
  p.buffers = size_t(T * (3 * c.n_embd + 2 * c.q_dim() + 2 * c.kv_dim() + 2 * ff) + n_slots * (c.n_embd + c.n_vocab)) * 4;
  return p;
}

bool plan_allows_panels(const MemoryPlan& p, size_t avail) { return p.prepared == 0 || avail == 0 || p.total() <= avail; }

std::string describe(const MemoryPlan& p) {
  int64_t windowed = 0;
  for (int64_t il = 0; il < p.config.n_layer; ++il) windowed += kv_rows_per_slot(p.config, il, p.n_ctx) < p.n_ctx;
  std::string s = fmt::format("weights {} mapped from the file", human_bytes(double(p.mapped)));
  if (p.copied > 0) s += fmt::format(" + {} copied or repacked at load", human_bytes(double(p.copied)));
  if (p.prepared > 0)
    s += fmt::format(" + {} of int8 panels for the {} kernels", human_bytes(double(p.prepared)), kernel_variant_name(active_kernel_variant()));
  s += fmt::format("; KV cache {} ({} × {} positions, {}", human_bytes(double(p.kv_cache)), p.n_slots, p.n_ctx, dtype_name(p.kv_type));
  if (windowed > 0) s += fmt::format("; {} of {} layers keep a {}-position window", windowed, p.config.n_layer, p.config.sliding_window);
  s += fmt::format("); buffers {} → about {}", human_bytes(double(p.buffers)), human_bytes(double(p.total())));
  if (const size_t avail = available_memory()) s += fmt::format(" of {} available", human_bytes(double(avail)));
  return s;
}

size_t available_memory() {
  std::ifstream f("/proc/meminfo");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("MemAvailable:", 0) == 0) {
      std::istringstream in(line.substr(13));
      size_t kb = 0;
      in >> kb;
      return kb * 1024;
    }
  return 0;
}

}  // namespace distill
