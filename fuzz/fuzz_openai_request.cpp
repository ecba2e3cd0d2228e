// OpenAI request bodies (chat and legacy completions): refused as an ApiError (4xx) or parsed.
#include "fuzz_common.h"
#include "formats/json_fields.h"
#include "serve/openai_request.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  const distill::ServerLimits limits;
  nlohmann::json body;
  try {
    body = nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception&) {  // the server answers 400 before reading fields
    return 0;
  }
  for (bool chat : {true, false}) {
    try {
      const distill::GenerationRequest r = chat ? distill::parse_chat_request(body, limits)
                                                : distill::parse_completion_request(body, limits);
      if (r.max_tokens < -1 || r.max_tokens > limits.n_ctx || r.n < 1 || r.n > limits.max_n) std::abort();
    } catch (const distill::ApiError& e) {
      if (e.status < 400 || e.status >= 500) std::abort();
    } catch (const std::exception& e) {
      std::fprintf(stderr, "foreign exception: %s\n", e.what());
      std::abort();
    }
  }
  return 0;
}
