// The OpenAI response shapes, built from finished or in-progress GenerationJobs: chat completion
// objects and chunks (logprobs as {"content": [{token, logprob, bytes, top_logprobs}]}), legacy
// text completions and chunks (logprobs as {tokens, token_logprobs, top_logprobs, text_offset}),
// and usage. Token strings may hold part of a UTF-8 character: "bytes" carries the exact bytes and
// JSON output replaces invalid sequences (dump_json).
#pragma once

#include "generate/scheduler.h"

#include <nlohmann/json.hpp>

#include <string>

namespace distill {

// Serialises with invalid UTF-8 replaced by U+FFFD (model output can split characters).
std::string dump_json(const nlohmann::json& j);

struct ResponseMeta {
  std::string id;           // chatcmpl-… / cmpl-…
  int64_t created = 0;      // unix seconds
  std::string model;
  std::string fingerprint;  // system_fingerprint
};

std::string new_response_id(const char* prefix);

// Chat: one content entry per token: token (text), logprob, bytes (exact, concatenating to the
// content), top_logprobs; and, as an extension, the token "id" (of the vocabulary whose
// fingerprint is the response's system_fingerprint) so that a client with the same vocabulary
// loses nothing. `starts_text`: tokens[0] is the first of the completion.
nlohmann::json chat_logprobs_content(const Tokenizer& tok, const std::vector<TokenLogprob>& tokens, bool starts_text);

// Legacy completions logprobs for `tokens`, offsets starting at text_offset (advanced).
// Prompt tokens without a score (the first) get nulls. Extensions (a text-keyed top_logprobs
// object loses ids, and two tokens with one text): "token_ids" and "top_logprobs_ids" — per
// token, [[id, logprob], …] likeliest first — in the vocabulary system_fingerprint names.
struct LegacyLogprobs {
  nlohmann::json tokens = nlohmann::json::array(), token_logprobs = nlohmann::json::array(),
                 top_logprobs = nlohmann::json::array(), text_offset = nlohmann::json::array(),
                 token_ids = nlohmann::json::array(), top_logprobs_ids = nlohmann::json::array();
  void add(const Tokenizer& tok, int32_t id, const TokenLogprob* score, int64_t* offset);
  nlohmann::json to_json() const;
};

nlohmann::json usage_json(int64_t prompt_tokens, int64_t completion_tokens);

}  // namespace distill
