#include "train/train_checkpoint.h"

#include "core/error.h"
#include "core/atomic_file.h"
#include "formats/json_fields.h"
#include "formats/safetensors.h"

#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>

namespace distill {

namespace fs = std::filesystem;
using nlohmann::json;

bool train_checkpoint_exists(const std::string& dir) { return fs::exists(fs::path(dir) / "state.json"); }

void save_train_checkpoint(const std::string& dir, const ParamArena& arena, const AdamW::Moments& opt_moments, int64_t adamw_steps,
                           const TrainState& state, const json& settings) {
  const fs::path final_dir(dir), tmp_dir = dir + ".tmp", old_dir = dir + ".old";
  std::error_code ec;
  fs::remove_all(tmp_dir, ec);
  fs::create_directories(tmp_dir, ec);
  if (ec) fail("{}: cannot create checkpoint directory: {}", tmp_dir.string(), ec.message());

  // Parameters as f32 views into the arena (no copy).
  Tensor params = Tensor::view(DType::F32, {int64_t(arena.size())}, const_cast<float*>(arena.data()), nullptr);
  SafetensorsWriter model;
  for (const ParamEntry& e : arena.entries()) model.add(e.name, params.subview(int64_t(e.offset), e.shape));
  model.write((tmp_dir / "model.safetensors").string());
  SafetensorsWriter moments;
  moments.add("m", opt_moments.m);
  moments.add("v", opt_moments.v);
  moments.write((tmp_dir / "optimizer.safetensors").string());
  json st = {{"format", 1}, {"step", state.step}, {"epoch", state.epoch}, {"cursor", state.cursor},
             {"adamw_steps", adamw_steps}, {"settings", settings}};
  if (!state.step_state.empty()) st["step_state"] = state.step_state;
  const std::string text = st.dump(2);
  write_file_atomic((tmp_dir / "state.json").string(), text.data(), text.size());

  // Swap directories: old -> .old, tmp -> final, drop .old. A crash between the renames leaves
  // .old (complete) which load falls back to.
  fs::remove_all(old_dir, ec);
  if (fs::exists(final_dir)) fs::rename(final_dir, old_dir);
  fs::rename(tmp_dir, final_dir);
  fs::remove_all(old_dir, ec);
}

TrainState parse_train_state(std::string_view text, const json& settings, int64_t* adamw_steps) {
  const json st = jsonf::parse(text, "state.json");
  if (!st.is_object()) fail("state.json: expected a JSON object, got {}", jsonf::show(st));
  const json& saved = jsonf::get_object(st, "settings", "state.json");
  for (const auto& [key, value] : settings.items()) {
    auto it = saved.find(key);
    if (it == saved.end() || *it != value)
      fail("the checkpoint was written with {} = {}, this run has {} = {}; use the same settings or a new --out", key,
           it == saved.end() ? "(unset)" : jsonf::show(*it), key, value.dump());
  }
  // a setting written only when not at its default (precision, lora, …): absent here, it is the default
  for (const auto& [key, value] : saved.items())
    if (!settings.contains(key))
      fail("the checkpoint was written with {} = {}, this run has the default; use the same settings or a new --out", key,
           jsonf::show(value));
  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  *adamw_steps = jsonf::get_int(st, "adamw_steps", "state.json", 0, kMax);
  return TrainState{jsonf::get_int(st, "step", "state.json", 0, kMax), jsonf::get_int(st, "epoch", "state.json", 0, kMax),
                    jsonf::get_int(st, "cursor", "state.json", 0, kMax), jsonf::get_string(st, "step_state", "state.json", "")};
}

TrainState load_train_checkpoint(const std::string& dir_in, ParamArena& arena, AdamW& opt, const json& settings) {
  std::string dir = dir_in;
  if (!train_checkpoint_exists(dir) && train_checkpoint_exists(dir + ".old")) dir += ".old";
  return with_context(dir, [&] {
    std::ifstream in(fs::path(dir) / "state.json");
    if (!in) fail("state.json: cannot open");
    const std::string text(std::istreambuf_iterator<char>(in), {});
    int64_t adamw_steps = 0;
    const TrainState state = parse_train_state(text, settings, &adamw_steps);
    const SafetensorsFile model = SafetensorsFile::open((fs::path(dir) / "model.safetensors").string());
    for (const ParamEntry& e : arena.entries()) {
      const Tensor t = model.get(e.name);
      if (t.dtype() != DType::F32 || t.shape() != e.shape) fail("tensor '{}' does not match the model", e.name);
      std::memcpy(arena.data() + e.offset, t.raw(), t.nbytes());
    }
    const SafetensorsFile moments = SafetensorsFile::open((fs::path(dir) / "optimizer.safetensors").string());
    const Tensor m = moments.get("m"), v = moments.get("v");
    for (const Tensor* t : {&m, &v})
      if (t->numel() != int64_t(arena.size()) || t->dtype() != DType::F32)
        fail("optimizer.safetensors: '{}' has the wrong size", t == &m ? "m" : "v");
    opt.load_moments(m.data<float>(), v.data<float>(), m.numel());
    opt.set_steps(adamw_steps);
    return state;
  });
}

}  // namespace distill
