// Server-sent events: what the server writes, the parser reads back, whatever the line endings
// and however the bytes are split; comments are skipped; an endless line is refused.
#include "core/error.h"
#include "net/sse.h"

#include <gtest/gtest.h>

namespace distill {

TEST(Sse, WriterAndParserRoundTripAtEverySplit) {
  const std::vector<std::string> payloads = {R"({"choices":[{"delta":{"content":"hi"}}]})", "two\nlines", "", "[DONE]"};
  std::string stream = sse_comment("keep-alive");
  for (const auto& p : payloads) stream += sse_data(p);
  EXPECT_EQ(sse_data("a\nb"), "data: a\ndata: b\n\n");
  for (size_t cut = 0; cut <= stream.size(); ++cut) {
    SseParser parser;
    std::vector<std::string> events;
    parser.feed(std::string_view(stream).substr(0, cut), events);
    parser.feed(std::string_view(stream).substr(cut), events);
    ASSERT_EQ(events, payloads) << "split at byte " << cut;
  }
}

TEST(Sse, OtherLineEndingsAndFields) {
  SseParser parser;
  std::vector<std::string> events;
  parser.feed("event: x\r\ndata:no-space\r\nid: 3\r\n\r\ndata: cr\r\rretry: 10\n: comment\n\n", events);
  EXPECT_EQ(events, (std::vector<std::string>{"no-space", "cr"}));
}

TEST(Sse, AnEndlessLineIsRefused) {
  SseParser parser(64);
  std::vector<std::string> events;
  EXPECT_THROW(parser.feed("data: " + std::string(100, 'x'), events), Error);
}

}  // namespace distill
