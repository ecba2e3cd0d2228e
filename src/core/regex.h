// A compiled PCRE2 regular expression (UTF-8, Unicode properties, JIT where available), used by
// the Split pre-tokenizer and Replace stages. Patterns are the Oniguruma/fancy-regex dialect of
// tokenizer.json, which PCRE2 accepts (\p{L}, (?i:...), lookahead).
#pragma once

#include <memory>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace distill {

class Regex {
public:
  // Throws distill::Error with PCRE2's message and the offset in the pattern.
  explicit Regex(const std::string& pattern);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  // Every non-overlapping match as [begin, end) byte offsets, left to right.
  std::vector<std::pair<size_t, size_t>> find_all(std::string_view text) const;

private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace distill
