// Training data JSONL ({"text"}, {"prompt","completion"}, {"messages"}, {"ids","mask"}) with a
// byte-level tokenizer and the ChatML template.
#include "fuzz_common.h"
#include "tokenizer/byte_vocab.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"
#include "train/examples.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const auto files = distill::make_byte_level_tokenizer();
  static const auto tok = distill::Tokenizer::from_json(files.tokenizer_json, files.tokenizer_config_json, "bytes");
  static const auto tmpl = distill::ChatTemplate::by_name("chatml");
  const std::string path = distill::fuzz::input_file(data, size, ".jsonl");
  distill::fuzz::expect_clean([&] { (void)distill::read_examples(path, tok.get(), &tmpl); });
  return 0;
}
