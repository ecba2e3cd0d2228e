#include "serve/server.h"

#include <cstdio>

#include "core/atomic_file.h"
#include "core/error.h"
#include "model/provenance.h"
#include "serve/openai_response.h"
#include "serve/server_context.h"

#include <httplib.h>

#include <cmath>
#include <ctime>
#include <filesystem>

namespace distill {

using json = nlohmann::json;

void send_error(httplib::Response& res, const ApiError& e) {
  res.status = e.status;
  if (e.retry_after_s > 0) res.set_header("Retry-After", std::to_string(int64_t(std::ceil(e.retry_after_s))));
  res.set_content(dump_json(error_body(e)), "application/json");
}

void record_refusal(OpenAIServer::Context& ctx, const std::string& endpoint, const Caller& caller, const ApiError& e,
                    std::chrono::steady_clock::time_point t0) {
  const double latency = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  ctx.metrics.record_request(endpoint, e.status, latency, 0, 0);
  if (!ctx.usage) return;
  ctx.usage->write({{"time", utc_timestamp_now()}, {"key", caller.name}, {"endpoint", endpoint}, {"status", e.status},
                    {"prompt_tokens", 0}, {"completion_tokens", 0}, {"latency_ms", latency * 1000.0},
                    {"error", e.code.empty() ? e.type : e.code}});
}

namespace {

// The caller of a request, or an ApiError 401 when keys are on and the key is missing or unknown.
Caller authenticate(OpenAIServer::Context& ctx, const httplib::Request& req) {
  Caller c;
  c.origin = req.remote_addr;
  if (!ctx.keys) return c;
  const std::string h = req.get_header_value("Authorization");
  const std::string prefix = "Bearer ";
  if (h.empty())
    throw ApiError(401, "invalid_request_error",
                   "You didn't provide an API key. Send it in the Authorization header as 'Bearer YOUR_KEY'", "", "missing_api_key");
  if (h.size() <= prefix.size() || h.compare(0, prefix.size(), prefix) != 0)
    throw ApiError(401, "invalid_request_error", "The Authorization header must be 'Bearer YOUR_KEY'", "", "invalid_api_key");
  c.key = ctx.keys->find(h.substr(prefix.size()));
  if (!c.key) throw ApiError(401, "invalid_request_error", "Incorrect API key provided", "", "invalid_api_key");
  c.name = ctx.keys->key(*c.key).name;
  return c;
}

std::string render_transport(const HttpTransportStats& t) {
  return fmt::format(
      "# HELP distill_connections_open Open client connections.\n# TYPE distill_connections_open gauge\n"
      "distill_connections_open {}\n"
      "# HELP distill_connections_refused_total Connections refused over --max-connections.\n"
      "# TYPE distill_connections_refused_total counter\ndistill_connections_refused_total {}\n"
      "# HELP distill_request_read_failures_total Requests not read: too slow, or a header too large.\n"
      "# TYPE distill_request_read_failures_total counter\n"
      "distill_request_read_failures_total{{reason=\"timeout\"}} {}\n"
      "distill_request_read_failures_total{{reason=\"header_too_large\"}} {}\n",
      t.connections_open.load(), t.connections_refused.load(), t.requests_timed_out.load(), t.headers_too_large.load());
}

json model_object(const OpenAIServer::Context& ctx) {
  return {{"id", ctx.opt.model_name}, {"object", "model"}, {"created", ctx.created}, {"owned_by", "distill"}};
}

}  // namespace

OpenAIServer::OpenAIServer(const Model& model, std::shared_ptr<const Tokenizer> tok, ServeOptions opt)
    : opt_(std::move(opt)) {
  opt_.limits.n_ctx = opt_.n_ctx;
  if (tok->vocab_size() > model.config.n_vocab)
    fail("the tokenizer has {} tokens but the model {} embedding rows", tok->vocab_size(), model.config.n_vocab);
  ctx_ = std::make_unique<Context>(model, tok, opt_);
  Context& c = *ctx_;
  c.tmpl = ChatTemplate::choose(opt_.chat_template, tok.get());
  if (!opt_.keys_file.empty()) c.keys.emplace(KeyStore::load(opt_.keys_file));
  if (!opt_.usage_log.empty()) c.usage = std::make_unique<UsageLog>(opt_.usage_log, opt_.log_content, opt_.usage_log_max_bytes);
  if (opt_.guard != "on" && opt_.guard != "off" && opt_.guard != "auto") fail("--guard must be on, off or auto (got '{}')", opt_.guard);
  if (opt_.guard == "on" || (opt_.guard == "auto" && c.keys)) {
    GuardOptions g = opt_.guard_options;
    if (c.keys) g.thresholds = parse_guard_thresholds(json::parse(read_text_file(opt_.keys_file, "keys file")), opt_.keys_file);
    c.guard = std::make_unique<Guard>(std::move(g));
    // Quota use carried over a restart.
    if (c.keys)
      for (size_t i = 0; i < c.keys->size(); ++i)
        if (const json q = c.guard->quota_state(); q.contains(c.keys->key(i).name))
          c.keys->restore_tokens_used(i, q[c.keys->key(i).name].value("day", int64_t(-1)), q[c.keys->key(i).name].value("tokens", int64_t(0)));
  }
  c.created = int64_t(std::time(nullptr));
  if (!opt_.model_path.empty()) {
    try {
      c.provenance = read_provenance(opt_.model_path);
    } catch (const Error& e) {  // a broken record does not stop serving; the console says so
      c.provenance = {{"error", e.what()}};
    }
  }
  c.fingerprint = api_fingerprint(*tok);
  SchedulerOptions so;
  so.n_slots = opt_.n_parallel;
  so.n_ctx = opt_.n_ctx;
  so.max_queue = opt_.max_queue;
  c.scheduler = std::make_unique<Scheduler>(model, *tok, so);

  if (opt_.tls_cert.empty() != opt_.tls_key.empty()) fail("--tls-cert and --tls-key go together");
  for (const std::string* f : {&opt_.tls_cert, &opt_.tls_key})
    if (f->empty()) continue;
    else if (std::FILE* fp = std::fopen(f->c_str(), "r")) std::fclose(fp);
    else fail("{}: cannot open", *f);
  if (!(opt_.request_timeout_s > 0)) fail("--request-timeout must be positive (got {})", opt_.request_timeout_s);
  opt_.http.max_body_bytes = opt_.max_body_bytes;
  http_ = make_http_server(opt_.http, c.transport, opt_.tls_cert, opt_.tls_key);
  httplib::Server& s = *http_;
  s.set_payload_max_length(opt_.max_body_bytes);

  auto guarded = [this](const char* endpoint, auto fn) {
    return [this, endpoint, fn](const httplib::Request& req, httplib::Response& res) {
      const auto t0 = std::chrono::steady_clock::now();
      // The request is read: the connection now lives as long as the request may (plus a grace
      // to send what was generated).
      enter_request_handler(t0 + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                                     std::chrono::duration<double>(ctx_->opt.request_timeout_s + 10.0)));
      Caller caller;
      try {
        caller = authenticate(*ctx_, req);
      } catch (const ApiError& e) {
        ctx_->metrics.record_rejected("auth");
        record_refusal(*ctx_, endpoint, caller, e, t0);
        return send_error(res, e);
      }
      try {
        fn(req, res, caller, t0);
      } catch (const ApiError& e) {
        send_error(res, e);
      } catch (const std::exception& e) {  // a bug, not the client's fault: say so, keep serving
        send_error(res, ApiError(500, "server_error", fmt::format("internal error: {}", e.what())));
      }
    };
  };
  auto chat = guarded("chat.completions", [this](const httplib::Request& req, httplib::Response& res, const Caller& c, auto t0) {
    handle_completion(*ctx_, req, res, true, c, t0);
  });
  auto completions = guarded("completions", [this](const httplib::Request& req, httplib::Response& res, const Caller& c, auto t0) {
    handle_completion(*ctx_, req, res, false, c, t0);
  });
  auto models = guarded("models", [this](const httplib::Request&, httplib::Response& res, const Caller&, auto) {
    res.set_content(dump_json({{"object", "list"}, {"data", json::array({model_object(*ctx_)})}}), "application/json");
  });
  auto one_model = guarded("models", [this](const httplib::Request& req, httplib::Response& res, const Caller&, auto) {
    const std::string id = req.matches[1];
    if (id != ctx_->opt.model_name)
      throw ApiError(404, "invalid_request_error", fmt::format("The model '{}' does not exist", id), "model", "model_not_found");
    res.set_content(dump_json(model_object(*ctx_)), "application/json");
  });
  auto guard = guarded("guard", [this](const httplib::Request& req, httplib::Response& res, const Caller& c, auto) {
    handle_guard(*ctx_, req, res, c);
  });
  s.Get("/v1/guard", guard);
  s.Get("/v1/console", guarded("console", [this](const httplib::Request& req, httplib::Response& res, const Caller& c, auto) {
    handle_console(*ctx_, req, res, c);
  }));
  auto runs = guarded("console", [this](const httplib::Request& req, httplib::Response& res, const Caller& c, auto) {
    handle_console_runs(*ctx_, req, res, c);
  });
  s.Get("/v1/console/runs", runs);
  s.Get("/v1/console/runs/report", runs);
  add_web_routes(s);
  s.Post("/v1/guard/keys/(.+)", guard);
  for (const char* p : {"/v1/chat/completions", "/chat/completions"}) s.Post(p, chat);
  for (const char* p : {"/v1/completions", "/completions"}) s.Post(p, completions);
  for (const char* p : {"/v1/models", "/models"}) s.Get(p, models);
  for (const char* p : {"/v1/models/(.+)", "/models/(.+)"}) s.Get(p, one_model);
  s.Get("/health", [this](const httplib::Request&, httplib::Response& res) {
    const SchedulerStats st = ctx_->scheduler->stats();
    res.set_content(dump_json({{"status", "ok"}, {"model", ctx_->opt.model_name}, {"slots_busy", st.active},
                               {"slots_total", ctx_->opt.n_parallel}, {"queued", st.queued}}),
                    "application/json");
  });
  s.Get("/metrics", [this](const httplib::Request&, httplib::Response& res) {
    res.set_content(ctx_->metrics.render(ctx_->scheduler->stats(), ctx_->opt.n_parallel) + render_transport(ctx_->transport),
                    "text/plain; version=0.0.4");
  });
  // CORS: only for the origins the owner listed; a preflight (OPTIONS) is answered 204.
  if (!opt_.cors_origins.empty()) {
    auto allowed = [this](const std::string& origin) {
      for (const std::string& o : opt_.cors_origins)
        if (o == "*" || o == origin) return true;
      return false;
    };
    s.set_post_routing_handler([allowed](const httplib::Request& req, httplib::Response& res) {
      const std::string origin = req.get_header_value("Origin");
      if (origin.empty() || !allowed(origin)) return;
      res.set_header("Access-Control-Allow-Origin", origin);
      res.set_header("Vary", "Origin");
      res.set_header("Access-Control-Allow-Headers", "Authorization, Content-Type");
      res.set_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS");
    });
    s.Options(".*", [](const httplib::Request&, httplib::Response& res) { res.status = 204; });
  }
  // Anything that ended in an error status without a body (unknown route, body over the limit,
  // bad HTTP) still gets an OpenAI error object.
  s.set_error_handler(httplib::Server::HandlerWithResponse([](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    std::string msg;
    const std::string failure = request_read_failure();
    if (failure == "timeout") res.status = 408, msg = "The request was not received in time";
    else if (failure == "header_too_large") res.status = 431, msg = "The request's header is too large";
    else if (res.status == 404) msg = fmt::format("Unknown request URL: {} {}", req.method, req.path);
    else if (res.status == 413) msg = "The request body is too large";
    else if (res.status == 405) msg = fmt::format("Method {} is not allowed here", req.method);
    else msg = fmt::format("HTTP error {}", res.status);
    res.set_content(dump_json(error_body(ApiError(res.status, "invalid_request_error", msg))), "application/json");
    return httplib::Server::HandlerResponse::Handled;
  }));
  s.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "unknown";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    res.status = 500;
    res.set_content(dump_json(error_body(ApiError(500, "server_error", "internal error: " + what))), "application/json");
  });
}

OpenAIServer::~OpenAIServer() {
  stop();
  http_.reset();
}

int OpenAIServer::bind() {
  if (opt_.port == 0) {
    port_ = http_->bind_to_any_port(opt_.host);
    if (port_ < 0) fail("cannot bind to {} (any port)", opt_.host);
  } else {
    if (!http_->bind_to_port(opt_.host, opt_.port)) fail("cannot listen on {}:{} (in use, or a bad address?)", opt_.host, opt_.port);
    port_ = opt_.port;
  }
  return port_;
}

void OpenAIServer::listen() { http_->listen_after_bind(); }

void OpenAIServer::stop() {
  if (http_) http_->stop();
}

}  // namespace distill
