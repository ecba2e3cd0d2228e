// The guard's place in serving: its verdict before a completion, what it learns after one, and its
// HTTP face — GET /v1/guard (scores, levels, reasons) and POST /v1/guard/keys/{name}
// {"action": "reset" | "allow" | "auto"}, admin keys only.
#include "core/digest.h"
#include "serve/openai_response.h"
#include "serve/server_context.h"

#include <httplib.h>

namespace distill {

using json = nlohmann::json;

GuardRequest guard_admit(OpenAIServer::Context& ctx, const Caller& caller, GenerationRequest& req) {
  GuardRequest g;
  g.key = caller.guard_identity();
  g.origin = caller.origin;
  g.logprobs = req.logprobs, g.top_logprobs = req.top_logprobs, g.echo = req.echo;
  g.n = req.n, g.greedy = req.sampler.temperature <= 0, g.max_tokens = req.max_tokens;
  if (!ctx.guard) return g;
  const GuardDecision d = ctx.guard->check(g.key);
  if (d.refuse) {
    ctx.metrics.record_rejected("guard");
    ApiError e(d.status, d.status == 403 ? "permission_error" : "rate_limit_error", d.message, "",
               d.status == 403 ? "guard_blocked" : "guard_throttled");
    e.retry_after_s = d.retry_after_s;
    throw e;
  }
  if (d.level >= GuardLevel::strip_logprobs) req.logprobs = false, req.top_logprobs = 0;  // answers without soft labels
  return g;
}

void guard_observe(OpenAIServer::Context& ctx, GuardRequest g, const GenerationRequest& req,
                   const std::vector<std::vector<int32_t>>& prompts, int64_t completion_tokens, const std::string& finish) {
  if (!ctx.guard) return;
  // The prompt's identity over its token ids; its sketch over the newest text the caller wrote
  // (a chat's last user turn: the template and the system prompt are the same for everyone).
  std::string id_bytes, text;
  for (const auto& p : prompts) id_bytes.append(reinterpret_cast<const char*>(p.data()), p.size() * sizeof(int32_t));
  if (req.chat) {
    for (auto m = req.messages.rbegin(); m != req.messages.rend() && text.empty(); ++m)
      if (m->role == "user") text = m->content;
  } else {
    for (const auto& p : req.prompts) text += p;
  }
  if (text.empty()) text = id_bytes;  // token-id prompts
  g.prompt_hash = sha256_u64(id_bytes);
  g.sketch = sketch_text(text);
  g.time_s = ctx.guard->now();
  g.prompt_tokens = 0;
  for (const auto& p : prompts) g.prompt_tokens += int64_t(p.size());
  g.completion_tokens = completion_tokens;
  g.length_capped = finish == "length";
  ctx.guard->observe(g);
}

void handle_guard(OpenAIServer::Context& ctx, const httplib::Request& req, httplib::Response& res, const Caller& caller) {
  require_admin(ctx, caller);
  if (!ctx.guard) throw ApiError(404, "invalid_request_error", "the extraction guard is off on this server (--guard off)", "", "guard_off");
  if (req.method == "GET") return res.set_content(dump_json(ctx.guard->report_json()), "application/json");
  json body;
  try {
    body = json::parse(req.body);
  } catch (const json::exception& e) {
    throw ApiError(400, "invalid_request_error", fmt::format("the body is not valid JSON: {}", e.what()));
  }
  if (!body.is_object() || !body.contains("action") || !body["action"].is_string())
    throw invalid_field("action", "'action' must be one of \"reset\", \"allow\", \"auto\"");
  const std::string action = body["action"], key = req.matches[1];
  bool known = key.rfind("addr:", 0) == 0;
  for (size_t i = 0; i < ctx.keys->size() && !known; ++i) known = ctx.keys->key(i).name == key;
  if (!known) throw ApiError(404, "invalid_request_error", fmt::format("no key named '{}'", key), "", "key_not_found");
  if (action != "reset" && action != "allow" && action != "auto")
    throw invalid_field("action", fmt::format("unknown action '{}': one of \"reset\", \"allow\", \"auto\"", action));
  ctx.guard->owner_action(key, action);
  res.set_content(dump_json({{"key", key}, {"action", action}, {"by", caller.name}}), "application/json");
}

}  // namespace distill
