// POST /v1/chat/completions and /v1/completions: request → jobs → response (JSON or SSE).
#include "core/error.h"
#include "net/sse.h"
#include "serve/openai_response.h"
#include "serve/server_context.h"

#include <httplib.h>

#include <chrono>
#include <random>
#include <thread>

namespace distill {

using json = nlohmann::json;

namespace {

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

// The job's text and tokens so far (caller holds signal->mu).
std::string job_text(const GenerationJob& j) {
  std::string t;
  for (const auto& p : j.pieces) t += p.text;
  return t;
}

// One request in flight: its parsed form, its jobs (choice i = jobs[i]; prompt-major for several
// legacy prompts) and what the records need once it ends.
struct CompletionRun {
  OpenAIServer::Context& ctx;
  GenerationRequest req;
  std::string endpoint;
  Caller caller;
  ResponseMeta meta;
  std::vector<std::vector<int32_t>> prompts;  // token ids per prompt
  std::vector<std::string> prompt_texts;      // for echo
  std::vector<std::shared_ptr<GenerationJob>> jobs;
  std::shared_ptr<JobSignal> signal = std::make_shared<JobSignal>();
  int64_t prompt_tokens = 0;
  GuardRequest asked;                         // the request as the client sent it (for the guard)
  std::chrono::steady_clock::time_point t0;
  bool first_token_seen = false, finalized = false;

  CompletionRun(OpenAIServer::Context& c) : ctx(c) {}
  ~CompletionRun() {
    for (auto& j : jobs) j->cancel = true;  // a connection that ended early cancels what is left
  }

  // Caller holds signal->mu.
  int64_t completion_tokens_locked() const {
    int64_t n = 0;
    for (const auto& j : jobs) n += j->n_generated;
    return n;
  }
  int64_t completion_tokens() {
    std::lock_guard<std::mutex> lock(signal->mu);
    return completion_tokens_locked();
  }
  bool all_done() {
    std::lock_guard<std::mutex> lock(signal->mu);
    for (auto& j : jobs)
      if (!j->done) return false;
    return true;
  }
  void note_first_token() {
    if (!first_token_seen) first_token_seen = true, ctx.metrics.record_first_token(seconds_since(t0));
  }

