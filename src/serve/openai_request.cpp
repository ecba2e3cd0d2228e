#include "serve/openai_request.h"

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include <charconv>
#include <cmath>

namespace distill {

using json = nlohmann::json;

ApiError invalid_field(const std::string& param, const std::string& message) {
  return ApiError(400, "invalid_request_error", message, param);
}

json error_body(const ApiError& e) {
  json err = {{"message", e.what()}, {"type", e.type}, {"param", nullptr}, {"code", nullptr}};
  if (!e.param.empty()) err["param"] = e.param;
  if (!e.code.empty()) err["code"] = e.code;
  return json{{"error", err}};
}

namespace {

const char* type_name(const json& v) {
  switch (v.type()) {
    case json::value_t::null: return "null";
    case json::value_t::boolean: return "a boolean";
    case json::value_t::string: return "a string";
    case json::value_t::array: return "an array";
    case json::value_t::object: return "an object";
    default: return "a number";
  }
}

// Present and not null: OpenAI clients send null for "not set".
bool has(const json& body, const char* key) { return body.contains(key) && !body[key].is_null(); }

double number_in(const json& body, const char* key, double lo, double hi) {
  const json& v = body[key];
  if (!v.is_number()) throw invalid_field(key, fmt::format("'{}' must be a number, not {}", key, type_name(v)));
  const double x = v.get<double>();
  if (!std::isfinite(x) || x < lo || x > hi)
    throw invalid_field(key, fmt::format("'{}' is {}; it must be between {} and {}", key, x, lo, hi));
  return x;
}

int64_t integer_in(const json& body, const char* key, int64_t lo, int64_t hi) {
  const json& v = body[key];
  if (!v.is_number_integer() && !(v.is_number_float() && std::floor(v.get<double>()) == v.get<double>()))
    throw invalid_field(key, fmt::format("'{}' must be an integer, not {}", key, v.is_number() ? "a fraction" : type_name(v)));
  // Compared as integers where the value is one: 2^63 rounds to INT64_MAX as a double.
  const bool above_int64 = v.is_number_unsigned() && v.get<uint64_t>() > uint64_t(INT64_MAX);
  const double x = v.get<double>();
  const bool out = above_int64 || (v.is_number_integer() ? (v.get<int64_t>() < lo || v.get<int64_t>() > hi)
                                                         : (x < double(lo) || x > double(hi)));
  if (out) throw invalid_field(key, fmt::format("'{}' is {}; it must be between {} and {}", key, v.dump(), lo, hi));
  return v.is_number_integer() ? v.get<int64_t>() : int64_t(x);
}

bool boolean(const json& body, const char* key) {
  if (!body[key].is_boolean()) throw invalid_field(key, fmt::format("'{}' must be a boolean, not {}", key, type_name(body[key])));
  return body[key].get<bool>();
}

// Fields both endpoints share.
void parse_common(const json& body, const ServerLimits& limits, GenerationRequest& r) {
  if (!body.is_object()) throw ApiError(400, "invalid_request_error", "the request body must be a JSON object");
  if (!has(body, "model")) throw invalid_field("model", "you must provide a model parameter");
  if (!body["model"].is_string()) throw invalid_field("model", "'model' must be a string");
  r.model = body["model"].get<std::string>();

  r.sampler = SamplerSettings{};
  r.sampler.temperature = 1.0f, r.sampler.top_p = 1.0f, r.sampler.top_k = 0, r.sampler.min_p = 0.0f;
  if (has(body, "temperature")) r.sampler.temperature = float(number_in(body, "temperature", 0.0, 2.0));
  if (has(body, "top_p")) r.sampler.top_p = float(number_in(body, "top_p", 0.0, 1.0));
  if (has(body, "presence_penalty")) r.sampler.presence_penalty = float(number_in(body, "presence_penalty", -2.0, 2.0));
  if (has(body, "frequency_penalty")) r.sampler.frequency_penalty = float(number_in(body, "frequency_penalty", -2.0, 2.0));
  // Extensions that llama.cpp-style clients send (e.g. through extra_body).
  if (has(body, "top_k")) r.sampler.top_k = int(integer_in(body, "top_k", 0, 1 << 20));
  if (has(body, "min_p")) r.sampler.min_p = float(number_in(body, "min_p", 0.0, 1.0));
  if (has(body, "repetition_penalty")) r.sampler.repetition_penalty = float(number_in(body, "repetition_penalty", 0.01, 10.0));
  if (has(body, "seed")) {
    r.sampler.seed = uint64_t(integer_in(body, "seed", INT64_MIN, INT64_MAX));
    r.has_seed = true;
  }
  if (has(body, "n")) r.n = int(integer_in(body, "n", 1, limits.max_n));
  if (has(body, "stream")) r.stream = boolean(body, "stream");
  if (has(body, "stream_options")) {
    const json& so = body["stream_options"];
    if (!so.is_object()) throw invalid_field("stream_options", "'stream_options' must be an object");
    if (!r.stream) throw invalid_field("stream_options", "'stream_options' is only allowed when 'stream' is true");
    if (has(so, "include_usage")) r.include_usage = boolean(so, "include_usage");
  }
  if (has(body, "stop")) {
    const json& s = body["stop"];
    if (s.is_string()) {
      r.stop.push_back(s.get<std::string>());
    } else if (s.is_array()) {
      if (int(s.size()) > limits.max_stop)
        throw invalid_field("stop", fmt::format("'stop' has {} strings; at most {} are allowed", s.size(), limits.max_stop));
      for (const json& x : s) {
        if (!x.is_string()) throw invalid_field("stop", "'stop' must be a string or an array of strings");
        r.stop.push_back(x.get<std::string>());
      }
    } else {
      throw invalid_field("stop", fmt::format("'stop' must be a string or an array of strings, not {}", type_name(s)));
    }
    for (const std::string& x : r.stop)
      if (x.empty()) throw invalid_field("stop", "a stop string is empty");
  }
  if (has(body, "logit_bias")) {
    // {"token id as a string": bias in [-100, 100]}, as OpenAI; ids are checked against the
    // vocabulary by the route, which knows it.
    const json& lb = body["logit_bias"];
    if (!lb.is_object()) throw invalid_field("logit_bias", fmt::format("'logit_bias' must be an object, not {}", type_name(lb)));
    if (lb.size() > 1024) throw invalid_field("logit_bias", "'logit_bias' holds more than 1024 tokens");
    for (const auto& [key, value] : lb.items()) {
      int64_t id = -1;
      const auto [end, ec] = std::from_chars(key.data(), key.data() + key.size(), id);
      if (ec != std::errc() || end != key.data() + key.size() || id < 0 || id > INT32_MAX)
        throw invalid_field("logit_bias", fmt::format("'logit_bias' key '{}' is not a token id", key));
      if (!value.is_number() || !std::isfinite(value.get<double>()) || value.get<double>() < -100 || value.get<double>() > 100)
        throw invalid_field("logit_bias", fmt::format("'logit_bias' value for {} must be a number between -100 and 100", key));
      r.sampler.logit_bias.push_back({int32_t(id), float(value.get<double>())});
    }
  }
  if (has(body, "user")) {
    if (!body["user"].is_string()) throw invalid_field("user", "'user' must be a string");
    r.user = body["user"].get<std::string>();
  }
}

void parse_max_tokens(const json& body, const ServerLimits& limits, int64_t min, GenerationRequest& r) {
  // max_completion_tokens is the newer name; either is accepted, the newer one wins.
  for (const char* key : {"max_tokens", "max_completion_tokens"})
    if (has(body, key)) {
      r.max_tokens = integer_in(body, key, min, INT64_MAX);
      if (r.max_tokens > limits.n_ctx)
        throw ApiError(400, "invalid_request_error",
                       fmt::format("'{}' is too large: {}. This model's context holds at most {} tokens", key,
                                   r.max_tokens, limits.n_ctx), key, "context_length_exceeded");
    }
}

// Message content: a string, or an array of content parts of which only text is supported.
std::string message_content(const json& m, size_t i) {
  const std::string where = fmt::format("messages[{}].content", i);
  if (!m.contains("content") || m["content"].is_null()) {
    // Only an assistant turn may come without content (OpenAI: one that made tool calls).
    if (m["role"] == "assistant") return "";
    throw invalid_field(where, fmt::format("'{}' is required", where));
  }
  const json& c = m["content"];
  if (c.is_string()) return c.get<std::string>();
  if (!c.is_array()) throw invalid_field(where, fmt::format("'{}' must be a string or an array of parts, not {}", where, type_name(c)));
  std::string text;
  for (size_t j = 0; j < c.size(); ++j) {
    const json& part = c[j];
    if (!part.is_object() || !part.contains("type") || !part["type"].is_string())
      throw invalid_field(where, fmt::format("'{}[{}]' must be an object with a 'type'", where, j));
    if (part["type"] != "text" || !part.contains("text") || !part["text"].is_string())
      throw invalid_field(where, fmt::format("'{}[{}]' is of type {}; this model takes text parts only", where, j, part["type"].dump()));
    text += part["text"].get<std::string>();
  }
  return text;
}

}  // namespace

GenerationRequest parse_chat_request(const json& body, const ServerLimits& limits) {
  GenerationRequest r;
  r.chat = true;
  parse_common(body, limits, r);
  if (!has(body, "messages")) throw invalid_field("messages", "'messages' is required");
  const json& msgs = body["messages"];
  if (!msgs.is_array() || msgs.empty()) throw invalid_field("messages", "'messages' must be a non-empty array");
  for (size_t i = 0; i < msgs.size(); ++i) {
    const json& m = msgs[i];
    if (!m.is_object() || !m.contains("role") || !m["role"].is_string())
      throw invalid_field(fmt::format("messages[{}]", i), fmt::format("messages[{}] must be an object with a string 'role'", i));
    std::string role = m["role"].get<std::string>();
    if (role == "developer") role = "system";  // the newer name of the system role
    if (role != "system" && role != "user" && role != "assistant")
      throw invalid_field(fmt::format("messages[{}].role", i),
                          fmt::format("messages[{}].role is '{}'; supported roles are system, developer, user, assistant", i, role));
    r.messages.push_back({role, message_content(m, i)});
  }
  parse_max_tokens(body, limits, 1, r);
  if (has(body, "logprobs")) r.logprobs = boolean(body, "logprobs");
  if (has(body, "top_logprobs")) {
    r.top_logprobs = int(integer_in(body, "top_logprobs", 0, limits.max_top_logprobs));
    if (!r.logprobs) throw invalid_field("top_logprobs", "'top_logprobs' needs 'logprobs' set to true");
  }
  if (has(body, "reasoning_effort")) {  // OpenAI's field; a harmony model (GPT-OSS) states it in its system message
    const json& e = body["reasoning_effort"];
    const std::string v = e.is_string() ? e.get<std::string>() : "";
    if (v != "minimal" && v != "low" && v != "medium" && v != "high")
      throw invalid_field("reasoning_effort", "'reasoning_effort' must be one of minimal, low, medium, high");
    r.reasoning_effort = v == "minimal" ? "low" : v;  // harmony's lowest level is low
  }
  return r;
}

GenerationRequest parse_completion_request(const json& body, const ServerLimits& limits) {
  GenerationRequest r;
  r.chat = false;
  parse_common(body, limits, r);
  r.max_tokens = 16;  // the legacy endpoint's default
  if (!has(body, "prompt")) throw invalid_field("prompt", "'prompt' is required");
  const json& p = body["prompt"];
  auto ids_of = [&](const json& arr) {
    std::vector<int32_t> ids;
    for (const json& t : arr) {
      if (!t.is_number_integer() || t.get<int64_t>() < 0 || t.get<int64_t>() > INT32_MAX)
        throw invalid_field("prompt", "a token-id prompt must hold non-negative integers");
      ids.push_back(int32_t(t.get<int64_t>()));
    }
    if (ids.empty()) throw invalid_field("prompt", "a token-id prompt is empty");
    return ids;
  };
  if (p.is_string()) {
    r.prompts.push_back(p.get<std::string>());
    r.prompt_ids.emplace_back();
  } else if (p.is_array() && !p.empty() && p[0].is_number()) {
    r.prompts.emplace_back();
    r.prompt_ids.push_back(ids_of(p));
  } else if (p.is_array() && !p.empty()) {
    for (const json& x : p) {
      if (x.is_string()) {
        r.prompts.push_back(x.get<std::string>());
        r.prompt_ids.emplace_back();
      } else if (x.is_array()) {
        r.prompts.emplace_back();
        r.prompt_ids.push_back(ids_of(x));
      } else {
        throw invalid_field("prompt", "'prompt' must be a string, an array of strings or of token-id arrays");
      }
    }
  } else {
    throw invalid_field("prompt", fmt::format("'prompt' must be a string or a non-empty array, not {}", type_name(p)));
  }
  if (int64_t(r.prompts.size()) * r.n > limits.max_n)
    throw invalid_field("n", fmt::format("{} prompts × n = {} choices; at most {} per request", r.prompts.size(),
                                         int64_t(r.prompts.size()) * r.n, limits.max_n));
  parse_max_tokens(body, limits, 0, r);  // 0: score the prompt (with echo + logprobs) without generating
  if (has(body, "logprobs")) {
    r.top_logprobs = int(integer_in(body, "logprobs", 0, limits.max_top_logprobs));
    r.logprobs = true;
  }
  if (has(body, "echo")) r.echo = boolean(body, "echo");
  if (has(body, "suffix")) throw invalid_field("suffix", "'suffix' (insertion) is not supported by this model");
  if (has(body, "best_of") && !(body["best_of"].is_number_integer() && body["best_of"].get<int64_t>() == r.n))
    throw invalid_field("best_of", "'best_of' other than n is not supported");
  return r;
}

}  // namespace distill
