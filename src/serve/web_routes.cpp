// The web pages (GET /, /console, /web/*) and the console's JSON (GET /v1/console, admin keys).
// Pages carry a Content-Security-Policy that allows only this server's own scripts and styles: no
// inline script, so text a model wrote can never run even if it reached the page as HTML.
#include "core/web_assets.h"
#include "model/provenance.h"
#include "serve/openai_response.h"
#include "serve/server_context.h"

#include <httplib.h>

namespace distill {

using json = nlohmann::json;

namespace {

void send_asset(httplib::Response& res, const std::string& path) {
  for (const WebAsset& a : web_assets())
    if (path == a.path) {
      res.set_header("Content-Security-Policy",
                     "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
                     "base-uri 'none'; form-action 'self'; frame-ancestors 'none'");
      res.set_header("X-Content-Type-Options", "nosniff");
      res.set_header("Referrer-Policy", "no-referrer");
      res.set_header("Cache-Control", "no-cache");
      res.set_content(reinterpret_cast<const char*>(a.data), a.size, a.content_type);
      return;
    }
  res.status = 404;
}

}  // namespace

void add_web_routes(httplib::Server& s) {
  s.Get("/", [](const httplib::Request&, httplib::Response& res) { send_asset(res, "/web/index.html"); });
  s.Get("/console", [](const httplib::Request&, httplib::Response& res) { send_asset(res, "/web/console.html"); });
  s.Get("/web/(.+)", [](const httplib::Request& req, httplib::Response& res) { send_asset(res, req.path); });
  s.Get("/favicon.ico", [](const httplib::Request&, httplib::Response& res) { res.status = 204; });
}

void require_admin(OpenAIServer::Context& ctx, const Caller& caller) {
  if (!ctx.keys) throw ApiError(403, "permission_error", "this needs API keys (--keys) and an admin key", "", "admin_required");
  if (!caller.key || !ctx.keys->key(*caller.key).admin)
    throw ApiError(403, "permission_error", fmt::format("the key '{}' is not an admin key", caller.name), "", "admin_required");
}

void handle_console(OpenAIServer::Context& ctx, const httplib::Request&, httplib::Response& res, const Caller& caller) {
  require_admin(ctx, caller);
  json keys = json::array();
  for (size_t i = 0; i < ctx.keys->size(); ++i) {
    const ApiKey& k = ctx.keys->key(i);
    const auto [day, tokens] = ctx.keys->tokens_used(i);
    const std::vector<int64_t> hourly = ctx.metrics.hourly_requests(k.name);
    int64_t total = 0;
    for (const int64_t n : hourly) total += n;
    const int64_t today = int64_t(std::time(nullptr) / 86400);
    keys.push_back({{"name", k.name}, {"admin", k.admin}, {"watermark", k.watermark}, {"requests_per_minute", k.requests_per_minute},
                    {"tokens_per_day", k.tokens_per_day}, {"tokens_today", day == today ? tokens : 0},
                    {"hourly_requests", hourly}, {"requests_24h", total}});
  }
  const ModelConfig& c = ctx.model.config;
  const json model = {{"name", ctx.opt.model_name}, {"architecture", c.model_type}, {"parameters", c.n_params()},
                      {"context", ctx.opt.n_ctx}, {"slots", ctx.opt.n_parallel}, {"provenance", ctx.provenance}};
  const json body = {{"object", "console"}, {"model", model}, {"metrics", ctx.metrics.summary(ctx.scheduler->stats(), ctx.opt.n_parallel)},
                     {"keys", keys}, {"guard", ctx.guard ? ctx.guard->report_json() : json(nullptr)}};
  res.set_content(dump_json(body), "application/json");
}

}  // namespace distill