  // Usage record, metrics and quota, once.
  void finalize(int status, const std::string& finish) {
    if (finalized) return;
    finalized = true;
    const int64_t completion = completion_tokens();
    const double latency = seconds_since(t0);
    ctx.metrics.record_request(endpoint, status, latency, prompt_tokens, completion);
    if (ctx.keys && caller.key) {
      ctx.keys->add_tokens(*caller.key, prompt_tokens + completion);
      if (ctx.guard) {
        const auto [day, tokens] = ctx.keys->tokens_used(*caller.key);
        ctx.guard->note_quota(caller.name, day, tokens);
      }
    }
    guard_observe(ctx, asked, req, prompts, completion, finish);
    if (caller.key) ctx.metrics.record_key_use(caller.name);
    if (!ctx.usage) return;
    // The prompt's hash is taken over its token ids: no decoding unless the text is logged.
    std::string id_bytes;
    for (const auto& p : prompts) id_bytes.append(reinterpret_cast<const char*>(p.data()), p.size() * sizeof(int32_t));
    json r = {{"time", utc_timestamp_now()}, {"key", caller.name}, {"model", req.model}, {"endpoint", endpoint},
              {"status", status}, {"prompt_tokens", prompt_tokens}, {"completion_tokens", completion},
              {"latency_ms", latency * 1000.0}, {"n", req.n}, {"stream", req.stream}, {"logprobs", req.logprobs},
              {"top_logprobs", req.top_logprobs}, {"echo", req.echo}, {"max_tokens", req.max_tokens},
              {"finish_reason", finish}, {"prompt_sha256", sha256_hex(id_bytes).substr(0, 32)}};
    if (!req.user.empty()) r["user"] = req.user;
    if (ctx.usage->log_content()) {
      std::string prompt_text, completion_text;
      for (const auto& p : prompts) prompt_text += ctx.tok->decode(p, false);
      {
        std::lock_guard<std::mutex> lock(signal->mu);
        for (const auto& j : jobs) completion_text += job_text(*j);
      }
      r["prompt"] = prompt_text, r["completion"] = completion_text;
    }
    ctx.usage->write(r);
  }
};


// A chat in the harmony format (GPT-OSS): replies carry channels; the final one is the content,
// the analysis the reasoning_content (as OpenAI-compatible servers return reasoning).
bool harmony(const GenerationRequest& req, const OpenAIServer::Context& ctx) {
  return req.chat && ctx.tmpl && ctx.tmpl->family() == ChatTemplate::Family::Harmony;
}

json chat_response(CompletionRun& run) {
  json choices = json::array();
  std::lock_guard<std::mutex> lock(run.signal->mu);
  for (size_t i = 0; i < run.jobs.size(); ++i) {
    const GenerationJob& j = *run.jobs[i];
    std::vector<TokenLogprob> tokens;
    for (const auto& p : j.pieces) tokens.insert(tokens.end(), p.tokens.begin(), p.tokens.end());
    json lp = nullptr;
    if (run.req.logprobs) lp = {{"content", chat_logprobs_content(*run.ctx.tok, tokens, true)}, {"refusal", nullptr}};
    json message = {{"role", "assistant"}, {"content", job_text(j)}, {"refusal", nullptr}};
    if (j.special_text) {
      const HarmonyReply h = parse_harmony_reply(job_text(j));
      message["content"] = h.final;
      message["reasoning_content"] = h.analysis;
    }
    choices.push_back({{"index", i},
                       {"message", message},
                       {"logprobs", lp},
                       {"finish_reason", j.finish_reason}});
  }
  return {{"id", run.meta.id}, {"object", "chat.completion"}, {"created", run.meta.created}, {"model", run.meta.model},
          {"system_fingerprint", run.meta.fingerprint}, {"choices", choices}, {"usage", usage_json(run.prompt_tokens, run.completion_tokens_locked())}};
}

// Legacy logprobs of a job: the prompt's tokens first when echoing (the first has no score),
// then the generated ones. Caller holds signal->mu.
json legacy_logprobs(CompletionRun& run, const GenerationJob& j, size_t prompt_index, bool with_prompt,
                     size_t from_piece, int64_t* offset) {
  LegacyLogprobs lp;
  const Tokenizer& tok = *run.ctx.tok;
  if (with_prompt) {
    const auto& ids = run.prompts[prompt_index];
    for (size_t t = 0; t < ids.size(); ++t)
      lp.add(tok, ids[t], t == 0 || j.prompt_scores.size() < t ? nullptr : &j.prompt_scores[t - 1], offset);
  }
  for (size_t p = from_piece; p < j.pieces.size(); ++p)
    for (const TokenLogprob& t : j.pieces[p].tokens) lp.add(tok, t.id, &t, offset);
  return lp.to_json();
}

json completion_response(CompletionRun& run) {
  json choices = json::array();
  std::lock_guard<std::mutex> lock(run.signal->mu);
  for (size_t i = 0; i < run.jobs.size(); ++i) {
    const GenerationJob& j = *run.jobs[i];
    const size_t p = i / size_t(run.req.n);
    json lp = nullptr;
    int64_t offset = 0;
    if (run.req.logprobs) lp = legacy_logprobs(run, j, p, run.req.echo, 0, &offset);
    choices.push_back({{"text", (run.req.echo ? run.prompt_texts[p] : "") + job_text(j)},
                       {"index", i},
                       {"logprobs", lp},
                       {"finish_reason", j.finish_reason}});
  }
  return {{"id", run.meta.id}, {"object", "text_completion"}, {"created", run.meta.created}, {"model", run.meta.model},
          {"system_fingerprint", run.meta.fingerprint}, {"choices", choices}, {"usage", usage_json(run.prompt_tokens, run.completion_tokens_locked())}};
}

// The first job error, if any (caller holds no lock).
std::string first_error(CompletionRun& run) {
  std::lock_guard<std::mutex> lock(run.signal->mu);
  for (auto& j : run.jobs)
    if (j->finish_reason == "error") return j->error.empty() ? "generation failed" : j->error;
  return "";
}

// SSE: emits what the jobs produced since the last call; returns false when the client is gone.
class StreamWriter {
public:
  explicit StreamWriter(std::shared_ptr<CompletionRun> run) : run_(std::move(run)), cursor_(run_->jobs.size()) {}

