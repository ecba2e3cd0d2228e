// Mistral: Llama without biases; sliding_window (if set) limits attention, in inference and
// training alike. GGUF files say "llama".
#include "formats/json_fields.h"
#include "model/arch/arch.h"

namespace distill {

namespace {

void read(const nlohmann::json& j, ModelConfig& c) {
  c.sliding_window = jsonf::get_int(j, "sliding_window", "", 1, int64_t(1) << 24, 0);  // null: no window
}

void write(const ModelConfig& c, nlohmann::json& j) {
  if (c.sliding_window > 0) j["sliding_window"] = c.sliding_window;
}

}  // namespace

extern const ArchDescriptor kMistralArch = {"mistral", "MistralForCausalLM", "llama", true, false, read, write, nullptr, nullptr};

}  // namespace distill
