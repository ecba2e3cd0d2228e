#include "generate/text_stream.h"

#include <algorithm>

namespace distill {

namespace {

// Length of the longest suffix of `text` that is a proper prefix of some stop string: text that
// may still turn into a stop string and so must not be shown yet.
size_t held_back(const std::string& text, const std::vector<std::string>& stops) {
  size_t hold = 0;
  for (const std::string& s : stops)
    for (size_t n = std::min(s.empty() ? 0 : s.size() - 1, text.size()); n > hold; --n)
      if (text.compare(text.size() - n, n, s, 0, n) == 0) {
        hold = n;
        break;
      }
  return hold;
}

}  // namespace

std::string StopTextStream::push(int32_t id) {
  if (stopped_) return {};
  pending_ += stream_.push(id);
  // The earliest stop string in the text ends the reply; the text before it is the answer.
  size_t cut = std::string::npos;
  for (const std::string& s : stops_) {
    const size_t at = s.empty() ? std::string::npos : pending_.find(s);
    if (at != std::string::npos) cut = std::min(cut, at);
  }
  if (cut != std::string::npos) {
    stopped_ = true;
    std::string ready = pending_.substr(0, cut);
    pending_.clear();
    return ready;
  }
  const size_t hold = held_back(pending_, stops_);
  std::string ready = pending_.substr(0, pending_.size() - hold);
  pending_.erase(0, pending_.size() - hold);
  return ready;
}

std::string StopTextStream::finish() {
  if (stopped_) return {};
  std::string rest = pending_ + stream_.flush();
  pending_.clear();
  return rest;
}

}  // namespace distill