  // Called repeatedly by the HTTP layer until it marks the sink done.
  bool pump(httplib::DataSink& sink) {
    CompletionRun& run = *run_;
    // Tokens that arrive within kCoalesce of the last write go out together: one wake-up and one
    // write per ~15 ms instead of per token, which on a small machine leaves the cores to the model.
    // The first call answers at once (the role chunk: the client sees the stream open without
    // waiting for the first token); later ones wait for new output.
    if (!first_) {
      const double since = seconds_since(last_write_);
      if (since < kCoalesce) std::this_thread::sleep_for(std::chrono::duration<double>(kCoalesce - since));
      version_ = run.signal->wait(version_, 0.25);
    }
    first_ = false;
    std::vector<std::string> events;
    bool all_done = true, any_text = false;
    {
      std::lock_guard<std::mutex> lock(run.signal->mu);
      for (size_t i = 0; i < run.jobs.size(); ++i) collect(i, events);
      for (auto& j : run.jobs) all_done = all_done && j->done, any_text = any_text || !j->pieces.empty();
    }
    if (any_text) run.note_first_token();  // generated text, not the role chunk sent at once
    if (all_done) {
      const std::string err = first_error(run);
      if (!err.empty()) {
        events.push_back(dump_json(error_body(ApiError(500, "server_error", err))));
      } else if (run.req.include_usage) {
        json u = base();
        u["choices"] = json::array();
        u["usage"] = usage_json(run.prompt_tokens, run.completion_tokens());
        events.push_back(dump_json(u));
      }
      events.push_back("[DONE]");
    }
    std::string out;
    for (const auto& e : events) out += sse_data(e);
    if (out.empty() && seconds_since(last_write_) > 2.0) out = sse_comment("keep-alive");  // also notices a gone client
    if (!out.empty()) {
      if (!sink.write(out.data(), out.size())) return false;
      last_write_ = std::chrono::steady_clock::now();
    }
    if (all_done) {
      run.finalize(200, finish_summary());
      sink.done();
    }
    return true;
  }

private:
  // The fields every chunk carries.
  json base() {
    const CompletionRun& run = *run_;
    json c = {{"id", run.meta.id}, {"object", run.req.chat ? "chat.completion.chunk" : "text_completion"},
              {"created", run.meta.created}, {"model", run.meta.model}, {"system_fingerprint", run.meta.fingerprint}};
    if (run.req.include_usage) c["usage"] = nullptr;
    return c;
  }

