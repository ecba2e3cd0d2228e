// The OpenAI request bodies the server accepts — POST /v1/chat/completions and /v1/completions —
// parsed and validated into one GenerationRequest. Unknown fields are ignored (clients send many);
// a field of the wrong type or out of range is an ApiError carrying the HTTP status and the
// OpenAI error object ({"error": {"message", "type", "param", "code"}}) that SDKs turn into their
// typed errors.
#pragma once

#include "sample/sampler.h"
#include "tokenizer/chat_template.h"

#include <nlohmann/json_fwd.hpp>

#include <stdexcept>
#include <string>
#include <vector>

namespace distill {

struct ApiError : std::runtime_error {
  ApiError(int status, std::string type, std::string message, std::string param = "", std::string code = "")
      : std::runtime_error(message), status(status), type(std::move(type)), param(std::move(param)), code(std::move(code)) {}
  int status;
  std::string type;   // invalid_request_error | authentication_error | permission_error | rate_limit_error | ...
  std::string param;  // the offending field, if any
  std::string code;   // e.g. model_not_found, context_length_exceeded
  double retry_after_s = 0;  // sent as Retry-After (429, 503)
};

// Shorthand for a 400 invalid_request_error naming the field.
ApiError invalid_field(const std::string& param, const std::string& message);

struct ServerLimits {
  int64_t n_ctx = 4096;     // positions per slot: prompt + completion
  int max_n = 16;           // choices per request
  int max_top_logprobs = 20;
  int max_stop = 4;         // stop strings (OpenAI allows 4)
};

struct GenerationRequest {
  bool chat = false;
  std::string model;
  std::vector<ChatMessage> messages;       // chat
  // completions: one or more prompts, each as text or as token ids (prompt_ids[i] non-empty)
  std::vector<std::string> prompts;
  std::vector<std::vector<int32_t>> prompt_ids;
  int64_t max_tokens = -1;                 // -1: until the context is full (chat) — completions default 16
  SamplerSettings sampler;                 // OpenAI defaults: temperature 1, top_p 1, no top-k / min-p
  bool has_seed = false;
  std::vector<std::string> stop;
  int n = 1;
  bool stream = false, include_usage = false;
  bool logprobs = false;                   // chat: logprobs of the sampled tokens
  int top_logprobs = 0;                    // chat: alternatives per position; completions: `logprobs: k`
  bool echo = false;                       // completions: the prompt is part of the choice text
  std::string reasoning_effort;            // chat: low | medium | high (harmony models), "" = default
  std::string user;
};

// Throws ApiError for anything a client got wrong.
GenerationRequest parse_chat_request(const nlohmann::json& body, const ServerLimits& limits);
GenerationRequest parse_completion_request(const nlohmann::json& body, const ServerLimits& limits);

// {"error": {...}} for an ApiError.
nlohmann::json error_body(const ApiError& e);

}  // namespace distill
