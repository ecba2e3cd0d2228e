// distill serve DIR: the OpenAI-compatible HTTP server (see serve/server.h), and its owner's tools:
// distill keys add (a new API key: printed once, stored as a hash) and distill usage (per-key
// totals and extraction signals from a usage log).
#include "cli/commands.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "core/threads.h"
#include "sample/watermark.h"
#include "serve/server.h"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <array>
#include <cctype>
#include <csignal>
#include <filesystem>
#include <fstream>
#include <pthread.h>
#include <sstream>
#include <thread>

namespace distill {

namespace {

struct ServeArgs {
  std::string dir, lora;
  ServeOptions o;
  std::string watermark_key, watermark_key_file;
  double usage_log_max_mb = 0;
};

// The watermark's secret: from a file (kept out of the process list) or the flag.
void set_watermark_key(ServeArgs& a) {
  if (!a.watermark_key.empty() && !a.watermark_key_file.empty()) fail("give --watermark-key or --watermark-key-file, not both");
  std::string secret = a.watermark_key;
  if (!a.watermark_key_file.empty()) {
    secret = read_text_file(a.watermark_key_file, "watermark key file");
    while (!secret.empty() && std::isspace(uint8_t(secret.back()))) secret.pop_back();  // a trailing newline is not the secret
  }
  if (secret.empty()) {
    if (a.o.watermark_all) fail("--watermark-all needs the watermark's secret (--watermark-key-file or --watermark-key)");
    a.o.watermark.delta = 0;
    return;
  }
  a.o.watermark.key = watermark_key_from_secret(secret);
}

void serve(ServeArgs& a) {
  // SIGINT/SIGTERM are taken by one thread (sigwait) that stops the server cleanly; every other
  // thread, created after this, inherits the blocked mask. SIGPIPE from a vanished client is ignored.
  sigset_t set;
  sigemptyset(&set);
  sigaddset(&set, SIGINT);
  sigaddset(&set, SIGTERM);
  pthread_sigmask(SIG_BLOCK, &set, nullptr);
  std::signal(SIGPIPE, SIG_IGN);

  set_watermark_key(a);
  a.o.model_path = a.dir;
  const Model model = load_model(a.dir, a.lora, a.o.n_ctx, a.o.n_parallel);
  const auto tok = Tokenizer::load(a.dir);
  if (a.o.model_name.empty()) {
    std::filesystem::path p(a.dir);
    if (!p.has_filename()) p = p.parent_path();
    a.o.model_name = p.extension() == ".gguf" ? p.stem().string() : p.filename().string();
  }
  a.o.n_ctx = std::min<int64_t>(a.o.n_ctx, std::max<int64_t>(model.config.max_position_embeddings, 2));
  OpenAIServer server(model, tok, a.o);
  const int port = server.bind();
  std::thread waiter([&server, set] {
    int sig = 0;
    sigwait(&set, &sig);
    std::fprintf(stderr, "\nstopping (signal %d)\n", sig);
    server.stop();
  });
  std::fprintf(stderr, "distill serve: model '%s' on %s://%s:%d/v1 — %lld slots × %lld context, %d threads%s%s\n",
               a.o.model_name.c_str(), a.o.tls_cert.empty() ? "http" : "https", a.o.host.c_str(), port,
               (long long)a.o.n_parallel, (long long)a.o.n_ctx,
               num_threads(), a.o.keys_file.empty() ? ", no API keys (open to anyone who can connect)" : ", API keys required",
               a.o.usage_log.empty() ? "" : (", usage log " + a.o.usage_log).c_str());
  server.listen();
  pthread_kill(waiter.native_handle(), SIGTERM);  // listen ended for another reason: release the waiter
  waiter.join();
}

struct KeyAddArgs {
  std::string file, name;
  int64_t rpm = 0, tpd = 0;
  std::vector<std::string> models;
  bool watermark = false, admin = false;
};

void keys_add(const KeyAddArgs& a) {
  nlohmann::json j = {{"keys", nlohmann::json::array()}};
  if (std::filesystem::exists(a.file)) {
    std::ifstream in(a.file);
    std::stringstream ss;
    ss << in.rdbuf();
    KeyStore::parse(ss.str(), a.file);  // validates, names problems
    j = nlohmann::json::parse(ss.str());
  }
  for (const auto& k : j["keys"])
    if (k["name"] == a.name) fail("{}: a key named '{}' exists already", a.file, a.name);
  const std::string key = generate_api_key();
  nlohmann::json e = {{"name", a.name}, {"sha256", sha256_hex(key)}, {"requests_per_minute", a.rpm}, {"tokens_per_day", a.tpd}};
  if (!a.models.empty()) e["models"] = a.models;
  if (a.watermark) e["watermark"] = true;
  if (a.admin) e["admin"] = true;
  j["keys"].push_back(e);
  const std::string text = j.dump(2) + "\n";
  write_file_atomic(a.file, text.data(), text.size());
  std::fprintf(stderr, "added '%s' to %s (only its hash is stored; this is the only time the key is shown):\n", a.name.c_str(), a.file.c_str());
  std::printf("%s\n", key.c_str());
}

void usage_report(const std::string& path, const UsageThresholds& t) {
  std::vector<std::string> problems;
  const auto keys = summarize_usage(path, t, &problems);
  for (const auto& p : problems) std::fprintf(stderr, "%s\n", p.c_str());
  std::printf("%-16s %8s %6s %6s %6s %12s %12s %8s %8s %10s\n", "key", "requests", "ok", "4xx", "429", "prompt tok",
              "output tok", "logprob%", "distinct", "mean ms");
  for (const KeyUsage& u : keys) {
    std::printf("%-16s %8lld %6lld %6lld %6lld %12lld %12lld %7.0f%% %8lld %10.1f\n", u.key.c_str(), (long long)u.requests,
                (long long)u.ok, (long long)u.client_errors, (long long)u.rate_limited, (long long)u.prompt_tokens,
                (long long)u.completion_tokens, u.requests ? 100.0 * double(u.logprob_requests + u.echo_requests) / double(u.requests) : 0.0,
                (long long)u.distinct_prompts, u.requests ? u.latency_ms_sum / double(u.requests) : 0.0);
  }
  bool any = false;
  for (const KeyUsage& u : keys)
    if (!u.flags.empty()) {
      if (!any) std::printf("\nPossible extraction (distillation scraping):\n");
      any = true;
      std::printf("  %s (%s … %s):\n", u.key.c_str(), u.first.c_str(), u.last.c_str());
      for (const auto& f : u.flags) std::printf("    - %s\n", f.c_str());
    }
  if (!any) std::printf("\nNo key shows extraction patterns (keys with fewer than %lld requests are not judged).\n", (long long)t.min_requests);
}

}  // namespace

void register_serve(CLI::App& app) {
  auto a = std::make_shared<ServeArgs>();
  CLI::App* cmd = app.add_subcommand("serve", "OpenAI-compatible HTTP server for a model directory or GGUF file");
  cmd->add_option("model", a->dir, "Model directory (config.json, *.safetensors, tokenizer.json) or GGUF file")->required();
  add_lora_adapter_option(cmd, &a->lora);
  cmd->add_option("--host", a->o.host, "Address to listen on (loopback by default)")->capture_default_str();
  cmd->add_option("--port", a->o.port, "Port (0: any free port)")->capture_default_str()->check(CLI::Range(0, 65535));
  cmd->add_option("--name", a->o.model_name, "Model id clients send (default: the directory or file name)");
  cmd->add_option("--parallel", a->o.n_parallel, "Completions decoded together (KV-cache slots)")->capture_default_str()->check(CLI::Range(1, 256));
  cmd->add_option("--ctx", a->o.n_ctx, "Context per slot (capped by max_position_embeddings)")->capture_default_str()->check(CLI::Range(2, 1 << 20));
  cmd->add_option("--queue", a->o.max_queue, "Completions that may wait for a slot before 503")->capture_default_str()->check(CLI::Range(1, 100000));
  cmd->add_option("--max-body", a->o.max_body_bytes, "Largest request body in bytes")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--keys", a->o.keys_file, "API keys file (JSON, hashes; see `distill keys add`): every request needs a key");
  cmd->add_option("--usage-log", a->o.usage_log, "Append one JSON line per request to this file");
  cmd->add_flag("--log-content", a->o.log_content, "Also record prompt and completion text in the usage log");
  cmd->add_option("--chat-template", a->o.chat_template, "Chat format instead of the detected one");
  cmd->add_option("--tls-cert", a->o.tls_cert, "PEM certificate: serve HTTPS (with --tls-key)");
  cmd->add_option("--tls-key", a->o.tls_key, "PEM private key of --tls-cert");
  cmd->add_option("--cors", a->o.cors_origins, "Browser origin allowed to call the API (repeatable; * for any). Default: none");
  cmd->add_option("--request-timeout", a->o.request_timeout_s, "Seconds a completion may take in all; then it ends with finish_reason \"length\"")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--max-connections", a->o.http.max_connections, "Open connections; more are answered 503")->capture_default_str()->check(CLI::Range(1, 100000));
  cmd->add_option("--request-read-timeout", a->o.http.request_read_s, "Seconds a client has to send a whole request (header and body)")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--max-header", a->o.http.max_header_bytes, "Largest request header in bytes (431 beyond)")->capture_default_str()->check(CLI::Range(1024, 1 << 24));
  cmd->add_option("--max-n", a->o.limits.max_n, "Most choices per request (n)")->capture_default_str()->check(CLI::Range(1, 128));
  cmd->add_option("--watermark-key-file", a->watermark_key_file, "File holding the watermark's secret: answers to keys marked \"watermark\" (or all, --watermark-all) carry it");
  cmd->add_option("--watermark-key", a->watermark_key, "The watermark's secret itself (visible in the process list: prefer --watermark-key-file)");
  cmd->add_flag("--watermark-all", a->o.watermark_all, "Watermark every answer, not only those to keys marked \"watermark\"");
  a->o.watermark.delta = 2.0f;
  cmd->add_option("--watermark-delta", a->o.watermark.delta, "Logit bias on green tokens (strength)")->capture_default_str()->check(CLI::Range(0.0f, 20.0f));
  cmd->add_option("--watermark-gamma", a->o.watermark.gamma, "Share of green tokens")->capture_default_str()->check(CLI::Range(0.01f, 0.99f));
  cmd->add_option("--guard", a->o.guard, "Extraction guard: auto (on with --keys), on (callers without keys are addresses), off")
      ->capture_default_str()->check(CLI::IsMember({"auto", "on", "off"}));
  cmd->add_option("--guard-state", a->o.guard_options.state_file, "Keep the guard's state and the quota use here across restarts (JSON, written atomically)");
  cmd->add_option("--guard-log", a->o.guard_options.log_file, "Append the guard's alerts and the owner's decisions here (JSON lines)");
  cmd->add_option("--guard-webhook", a->o.guard_options.webhook_url, "POST each alert as JSON to this URL");
  cmd->add_option("--runs", a->o.runs_dir, "Directory of training runs (train/rl/demo outputs) the console lists with their curves and reports");
  cmd->add_option("--usage-log-max-mb", a->usage_log_max_mb, "Rotate the usage log to <file>.1 at this size (0: never)")->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->callback([a] {
    a->o.usage_log_max_bytes = int64_t(a->usage_log_max_mb * 1048576.0);
    serve(*a);
  });

  auto k = std::make_shared<KeyAddArgs>();
  CLI::App* keys = app.add_subcommand("keys", "Manage the API keys file of `distill serve`");
  keys->require_subcommand(1);
  CLI::App* add = keys->add_subcommand("add", "Create a key: printed once, only its SHA-256 is stored");
  add->add_option("file", k->file, "Keys file (created if missing)")->required();
  add->add_option("--name", k->name, "Who the key is for (shown in usage records)")->required();
  add->add_option("--rpm", k->rpm, "Requests per minute (0 = unlimited)")->capture_default_str()->check(CLI::NonNegativeNumber);
  add->add_option("--tokens-per-day", k->tpd, "Prompt + completion tokens per UTC day (0 = unlimited)")->capture_default_str()->check(CLI::NonNegativeNumber);
  add->add_option("--model", k->models, "Model the key may use (repeatable; default: all)");
  add->add_flag("--watermark", k->watermark, "Answers to this key carry the server's watermark");
  add->add_flag("--admin", k->admin, "The key may read and change the extraction guard (/v1/guard)");
  add->callback([k] { keys_add(*k); });

  auto file = std::make_shared<std::string>();
  auto t = std::make_shared<UsageThresholds>();
  CLI::App* usage = app.add_subcommand("usage", "Summarise a usage log per key and flag extraction patterns");
  auto guard_source = std::make_shared<std::string>(), admin_key_file = std::make_shared<std::string>();
  usage->add_option("file", *file, "Usage log written by `distill serve --usage-log`");
  usage->add_option("--min-requests", t->min_requests, "Judge only keys with at least this many requests")->capture_default_str();
  usage->add_option("--guard", *guard_source, "The extraction guard's report instead: a server's URL (http://host:port/v1) or a --guard-state file");
  usage->add_option("--admin-key-file", *admin_key_file, "File holding an admin key (for --guard URL; or DISTILL_ADMIN_KEY)");
  usage->callback([file, t, guard_source, admin_key_file] {
    if (!guard_source->empty()) return guard_report(*guard_source, *admin_key_file);
    if (file->empty()) fail("give the usage log to summarise (or --guard SOURCE for the guard's report)");
    usage_report(*file, *t);
  });

  auto g = std::make_shared<std::array<std::string, 4>>();  // name, action, server, admin key file
  CLI::App* guard = keys->add_subcommand("guard", "Reverse or set the extraction guard's verdict on a key of a running server");
  guard->add_option("name", (*g)[0], "The key's name (or addr:IP for a caller without keys)")->required();
  guard->add_option("action", (*g)[1], "reset (clear its level and history), allow (never act on it), auto")
      ->required()->check(CLI::IsMember({"reset", "allow", "auto"}));
  guard->add_option("--server", (*g)[2], "The server's URL, e.g. http://127.0.0.1:8080/v1")->required();
  guard->add_option("--admin-key-file", (*g)[3], "File holding an admin key (or DISTILL_ADMIN_KEY)");
  guard->callback([g] { guard_owner_action((*g)[2], (*g)[0], (*g)[1], (*g)[3]); });
}

}  // namespace distill
