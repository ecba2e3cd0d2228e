// config.json: every value that could make the math undefined must be refused.
#include "fuzz_common.h"
#include "formats/json_fields.h"
#include "model/config.h"

#include <cmath>

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  distill::fuzz::expect_clean([&] {
    const distill::ModelConfig c = distill::ModelConfig::from_json(distill::jsonf::parse(text, "config.json"), "config.json");
    // What loads must be usable: positive sizes, finite math.
    if (c.n_layer <= 0 || c.n_head <= 0 || c.head_dim <= 0 || c.n_head % c.n_kv_head != 0 || !(c.rope_theta > 0) ||
        !std::isfinite(c.norm_eps))
      std::abort();
    for (float f : c.rope_inv_freq())
      if (!std::isfinite(f)) std::abort();
  });
  return 0;
}
