// safetensors: header, offsets, dtypes, shapes; every tensor that opens is read whole.
#include "fuzz_common.h"
#include "formats/safetensors.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = distill::fuzz::input_file(data, size, ".safetensors");
  distill::fuzz::expect_clean([&] {
    const distill::SafetensorsFile f = distill::SafetensorsFile::open(path);
    volatile uint8_t sink = 0;
    for (const std::string& name : f.names()) {
      const distill::Tensor t = f.get(name);
      const auto* p = static_cast<const uint8_t*>(t.raw());
      for (size_t i = 0; i < t.nbytes(); i += 61) sink = sink + p[i];
    }
  });
  return 0;
}
