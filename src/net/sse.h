// Server-sent events (the WHATWG event-stream format OpenAI's streaming uses), written once:
// the server frames its chunks with sse_data / sse_comment, and SseParser reads a stream back
// (remote teachers, tests). Only `data:` fields and comments are used by the OpenAI API; other
// fields (event, id, retry) are parsed and ignored.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace distill {

// One event carrying `data`; a multi-line payload becomes one `data:` line per line.
std::string sse_data(std::string_view data);
// A comment line (keep-alives): ignored by clients.
std::string sse_comment(std::string_view text);

// Incremental parser: feed bytes as they arrive, take the data of each complete event.
class SseParser {
public:
  // Appends the data of every event completed by `bytes` to `events` (lines of one event joined
  // by '\n'). Accepts \n, \r\n and \r line ends. Throws distill::Error when a line grows past
  // max_line bytes (a hostile or broken stream).
  void feed(std::string_view bytes, std::vector<std::string>& events);
  explicit SseParser(size_t max_line = size_t(1) << 24) : max_line_(max_line) {}

private:
  void line(std::string_view l, std::vector<std::string>& events);
  std::string partial_;     // an incomplete line
  std::string data_;        // the data of the event being read
  bool have_data_ = false;
  bool last_was_cr_ = false;
  size_t max_line_;
};

}  // namespace distill
