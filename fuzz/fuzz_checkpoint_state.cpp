// A training checkpoint's state.json (step, epoch, data cursor, the settings it was made with), as
// `distill train --resume` reads it. The tensors beside it go through the safetensors target.
#include "fuzz_common.h"
#include "train/train_checkpoint.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const nlohmann::json settings = {{"lr", 0.001}, {"batch", 4}, {"loss", "kd"}};
  distill::fuzz::expect_clean([&] {
    int64_t adamw = -1;
    const distill::TrainState st =
        distill::parse_train_state(std::string_view(reinterpret_cast<const char*>(data), size), settings, &adamw);
    if (st.step < 0 || st.epoch < 0 || st.cursor < 0 || adamw < 0) std::abort();
  });
  return 0;
}
