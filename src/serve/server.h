// OpenAIServer: the HTTP front of `distill serve`. Routes (cpp-httplib, one thread per open
// connection from a bounded pool):
//   GET  /health, /metrics (Prometheus), /v1/models, /v1/models/{id}
//   POST /v1/chat/completions, /v1/completions (also without the /v1 prefix)
// Every request is authenticated (with --keys), checked against its key's quotas, parsed into
// GenerationJobs for the Scheduler, answered in the OpenAI shapes (SSE for stream: true) and
// recorded in the usage log and the metrics. Every failure is an OpenAI error JSON with its 4xx/5xx.
#pragma once

#include "model/model.h"
#include "serve/api_keys.h"
#include "serve/guard.h"
#include "serve/http_transport.h"
#include "serve/metrics.h"
#include "serve/openai_request.h"
#include "generate/scheduler.h"
#include "serve/usage_log.h"
#include "tokenizer/chat_template.h"

#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace httplib {
class Server;
struct Request;
struct Response;
}  // namespace httplib

namespace distill {

struct ServeOptions {
  std::string host = "127.0.0.1";
  int port = 8080;                   // 0: any free port (see bound port())
  std::string model_name;            // the id clients put in "model"
  std::string model_path;            // where it was loaded from (the console shows its provenance)
  std::string runs_dir;              // training runs the console lists (their report.html), "" = none
  int64_t n_parallel = 4;            // KV-cache slots decoded together
  int64_t n_ctx = 4096;              // positions per slot
  int64_t max_queue = 64;            // completions waiting for a slot before 503
  size_t max_body_bytes = 8 << 20;
  std::string keys_file;             // empty: no authentication
  std::string usage_log;             // empty: no usage records
  bool log_content = false;
  std::string chat_template;         // name, or empty for the tokenizer's own
  // Browser origins allowed to call the API (CORS), "*" for any. Empty: no CORS headers, so web
  // pages the user visits cannot use a local server through the browser.
  std::vector<std::string> cors_origins;
  ServerLimits limits;               // n_ctx is copied from above
  std::string tls_cert, tls_key;     // PEM files: HTTPS instead of HTTP (both or neither)
  // A completion still generating this long after its request arrived ends with finish_reason
  // "length" (what it has is sent); one still queued then is answered 503.
  double request_timeout_s = 3600;  // a generous bound: max_tokens and --ctx already bound the work
  HttpLimits http;                   // connections, request read time, header size (max_body_bytes is copied in)
  // Watermarked answers (sample/watermark.h): on when watermark.delta != 0 and the key seeds it;
  // for every request (watermark_all) or for keys marked "watermark": true.
  WatermarkSettings watermark{.key = 0, .gamma = 0.25f, .delta = 0.0f, .context = 1};
  bool watermark_all = false;
  // The extraction guard (serve/guard.h): "auto" is on when keys are (callers are keys), "on"
  // also without keys (callers are network addresses), "off".
  std::string guard = "auto";
  GuardOptions guard_options;        // thresholds come from the keys file's "guard" object
  int64_t usage_log_max_bytes = 0;   // rotate the usage log to <file>.1 beyond this size (0: never)
};

class OpenAIServer {
public:
  OpenAIServer(const Model& model, std::shared_ptr<const Tokenizer> tok, ServeOptions opt);
  ~OpenAIServer();

  // Binds; throws naming the address if that fails. Returns the port (useful with port 0).
  int bind();
  // Serves until stop() (from another thread). bind() first.
  void listen();
  void stop();
  int port() const { return port_; }
  const ServeOptions& options() const { return opt_; }

  struct Context;  // what the route handlers share (defined in the .cpp files)

private:
  ServeOptions opt_;
  std::unique_ptr<Context> ctx_;
  std::unique_ptr<httplib::Server> http_;
  int port_ = -1;
};

}  // namespace distill
