// tokenizer.json (+ encode/decode of a fixed text when it loads): the file a downloaded model
// repository brings.
#include "fuzz_common.h"
#include "tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  distill::fuzz::expect_clean([&] {
    auto tok = distill::Tokenizer::from_json(text, "", "fuzz");
    const auto ids = tok->encode("Hello, wörld! 123 <|im_start|>x\n", true, true);
    (void)tok->decode(ids, false);
  });
  return 0;
}
