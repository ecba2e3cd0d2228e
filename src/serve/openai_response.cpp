#include "serve/openai_response.h"

#include <fmt/format.h>

#include <atomic>
#include <chrono>
#include <random>

namespace distill {

using json = nlohmann::json;

std::string dump_json(const json& j) { return j.dump(-1, ' ', false, json::error_handler_t::replace); }

std::string new_response_id(const char* prefix) {
  static std::atomic<uint64_t> counter{0};
  static const uint64_t salt = std::random_device{}() ^ uint64_t(std::chrono::steady_clock::now().time_since_epoch().count());
  uint64_t x = salt + 0x9E3779B97F4A7C15ull * ++counter;  // distinct per response, not guessable across runs
  x ^= x >> 31, x *= 0xBF58476D1CE4E5B9ull, x ^= x >> 29;
  return fmt::format("{}-{:016x}", prefix, x);
}

namespace {

json bytes_of(const std::string& s) {
  json b = json::array();
  for (unsigned char c : s) b.push_back(int(c));
  return b;
}

std::string token_text(const Tokenizer& tok, int32_t id) { return tok.decode({id}, false); }

}  // namespace

json chat_logprobs_content(const Tokenizer& tok, const std::vector<TokenLogprob>& tokens, bool starts_text) {
  json content = json::array();
  for (size_t i = 0; i < tokens.size(); ++i) {
    const TokenLogprob& t = tokens[i];
    const bool at_start = starts_text && i == 0;
    const std::string s = tok.token_bytes(t.id, at_start);
    json top = json::array();
    for (const auto& [id, lp] : t.top) {
      const std::string ts = tok.token_bytes(id, at_start);
      top.push_back({{"token", ts}, {"logprob", lp}, {"bytes", bytes_of(ts)}, {"id", id}});
    }
    content.push_back({{"token", s}, {"logprob", t.logprob}, {"bytes", bytes_of(s)}, {"id", t.id}, {"top_logprobs", top}});
  }
  return content;
}

void LegacyLogprobs::add(const Tokenizer& tok, int32_t id, const TokenLogprob* score, int64_t* offset) {
  const std::string s = token_text(tok, id);
  tokens.push_back(s);
  token_ids.push_back(id);
  text_offset.push_back(*offset);
  *offset += int64_t(s.size());
  if (!score) {
    token_logprobs.push_back(nullptr);
    top_logprobs.push_back(nullptr);
    top_logprobs_ids.push_back(nullptr);
    return;
  }
  token_logprobs.push_back(score->logprob);
  json top_ids = json::array();
  for (const auto& [alt, lp] : score->top) top_ids.push_back({alt, lp});
  top_logprobs_ids.push_back(std::move(top_ids));
  json top = json::object();
  for (const auto& [alt, lp] : score->top) {
    const std::string key = token_text(tok, alt);
    if (!top.contains(key)) top[key] = lp;  // two ids with the same text: the likelier one
  }
  top_logprobs.push_back(top);
}

json LegacyLogprobs::to_json() const {
  return {{"tokens", tokens}, {"token_logprobs", token_logprobs}, {"top_logprobs", top_logprobs}, {"text_offset", text_offset},
          {"token_ids", token_ids}, {"top_logprobs_ids", top_logprobs_ids}};
}

json usage_json(int64_t prompt_tokens, int64_t completion_tokens) {
  return {{"prompt_tokens", prompt_tokens}, {"completion_tokens", completion_tokens}, {"total_tokens", prompt_tokens + completion_tokens}};
}

}  // namespace distill
