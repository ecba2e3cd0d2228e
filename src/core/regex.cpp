#define PCRE2_CODE_UNIT_WIDTH 8
#include "core/regex.h"

#include "core/error.h"

#include <pcre2.h>

#include <memory>

namespace distill {

struct Regex::Impl {
  pcre2_code* code = nullptr;
  ~Impl() {
    if (code) pcre2_code_free(code);
  }
};

Regex::Regex(const std::string& pattern) : impl_(std::make_unique<Impl>()) {
  int err = 0;
  PCRE2_SIZE offset = 0;
  impl_->code = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), PCRE2_UTF | PCRE2_UCP,
                              &err, &offset, nullptr);
  if (!impl_->code) {
    PCRE2_UCHAR msg[256];
    pcre2_get_error_message(err, msg, sizeof msg);
    fail("regex '{}': {} at offset {}", pattern, reinterpret_cast<const char*>(msg), offset);
  }
  pcre2_jit_compile(impl_->code, PCRE2_JIT_COMPLETE);  // optional speed-up; falls back to the interpreter
}

Regex::~Regex() = default;

std::vector<std::pair<size_t, size_t>> Regex::find_all(std::string_view text) const {
  std::vector<std::pair<size_t, size_t>> out;
  // Match data is per call: the tokenizer may be used from several threads.
  std::unique_ptr<pcre2_match_data, void (*)(pcre2_match_data*)> owner(
      pcre2_match_data_create_from_pattern(impl_->code, nullptr), pcre2_match_data_free);
  pcre2_match_data* md = owner.get();
  if (!md) fail("regex: out of memory for match data");
  size_t pos = 0;
  while (pos <= text.size()) {
    // The input was sanitised to valid UTF-8 beforehand, so the per-call UTF check is skipped.
    const int rc = pcre2_match(impl_->code, reinterpret_cast<PCRE2_SPTR>(text.data()), text.size(), pos,
                               PCRE2_NO_UTF_CHECK, md, nullptr);
    if (rc == PCRE2_ERROR_NOMATCH) break;
    if (rc < 0) {
      // A match or depth limit hit is an error, not "no match": the text would be split differently.
      PCRE2_UCHAR msg[256];
      pcre2_get_error_message(rc, msg, sizeof msg);
      fail("regex match failed at byte {} of a {}-byte text: {}", pos, text.size(), reinterpret_cast<const char*>(msg));
    }
    const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
    const size_t b = ov[0], e = ov[1];
    if (e == b) {
      // empty match: step over one character and try again
      if (b >= text.size()) break;
      pos = b + 1;
      while (pos < text.size() && (static_cast<unsigned char>(text[pos]) & 0xc0) == 0x80) ++pos;
      continue;
    }
    out.push_back({b, e});
    pos = e;
  }
  return out;
}

}  // namespace distill