  // Events for job i since its cursor (caller holds signal->mu).
  void collect(size_t i, std::vector<std::string>& events) {
    CompletionRun& run = *run_;
    GenerationJob& j = *run.jobs[i];
    Cursor& c = cursor_[i];
    if (c.finished) return;
    // The chat role chunk goes out at once (the client sees the stream open); an echo waits for
    // the prompt's scores, which exist once generation has begun.
    const bool started = run.req.chat || !j.pieces.empty() || j.done;
    if (!c.opened && started) {
      c.opened = true;
      if (run.req.chat) {
        json e = base();
        e["choices"] = json::array({{{"index", i}, {"delta", {{"role", "assistant"}, {"content", ""}, {"refusal", nullptr}}},
                                     {"logprobs", nullptr}, {"finish_reason", nullptr}}});
        events.push_back(dump_json(e));
      } else if (run.req.echo) {  // the prompt comes first, with its scores when asked
        const size_t p = i / size_t(run.req.n);
        json lp = run.req.logprobs ? legacy_logprobs(run, j, p, true, j.pieces.size(), &c.offset) : json(nullptr);
        json e = base();
        e["choices"] = json::array({{{"text", run.prompt_texts[p]}, {"index", i}, {"logprobs", lp}, {"finish_reason", nullptr}}});
        events.push_back(dump_json(e));
      }
    }
    for (; c.seen < j.pieces.size(); ++c.seen) {
      const auto& piece = j.pieces[c.seen];
      if (piece.text.empty() && (!run.req.logprobs || piece.tokens.empty())) continue;
      json e = base();
      if (run.req.chat) {
        json lp = run.req.logprobs ? json{{"content", chat_logprobs_content(*run.ctx.tok, piece.tokens, c.seen == 0)}, {"refusal", nullptr}}
                                   : json(nullptr);
        json delta = {{"content", piece.text}};
        if (j.special_text) {  // channels: reasoning_content and content deltas, markup removed
          const HarmonyReply h = c.harmony.push(piece.text);
          if (h.analysis.empty() && h.final.empty() && !run.req.logprobs) continue;
          delta = {{"content", h.final}};
          if (!h.analysis.empty()) delta["reasoning_content"] = h.analysis;
        }
        e["choices"] = json::array({{{"index", i}, {"delta", delta}, {"logprobs", lp}, {"finish_reason", nullptr}}});
      } else {
        json lp = nullptr;
        if (run.req.logprobs) {
          LegacyLogprobs l;
          for (const auto& t : piece.tokens) l.add(*run.ctx.tok, t.id, &t, &c.offset);
          lp = l.to_json();
        }
        e["choices"] = json::array({{{"text", piece.text}, {"index", i}, {"logprobs", lp}, {"finish_reason", nullptr}}});
      }
      events.push_back(dump_json(e));
    }
    if (j.done && j.finish_reason != "error") {
      if (j.special_text) {  // what the channel parser still held back
        const HarmonyReply h = c.harmony.finish();
        if (!h.analysis.empty() || !h.final.empty()) {
          json delta = {{"content", h.final}};
          if (!h.analysis.empty()) delta["reasoning_content"] = h.analysis;
          json e = base();
          e["choices"] = json::array({{{"index", i}, {"delta", delta}, {"logprobs", nullptr}, {"finish_reason", nullptr}}});
          events.push_back(dump_json(e));
        }
      }
      c.finished = true;
      json e = base();
      if (run.req.chat)
        e["choices"] = json::array({{{"index", i}, {"delta", json::object()}, {"logprobs", nullptr}, {"finish_reason", j.finish_reason}}});
      else
        e["choices"] = json::array({{{"text", ""}, {"index", i}, {"logprobs", nullptr}, {"finish_reason", j.finish_reason}}});
      events.push_back(dump_json(e));
    }
  }

  std::string finish_summary() {
    std::lock_guard<std::mutex> lock(run_->signal->mu);
    return run_->jobs.empty() ? "" : run_->jobs[0]->finish_reason;
  }

