#include "tokenizer/utf8.h"

namespace distill {

namespace {

// Expected total length of a sequence starting with lead byte b (0 = not a lead byte), and the
// allowed range of the second byte (which excludes overlong forms and surrogates).
struct Lead {
  size_t len;
  unsigned char lo, hi;
};

Lead lead_info(unsigned char b) {
  if (b < 0x80) return {1, 0, 0};
  if (b >= 0xc2 && b <= 0xdf) return {2, 0x80, 0xbf};
  if (b == 0xe0) return {3, 0xa0, 0xbf};
  if (b >= 0xe1 && b <= 0xec) return {3, 0x80, 0xbf};
  if (b == 0xed) return {3, 0x80, 0x9f};  // no surrogates
  if (b >= 0xee && b <= 0xef) return {3, 0x80, 0xbf};
  if (b == 0xf0) return {4, 0x90, 0xbf};
  if (b >= 0xf1 && b <= 0xf3) return {4, 0x80, 0xbf};
  if (b == 0xf4) return {4, 0x80, 0x8f};  // not beyond U+10FFFF
  return {0, 0, 0};
}

// Number of bytes from s[i] that form a valid prefix of a sequence (>= 1 if s[i] is a lead byte).
size_t valid_prefix(std::string_view s, size_t i, Lead l) {
  if (l.len <= 1) return l.len;
  size_t n = 1;
  if (i + 1 >= s.size()) return n;
  const unsigned char b1 = static_cast<unsigned char>(s[i + 1]);
  if (b1 < l.lo || b1 > l.hi) return n;
  ++n;
  while (n < l.len && i + n < s.size()) {
    const unsigned char b = static_cast<unsigned char>(s[i + n]);
    if (b < 0x80 || b > 0xbf) break;
    ++n;
  }
  return n;
}

}  // namespace

size_t utf8_valid_length(std::string_view s, size_t i) {
  const Lead l = lead_info(static_cast<unsigned char>(s[i]));
  if (l.len == 0) return 0;
  return valid_prefix(s, i, l) == l.len ? l.len : 0;
}

std::string utf8_sanitize(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  size_t i = 0;
  while (i < s.size()) {
    const Lead l = lead_info(static_cast<unsigned char>(s[i]));
    const size_t n = l.len ? valid_prefix(s, i, l) : 0;
    if (l.len && n == l.len) {
      out.append(s.substr(i, n));
      i += n;
    } else {
      out += "\xef\xbf\xbd";    // U+FFFD for the maximal invalid subpart
      i += n ? n : 1;
    }
  }
  return out;
}

void utf8_append(std::string& out, uint32_t cp) {
  if (cp < 0x80) {
    out += char(cp);
  } else if (cp < 0x800) {
    out += char(0xc0 | (cp >> 6));
    out += char(0x80 | (cp & 0x3f));
  } else if (cp < 0x10000) {
    out += char(0xe0 | (cp >> 12));
    out += char(0x80 | ((cp >> 6) & 0x3f));
    out += char(0x80 | (cp & 0x3f));
  } else {
    out += char(0xf0 | (cp >> 18));
    out += char(0x80 | ((cp >> 12) & 0x3f));
    out += char(0x80 | ((cp >> 6) & 0x3f));
    out += char(0x80 | (cp & 0x3f));
  }
}

uint32_t utf8_next(std::string_view s, size_t& i) {
  const unsigned char b = static_cast<unsigned char>(s[i]);
  const size_t n = b < 0x80 ? 1 : b < 0xe0 ? 2 : b < 0xf0 ? 3 : 4;
  uint32_t cp = n == 1 ? b : n == 2 ? (b & 0x1f) : n == 3 ? (b & 0x0f) : (b & 0x07);
  for (size_t k = 1; k < n && i + k < s.size(); ++k) cp = (cp << 6) | (static_cast<unsigned char>(s[i + k]) & 0x3f);
  i += n;
  return cp;
}

size_t utf8_incomplete_tail(std::string_view s) {
  // Look back at most 3 bytes for a lead byte whose sequence is valid so far but cut short.
  for (size_t back = 1; back <= 3 && back <= s.size(); ++back) {
    const size_t i = s.size() - back;
    const Lead l = lead_info(static_cast<unsigned char>(s[i]));
    if (l.len == 0) continue;  // a continuation byte: keep looking back
    return (l.len > back && valid_prefix(s, i, l) == back) ? back : 0;
  }
  return 0;
}

}  // namespace distill
