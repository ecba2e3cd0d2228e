// Chat templates: a prompts-file line ({"messages"} / {"prompt"}) rendered by every family.
#include "fuzz_common.h"
#include "formats/json_fields.h"
#include "tokenizer/chat_template.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  distill::fuzz::expect_clean([&] {
    const auto msgs = distill::prompt_messages(distill::jsonf::parse(text, "line"));
    for (const std::string& name : distill::ChatTemplate::names())
      (void)distill::ChatTemplate::by_name(name).render(msgs, true);
  });
  return 0;
}
