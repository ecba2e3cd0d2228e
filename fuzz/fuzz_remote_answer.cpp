// A remote teacher's response body (chat and legacy completions), parsed and mapped onto a
// byte-level student vocabulary, as `distill label --teacher URL` does with what a server sends.
#include "fuzz_common.h"
#include "teacher/remote_answer.h"
#include "tokenizer/byte_vocab.h"
#include "tokenizer/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const auto files = distill::make_byte_level_tokenizer("the then there abc", 8);
  static const auto tok = distill::Tokenizer::from_json(files.tokenizer_json, files.tokenizer_config_json, "fuzz");
  static const distill::VocabularyByBytes vocab(*tok);
  const std::string_view body(reinterpret_cast<const char*>(data), size);
  for (bool legacy : {false, true})
    distill::fuzz::expect_clean([&] {
      const distill::RemoteAnswer a = distill::parse_remote_answer(body, legacy);
      distill::TeacherRecord r;
      const int64_t soft = distill::answer_to_record(*tok, vocab, a, 3, r);
      if (soft < 0 || size_t(soft) > r.completion.size()) std::abort();
    });
  return 0;
}
