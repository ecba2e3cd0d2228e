// Server-sent event streams from a remote teacher, fed in two pieces at an input-chosen cut.
#include "fuzz_common.h"
#include "net/sse.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  const size_t cut = size ? data[0] % (size + 1) : 0;
  distill::fuzz::expect_clean([&] {
    distill::SseParser parser(1 << 16);
    std::vector<std::string> events;
    parser.feed(text.substr(0, cut), events);
    parser.feed(text.substr(cut), events);
    size_t total = 0;
    for (const auto& e : events) total += e.size();
    if (total > size) std::abort();
  });
  return 0;
}
