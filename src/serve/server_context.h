// What the route handlers of OpenAIServer share. Internal to serve/.
#pragma once

#include "serve/server.h"

#include <chrono>
#include <optional>

namespace distill {

struct OpenAIServer::Context {
  Context(const Model& m, std::shared_ptr<const Tokenizer> t, const ServeOptions& o) : model(m), tok(std::move(t)), opt(o) {}
  const Model& model;
  std::shared_ptr<const Tokenizer> tok;
  std::unique_ptr<ChatTemplate> tmpl;  // null: chat messages are joined as plain text
  ServeOptions opt;
  std::optional<KeyStore> keys;
  std::unique_ptr<UsageLog> usage;
  std::unique_ptr<Guard> guard;      // null: off
  nlohmann::json provenance;         // the served model's lineage record (null: none)
  ServerMetrics metrics;
  HttpTransportStats transport;
  std::unique_ptr<Scheduler> scheduler;
  int64_t created = 0;       // unix time the server started (the model's "created")
  std::string fingerprint;   // system_fingerprint
};

// Who is asking: the key's index in the store (when keys are on) and its name for the records.
struct Caller {
  std::optional<size_t> key;
  std::string name = "-";
  std::string origin;              // the client's network address
  // Who the guard watches: the key, or the address when there are no keys.
  std::string guard_identity() const { return key ? name : "addr:" + origin; }
};

// Before a completion runs: the guard's verdict on its caller — an ApiError (403 blocked, 429
// throttled), or the request's log-probabilities stripped. Returns the request as asked, for
// guard_observe.
GuardRequest guard_admit(OpenAIServer::Context& ctx, const Caller& caller, GenerationRequest& req);
// After it ran: the guard learns from it.
void guard_observe(OpenAIServer::Context& ctx, GuardRequest asked, const GenerationRequest& req,
                   const std::vector<std::vector<int32_t>>& prompts, int64_t completion_tokens, const std::string& finish);

// The web pages: GET / (chat), /console, /web/* (web_routes.cpp).
void add_web_routes(httplib::Server& s);
// 403 unless the caller holds an admin key (keys on, "admin": true).
void require_admin(OpenAIServer::Context& ctx, const Caller& caller);
// GET /v1/console/runs and /v1/console/runs/report?name= (console_runs.cpp): admin keys only.
void handle_console_runs(OpenAIServer::Context& ctx, const httplib::Request& req, httplib::Response& res, const Caller& caller);
// GET /v1/console: the server, keys and usage, the guard, the model — admin keys only.
void handle_console(OpenAIServer::Context& ctx, const httplib::Request& req, httplib::Response& res, const Caller& caller);

// GET /v1/guard and POST /v1/guard/keys/{name} {"action": "reset"|"allow"|"auto"}: admin keys only.
void handle_guard(OpenAIServer::Context& ctx, const httplib::Request& req, httplib::Response& res, const Caller& caller);

// Writes an OpenAI error response (and Retry-After for 429/503).
void send_error(httplib::Response& res, const ApiError& e);

// Appends a usage record for a request that ended before generation (auth, quota, bad input).
void record_refusal(OpenAIServer::Context& ctx, const std::string& endpoint, const Caller& caller, const ApiError& e,
                    std::chrono::steady_clock::time_point t0);

// POST /v1/chat/completions (chat = true) and /v1/completions, after authentication.
void handle_completion(OpenAIServer::Context& ctx, const httplib::Request& req, httplib::Response& res, bool chat,
                       const Caller& caller, std::chrono::steady_clock::time_point t0);

}  // namespace distill
