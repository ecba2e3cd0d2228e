// UTF-8 helpers for the tokenizer: code point iteration, encoding, and repair of invalid input.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace distill {

// Length in bytes of the valid UTF-8 sequence starting at s[i], or 0 if it is not valid there
// (bad lead byte, bad continuation, overlong form, surrogate, beyond U+10FFFF, or cut short).
size_t utf8_valid_length(std::string_view s, size_t i);

// Replaces every invalid sequence with U+FFFD, one replacement per maximal invalid subpart (the
// WHATWG / Unicode "best practice", which is what JavaScript's TextDecoder and Python's
// errors="replace" do), so tokenizing arbitrary bytes never fails.
std::string utf8_sanitize(std::string_view s);

// Appends the UTF-8 encoding of code point cp.
void utf8_append(std::string& out, uint32_t cp);

// Decodes the code point at s[i] (which must start a valid sequence) and advances i.
uint32_t utf8_next(std::string_view s, size_t& i);

// Number of bytes at the end of s that form an incomplete (but so far valid) UTF-8 sequence:
// what a streaming decoder must hold back until the next token arrives.
size_t utf8_incomplete_tail(std::string_view s);

}  // namespace distill
