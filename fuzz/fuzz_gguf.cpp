// GGUF: metadata of every type, tensor infos; every tensor that opens is read whole, and the
// tokenizer metadata is turned into tokenizer.json as `distill run x.gguf` would.
#include "fuzz_common.h"
#include "formats/gguf.h"
#include "tokenizer/gguf_vocab.h"
#include "tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = distill::fuzz::input_file(data, size, ".gguf");
  distill::fuzz::expect_clean([&] {
    const distill::GgufFile g = distill::GgufFile::open(path);
    volatile uint8_t sink = 0;
    for (const auto& info : g.tensors()) {
      const distill::Tensor t = g.tensor(info);
      const auto* p = static_cast<const uint8_t*>(t.raw());
      for (size_t i = 0; i < t.nbytes(); i += 61) sink = sink + p[i];
    }
    if (g.find("tokenizer.ggml.model")) {
      const distill::TokenizerFiles files = distill::tokenizer_files_from_gguf(g);
      (void)distill::Tokenizer::from_json(files.tokenizer_json, files.tokenizer_config_json, "fuzz.gguf");
    }
  });
  return 0;
}
