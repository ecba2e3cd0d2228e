// Architecture hooks: what differs between the model_types one shared decoder runs. Each entry
// sets only the fields that differ from plain Llama; everything else is common.
#pragma once

#include "model/config.h"

#include <nlohmann/json.hpp>

#include <string>
#include <vector>

namespace distill {

// Applies the architecture's defaults and flags for config.model_type. Throws for an unknown
// model_type (listing the known ones) and for features of that architecture we do not run.
void apply_arch_hooks(const nlohmann::json& j, ModelConfig& c);
std::vector<std::string> supported_model_types();

}  // namespace distill
