#include "net/sse.h"

#include "core/error.h"

namespace distill {

std::string sse_data(std::string_view data) {
  std::string out;
  size_t start = 0;
  for (;;) {
    const size_t nl = data.find('\n', start);
    out += "data: ";
    out += data.substr(start, nl == std::string_view::npos ? std::string_view::npos : nl - start);
    out += '\n';
    if (nl == std::string_view::npos) break;
    start = nl + 1;
  }
  return out + '\n';
}

std::string sse_comment(std::string_view text) { return ": " + std::string(text) + "\n\n"; }

void SseParser::feed(std::string_view bytes, std::vector<std::string>& events) {
  for (const char c : bytes) {
    if (c == '\n' && last_was_cr_) {  // the \n of a \r\n: the line was ended by the \r
      last_was_cr_ = false;
      continue;
    }
    last_was_cr_ = c == '\r';
    if (c == '\n' || c == '\r') {
      line(partial_, events);
      partial_.clear();
      continue;
    }
    partial_ += c;
    if (partial_.size() > max_line_) fail("event stream: a line is longer than {} bytes", max_line_);
  }
}

void SseParser::line(std::string_view l, std::vector<std::string>& events) {
  if (l.empty()) {  // a blank line dispatches the event
    if (have_data_) events.push_back(data_);
    data_.clear(), have_data_ = false;
    return;
  }
  if (l[0] == ':') return;  // comment
  const size_t colon = l.find(':');
  const std::string_view field = l.substr(0, colon);
  std::string_view value = colon == std::string_view::npos ? std::string_view() : l.substr(colon + 1);
  if (!value.empty() && value[0] == ' ') value.remove_prefix(1);
  if (field != "data") return;
  if (have_data_) data_ += '\n';
  data_ += value;
  have_data_ = true;
}

}  // namespace distill