  static constexpr double kCoalesce = 0.015;
  struct Cursor {
    size_t seen = 0;
    bool opened = false, finished = false;
    int64_t offset = 0;  // legacy text_offset
    HarmonyStream harmony;  // (harmony chats) the reply's channels as they stream
  };
  std::shared_ptr<CompletionRun> run_;
  std::vector<Cursor> cursor_;
  uint64_t version_ = 0;
  bool first_ = true;
  std::chrono::steady_clock::time_point last_write_ = std::chrono::steady_clock::now();
};

// Token ids of the request's prompts; throws ApiError for prompts that do not fit.
void tokenize_prompts(CompletionRun& run) {
  const Tokenizer& tok = *run.ctx.tok;
  const int64_t n_ctx = run.ctx.opt.n_ctx;
  for (const auto& [id, bias] : run.req.sampler.logit_bias)
    if (id >= run.ctx.model.config.n_vocab)
      throw invalid_field("logit_bias", fmt::format("'logit_bias' names token {}, outside the vocabulary of {} tokens", id,
                                                    run.ctx.model.config.n_vocab));
  if (run.req.chat) {
    if (!run.req.reasoning_effort.empty() && harmony(run.req, run.ctx)) {  // this request's effort
      ChatTemplate t = *run.ctx.tmpl;
      t.set_reasoning_effort(run.req.reasoning_effort);
      run.prompts.push_back(encode_prompt(tok, &t, run.req.messages));
    } else {
      run.prompts.push_back(encode_prompt(tok, run.ctx.tmpl.get(), run.req.messages));
    }
    run.prompt_texts.emplace_back();
  } else {
    for (size_t i = 0; i < run.req.prompts.size(); ++i) {
      if (!run.req.prompt_ids[i].empty()) {
        for (int32_t id : run.req.prompt_ids[i])
          if (id >= run.ctx.model.config.n_vocab)
            throw invalid_field("prompt", fmt::format("token id {} is outside the vocabulary of {} tokens", id, run.ctx.model.config.n_vocab));
        run.prompts.push_back(run.req.prompt_ids[i]);
        run.prompt_texts.push_back(tok.decode(run.req.prompt_ids[i], false));
      } else {
        // Like llama.cpp's server: BOS added, special tokens in the text parsed (pre-rendered chats).
        run.prompts.push_back(tok.encode(run.req.prompts[i], true, true));
        run.prompt_texts.push_back(run.req.prompts[i]);
      }
    }
  }
  for (const auto& p : run.prompts) {
    if (p.empty()) throw invalid_field(run.req.chat ? "messages" : "prompt", "the prompt is empty");
    if (int64_t(p.size()) >= n_ctx)
      throw ApiError(400, "invalid_request_error",
                     fmt::format("This model's maximum context length is {} tokens; the prompt has {} tokens", n_ctx, p.size()),
                     run.req.chat ? "messages" : "prompt", "context_length_exceeded");
    run.prompt_tokens += int64_t(p.size());
  }
}

}  // namespace

void handle_completion(OpenAIServer::Context& ctx, const httplib::Request& hreq, httplib::Response& res, bool chat,
                       const Caller& caller, std::chrono::steady_clock::time_point t0) {
  auto run = std::make_shared<CompletionRun>(ctx);
  run->endpoint = chat ? "chat.completions" : "completions";
  run->caller = caller;
  run->t0 = t0;
  try {
    json body;
    try {
      body = json::parse(hreq.body);
    } catch (const json::exception& e) {
      throw ApiError(400, "invalid_request_error", fmt::format("the body is not valid JSON: {}", e.what()));
    }
    run->req = chat ? parse_chat_request(body, ctx.opt.limits) : parse_completion_request(body, ctx.opt.limits);
    if (run->req.model != ctx.opt.model_name)
      throw ApiError(404, "invalid_request_error",
                     fmt::format("The model '{}' does not exist; this server serves '{}'", run->req.model, ctx.opt.model_name),
                     "model", "model_not_found");
    if (ctx.keys && caller.key) {
      if (!ctx.keys->allows_model(*caller.key, run->req.model))
        throw ApiError(403, "permission_error", fmt::format("the key '{}' may not use the model '{}'", caller.name, run->req.model),
                       "model", "model_not_allowed");
      const QuotaDecision q = ctx.keys->admit(*caller.key);
      if (!q.allowed) {
        ApiError e(429, "rate_limit_error", q.reason, "", "rate_limit_exceeded");
        e.retry_after_s = q.retry_after_s;
        ctx.metrics.record_rejected("quota");
        throw e;
      }
    }
    run->asked = guard_admit(ctx, caller, run->req);
    tokenize_prompts(*run);
  } catch (const ApiError& e) {
    record_refusal(ctx, run->endpoint, caller, e, t0);
    return send_error(res, e);
  } catch (const Error& e) {  // e.g. a chat the template cannot render
    ApiError api(400, "invalid_request_error", e.what());
    record_refusal(ctx, run->endpoint, caller, api, t0);
    return send_error(res, api);
  }

  const GenerationRequest& r = run->req;
  run->meta = {new_response_id(chat ? "chatcmpl" : "cmpl"), int64_t(std::time(nullptr)), ctx.opt.model_name, ctx.fingerprint};
  const uint64_t base_seed = r.has_seed ? r.sampler.seed : std::random_device{}() * 0x100000001ull + std::random_device{}();
  for (size_t p = 0; p < run->prompts.size(); ++p)
    for (int i = 0; i < r.n; ++i) {
      auto job = std::make_shared<GenerationJob>();
      job->prompt = run->prompts[p];
      job->sampler = r.sampler;
      job->sampler.seed = base_seed + uint64_t(run->jobs.size());  // choice i: seed + i
      const int64_t room = ctx.opt.n_ctx - int64_t(job->prompt.size());
      job->max_new_tokens = r.max_tokens < 0 ? room : std::min(r.max_tokens, room);
      job->deadline = t0 + std::chrono::duration_cast<std::chrono::steady_clock::duration>(
                               std::chrono::duration<double>(ctx.opt.request_timeout_s));
      job->stop = r.stop;
      job->special_text = harmony(run->req, ctx);  // its channel markup splits reasoning from content
      job->logprobs = r.logprobs;
      job->top_logprobs = r.top_logprobs;
      job->prompt_logprobs = !chat && r.echo && r.logprobs;
      if (ctx.opt.watermark.enabled() && (ctx.opt.watermark_all || (caller.key && ctx.keys->key(*caller.key).watermark)))
        job->watermark = ctx.opt.watermark;
      job->signal = run->signal;
      run->jobs.push_back(job);
    }
  if (!ctx.scheduler->submit(run->jobs)) {
    ApiError e(503, "server_error", "the server is at capacity; retry shortly", "", "server_overloaded");
    e.retry_after_s = 1;
    ctx.metrics.record_rejected("queue_full");
    run->jobs.clear();
    record_refusal(ctx, run->endpoint, caller, e, t0);
    return send_error(res, e);
  }

  if (r.stream) {
    auto writer = std::make_shared<StreamWriter>(run);
    res.set_header("Cache-Control", "no-cache");
    res.set_header("X-Accel-Buffering", "no");
    res.set_chunked_content_provider(
        "text/event-stream", [writer](size_t, httplib::DataSink& sink) { return writer->pump(sink); },
        [run](bool success) {
          if (!success) {  // the client left: cancel, record as 499 (client closed request)
            for (auto& j : run->jobs) j->cancel = true;
            run->finalize(499, "cancelled");
          }
        });
    return;
  }

  // Not streaming: wait a little for a short answer to send it whole; past that, the body is
  // sent chunked, with a space (JSON allows leading whitespace) every second so that a client
  // that left is noticed and its completions cancelled.
  auto build = [run, chat]() -> std::pair<int, std::string> {
    const std::string err = first_error(*run);
    if (!err.empty()) return {500, dump_json(error_body(ApiError(500, "server_error", err)))};
    return {200, dump_json(chat ? chat_response(*run) : completion_response(*run))};
  };
  uint64_t version = 0;
  const auto wait_start = std::chrono::steady_clock::now();
  while (!run->all_done() && seconds_since(wait_start) < 1.0) version = run->signal->wait(version, 0.1);
  if (run->all_done()) {
    auto [status, body] = build();
    res.status = status;
    res.set_content(body, "application/json");
    run->finalize(status, status == 200 ? run->jobs[0]->finish_reason : "error");
    return;
  }
  res.set_chunked_content_provider(
      "application/json",
      [run, build, version](size_t, httplib::DataSink& sink) mutable {
        version = run->signal->wait(version, 1.0);
        if (!run->all_done()) return sink.write(" ", 1);
        auto [status, body] = build();
        if (!sink.write(body.data(), body.size())) return false;
        run->finalize(status, run->jobs[0]->finish_reason);
        sink.done();
        return true;
      },
      [run](bool success) {
        if (!success) {
          for (auto& j : run->jobs) j->cancel = true;
          run->finalize(499, "cancelled");
        }
      });
}

}  // namespace distill
