// Training checkpoints: everything needed to continue a run bit for bit — the f32 parameters
// (by HF name), the AdamW moments, the step and data position, and the settings they were made
// with. A checkpoint is a directory written beside its final place and renamed into it, so a kill
// at any moment leaves either the previous checkpoint or the new one, never a mix.
//
//   DIR/model.safetensors      parameters, f32, HF names
//   DIR/optimizer.safetensors  "m" and "v": AdamW moments, flat f32 in the ParamArena's layout
//   DIR/state.json             {"step", "epoch", "cursor", "settings", "format": 1, "step_state"?}
#pragma once

#include "train/adamw.h"
#include "train/param_arena.h"

#include <nlohmann/json.hpp>

#include <string>
#include <string_view>

namespace distill {

struct TrainState {
  int64_t step = 0;    // optimizer steps done
  int64_t epoch = 0;   // data epoch of the next row
  int64_t cursor = 0;  // index of the next row in that epoch's order
  std::string step_state;  // what the step function carries from step to step (e.g. GRPO's curriculum), opaque here
};

// `moments`: AdamW's whole moments (AdamW::full_moments), `adamw_steps` its step count.
void save_train_checkpoint(const std::string& dir, const ParamArena& arena, const AdamW::Moments& moments, int64_t adamw_steps,
                           const TrainState& state, const nlohmann::json& settings);

bool train_checkpoint_exists(const std::string& dir);

// Reads state.json's text: the step, epoch and data cursor (and AdamW's step count), after checking
// that the run-defining `settings` equal the saved ones. Throws distill::Error naming the field.
TrainState parse_train_state(std::string_view text, const nlohmann::json& settings, int64_t* adamw_steps);

// Restores parameters and moments in place; refuses a checkpoint whose model layout or
// run-defining settings differ from `settings` (naming the first difference).
TrainState load_train_checkpoint(const std::string& dir, ParamArena& arena, AdamW& opt,
                                 const nlohmann::json& settings);

}  // namespace distill
