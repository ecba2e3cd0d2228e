// A remote teacher's answer (an OpenAI-compatible chat or legacy completions response) read
// field by field, and turned into a student TeacherRecord.
//
// Lossless when the teacher shares the student's vocabulary: a `distill serve` response carries
// the token ids as an extension ("id" in logprobs.content[] and top_logprobs[]) and names its
// tokenizer in system_fingerprint ("distill-" + 8 hex digits of the tokenizer's fingerprint); when
// that matches the student's, the record is the teacher's own tokens and top-k ids.
// Otherwise (another vocabulary: a different model family, or a byte-level student) the teacher's
// distributions are projected onto student tokens on bytes (logprobs.content[].bytes, or the token
// text): where a teacher token starts at the same byte as student token j, each teacher
// alternative is mapped to the student token that its bytes begin with (the longest student
// token that is a prefix of them) and the mass of alternatives mapping to one student token is
// summed; the top k of the result are position j's soft labels. A student token that starts
// inside a teacher token gets the distribution of what follows the bytes before it there: the
// alternatives that begin with those bytes and run past them, renormalised, projected the same
// way (docs/teacher-dataset.md).
#pragma once

#include "formats/teacher_dataset.h"

#include <cstdint>
#include <map>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace distill {

class HttpClient;
class Tokenizer;

// The model to ask an OpenAI-compatible server for: `model` when given, else the only one GET
// /models lists (a server with several is refused, naming them).
std::string choose_model(const HttpClient& client, const std::map<std::string, std::string>& headers, const std::string& model,
                         double timeout_s);

struct RemoteAlternative {
  std::string bytes;
  int32_t id = -1;  // -1: the server did not say
  float logprob = 0;
  bool special = false;  // a control token of the teacher (known for a local teacher; an API does not say)
};

struct RemoteToken {
  std::string bytes;
  int32_t id = -1;
  float logprob = 0;
  std::vector<RemoteAlternative> top;  // the chosen token is usually among them
};

struct RemoteAnswer {
  std::string text;
  bool finished = false;        // finish_reason "stop": the teacher ended its turn
  std::string fingerprint;      // system_fingerprint, "" if absent
  std::vector<RemoteToken> tokens;
};

// Parses a response body. Throws distill::Error naming the field (e.g.
// "choices[0].logprobs.content[3].bytes[2]") when a field the answer needs is missing or of the
// wrong type; optional fields (logprobs, bytes, id, system_fingerprint) may be absent or null.
RemoteAnswer parse_remote_answer(std::string_view body, bool legacy_completions);

// The student's vocabulary by token bytes, for mapping a teacher's alternatives: bytes -> id, in
// the middle of a text and as its first token (a SentencePiece token loses its leading space
// there). Bytes two ids share map to neither. Control tokens apart, by their text.
class VocabularyByBytes {
public:
  explicit VocabularyByBytes(const Tokenizer& tok);
  int32_t find(const std::string& bytes, bool at_start) const;  // -1: none or ambiguous
  // The longest student token that `bytes` begins with (-1: none).
  int32_t longest_prefix(const std::string& bytes, bool at_start) const;
  // The student's control token with this text (-1: none).
  int32_t special(const std::string& text) const;

private:
  std::unordered_map<std::string, int32_t> mid_, start_, special_;
  size_t longest_ = 0;  // bytes of the longest token
};

// A teacher's alternatives at one position projected onto student tokens: each alternative's
// probability goes to the student's control token of the same text if there is one, else (a
// teacher's own control token without a student twin is dropped, not spelled out in bytes) to the
// student token its bytes begin with (the longest such), the mass of
// alternatives reaching one student token summed, the k likeliest kept in ids/logp [k] (padded
// with distinct unused ids at −64 nats when fewer). Returns whether any alternative mapped.
bool project_alternatives(const VocabularyByBytes& vocab, const std::vector<RemoteAlternative>& top, bool at_start, int k,
                          int64_t n_vocab, int32_t* ids, float* logp);

// The same for a student token that starts inside a teacher token, after `prefix` of its bytes:
// the alternatives that begin with the prefix and run past it, their probabilities renormalised
// over them, projected by their remaining bytes (what follows the prefix, given the token goes
// on). False when none does, or when their mass is below what the listed top-k leaves out (mass
// that might continue the prefix too).
bool project_continuation(const VocabularyByBytes& vocab, const std::vector<RemoteAlternative>& top, std::string_view prefix,
                          int k, int64_t n_vocab, int32_t* ids, float* logp);

// Fills r.completion, r.finished and the soft labels (k per position) from the answer. Returns
// the number of positions with soft labels.
int64_t answer_to_record(const Tokenizer& tok, const VocabularyByBytes& vocab, const RemoteAnswer& a, int k, TeacherRecord& r);

}  // namespace distill
