// StopTextStream: generated token ids in, text that is safe to show out. Text is held back while
// it could still become one of the stop strings (and bytes of an incomplete UTF-8 character until
// the token that completes them arrives); a stop string ends the stream and is not part of the
// text. Used by every streaming front end (run, serve) so they agree to the byte.
#pragma once

#include "tokenizer/tokenizer.h"

#include <string>
#include <vector>

namespace distill {

class StopTextStream {
public:
  StopTextStream(const Tokenizer& tok, std::vector<std::string> stops, bool skip_special = true)
      : stream_(tok, skip_special), stops_(std::move(stops)) {}

  // The text this token makes safe to show (maybe empty). After a stop string is seen,
  // stopped() is true and later pushes return nothing.
  std::string push(int32_t id);
  // The end of the generation (not by a stop string): whatever is still held back.
  std::string finish();
  bool stopped() const { return stopped_; }

private:
  Tokenizer::StreamDecoder stream_;
  std::vector<std::string> stops_;
  std::string pending_;  // decided text not yet handed out (may begin a stop string)
  bool stopped_ = false;
};

}  // namespace distill
