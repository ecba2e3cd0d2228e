// distill forward MODEL --ids IDS.safetensors -o OUT.safetensors
// The full causal forward of a batch of token sequences, logits written to a file: a debugging
// tool, and a way to check the engine against another implementation from outside. With
// --targets it also runs the backward and dumps every weight's gradient.
#include "cli/commands.h"
#include "core/error.h"
#include "formats/checkpoint.h"
#include "model/gguf_model.h"
#include "model/decoder.h"
#include "train/losses.h"
#include "train/param_arena.h"
#include "train/training_pass.h"

#include <CLI/CLI.hpp>

#include <chrono>
#include <cstdio>
#include <cstring>
#include <filesystem>

namespace distill {

namespace {

struct ForwardArgs {
  std::string model, ids, out, config, prefix, ids_name = "input_ids", targets;
};

Model load_model_arg(const ForwardArgs& a) {
  if (is_gguf_file(a.model)) return Model::load(a.model);
  if (std::filesystem::is_directory(a.model) && a.config.empty() && a.prefix.empty()) return Model::load(a.model);
  // A single .safetensors file: its config comes from --config or config.json beside it.
  const std::string config = a.config.empty()
      ? (std::filesystem::path(a.model).parent_path() / "config.json").string() : a.config;
  const TensorStore store = std::filesystem::is_directory(a.model) ? TensorStore::open_dir(a.model)
                                                                   : TensorStore::open_file(a.model);
  return Model::from_store(ModelConfig::from_file(config), store, a.prefix);
}

// input ids as int32 [batch, seq]; a 1-D tensor is one sequence; I64 is narrowed.
Tensor read_ids(const std::string& path, const std::string& name) {
  const TensorStore store = TensorStore::open_file(path);
  Tensor ids = store.get(name);
  return with_context(path + ": " + name, [&] {
    if (ids.ndim() == 1) ids = ids.reshaped({1, ids.dim(0)});
    if (ids.ndim() != 2) fail("expected shape [batch, seq], got {}", shape_str(ids.shape()));
    if (ids.dtype() == DType::I32) return ids;
    if (ids.dtype() != DType::I64) fail("expected dtype I32 or I64, got {}", dtype_name(ids.dtype()));
    Tensor narrow = Tensor::zeros(DType::I32, ids.shape());
    for (int64_t i = 0; i < ids.numel(); ++i) {
      const int64_t v = ids.data<int64_t>()[i];
      if (v < INT32_MIN || v > INT32_MAX) fail("id {} at index {} does not fit in int32", v, i);
      narrow.data<int32_t>()[i] = int32_t(v);
    }
    return narrow;
  });
}

// With --targets: the training forward and backward; writes loss and grad.<HF name> too.
void run_forward_backward(Model model, const Tensor& ids, const ForwardArgs& a) {
  const Tensor targets = read_ids(a.targets, "targets");
  if (targets.shape() != ids.shape())
    fail("{}: targets have shape {} but input_ids {}", a.targets, shape_str(targets.shape()), shape_str(ids.shape()));
  ParamArena arena = ParamArena::adopt(model);
  const int64_t B = ids.dim(0), S = ids.dim(1), V = model.config.n_vocab;
  TrainingPass pass(model, B, S);
  const float* logits = with_context(a.ids, [&] { return pass.forward(ids.data<int32_t>()); });
  Tensor logits_out = Tensor::zeros(DType::F32, {B, S, V});
  std::memcpy(logits_out.raw(), logits, logits_out.nbytes());
  Tensor loss = Tensor::zeros(DType::F32, {});
  loss.data<float>()[0] = float(with_context(a.targets, [&] {
    return cross_entropy_forward(logits, targets.data<int32_t>(), B * S, V);
  }));
  Tensor d_logits = Tensor::zeros(DType::F32, {B * S, V});
  cross_entropy_backward(d_logits.data<float>(), logits, targets.data<int32_t>(), B * S, V);
  Tensor grads = arena.new_buffer();
  ModelWeights g = arena.views(grads);
  pass.backward(d_logits.data<float>(), g);
  SafetensorsWriter w;
  w.add("logits", logits_out);
  w.add("loss", loss);
  for (const ParamEntry& e : arena.entries()) w.add("grad." + e.name, grads.subview(int64_t(e.offset), e.shape));
  w.write(a.out);
  std::printf("forward+backward: %lld × %lld tokens, loss %.6f -> %s (logits, loss, %zu grad.* tensors)\n",
              (long long)B, (long long)S, double(loss.data<float>()[0]), a.out.c_str(), arena.entries().size());
}

void run_forward(const ForwardArgs& a) {
  Model model = load_model_arg(a);
  const Tensor ids = read_ids(a.ids, a.ids_name);
  if (!a.targets.empty()) return run_forward_backward(std::move(model), ids, a);
  Decoder decoder(model);
  const auto t0 = std::chrono::steady_clock::now();
  const Tensor logits = with_context(a.ids, [&] { return decoder.forward_full(ids.data<int32_t>(), ids.dim(0), ids.dim(1)); });
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  SafetensorsWriter w;
  w.add("logits", logits);
  w.add("input_ids", ids);
  w.write(a.out);
  const int64_t n = ids.numel();
  std::printf("forward: %lld × %lld tokens in %.3f s (%.0f tokens/s) -> %s %s\n", (long long)ids.dim(0),
              (long long)ids.dim(1), secs, double(n) / secs, a.out.c_str(), shape_str(logits.shape()).c_str());
}

}  // namespace

void register_forward(CLI::App& app) {
  auto args = std::make_shared<ForwardArgs>();
  CLI::App* cmd = app.add_subcommand("forward", "Full causal forward of token ids; logits to a safetensors file");
  cmd->add_option("model", args->model, "Model directory (config.json + *.safetensors), a .safetensors file or a GGUF file")->required();
  cmd->add_option("--ids", args->ids, "safetensors file holding input_ids, int32 [batch, seq]")->required();
  cmd->add_option("-o,--out", args->out, "Output safetensors file (logits f32 [batch, seq, vocab])")->required();
  cmd->add_option("--config", args->config, "config.json, when MODEL is a single .safetensors file");
  cmd->add_option("--prefix", args->prefix, "Prefix of the weight names in MODEL (e.g. 'param.')");
  cmd->add_option("--ids-name", args->ids_name, "Name of the ids tensor")->capture_default_str();
  cmd->add_option("--targets", args->targets,
                  "safetensors file holding targets (int32 [batch, seq], -100 ignored): also writes loss and "
                  "grad.<HF name> of mean cross-entropy for every weight");
  cmd->callback([args] { run_forward(*args); });
}

}  // namespace distill
