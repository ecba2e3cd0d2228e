#include "teacher/remote_teacher.h"

#include "core/error.h"
#include "core/progress.h"
#include "core/rng.h"
#include "net/http_client.h"
#include "tokenizer/tokenizer.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <map>
#include <mutex>
#include <set>
#include <thread>

namespace distill {

using nlohmann::json;

namespace {

using Clock = std::chrono::steady_clock;

// One answer of the teacher: text and, per teacher token, (text, logprob, alternatives).
struct RemoteToken {
  std::string text;
  std::vector<std::pair<std::string, float>> top;  // alternatives, the chosen one included
};
struct RemoteAnswer {
  std::string text;
  bool finished = false;
  std::vector<RemoteToken> tokens;
};

// A token's text: the exact "bytes" when the API gives them (tokens may split a character).
std::string token_text(const json& t) {
  if (t.contains("bytes") && t["bytes"].is_array()) {
    std::string s;
    for (const json& b : t["bytes"]) s += char(b.get<int>());
    return s;
  }
  return t.value("token", "");
}

RemoteAnswer parse_answer(const std::string& body, bool legacy) {
  const json j = json::parse(body);  // throws json::exception: retried
  const json& c = j.at("choices").at(0);
  RemoteAnswer a;
  a.finished = c.value("finish_reason", "") == "stop";
  if (!legacy) {
    const json& msg = c.at("message");
    a.text = msg.at("content").is_string() ? msg["content"].get<std::string>() : "";
    if (c.contains("logprobs") && c["logprobs"].is_object() && c["logprobs"].contains("content") && c["logprobs"]["content"].is_array()) {
      for (const json& t : c["logprobs"]["content"]) {
        RemoteToken rt{token_text(t), {}};
        if (t.contains("top_logprobs") && t["top_logprobs"].is_array())
          for (const json& alt : t["top_logprobs"]) rt.top.push_back({token_text(alt), alt.at("logprob").get<float>()});
        a.tokens.push_back(std::move(rt));
      }
    }
  } else {
    a.text = c.at("text").get<std::string>();
    if (c.contains("logprobs") && c["logprobs"].is_object() && c["logprobs"].contains("tokens")) {
      const json& lp = c["logprobs"];
      for (size_t i = 0; i < lp["tokens"].size(); ++i) {
        RemoteToken rt{lp["tokens"][i].get<std::string>(), {}};
        if (lp.contains("top_logprobs") && lp["top_logprobs"].is_array() && i < lp["top_logprobs"].size() &&
            lp["top_logprobs"][i].is_object())
          for (const auto& [tok, v] : lp["top_logprobs"][i].items()) rt.top.push_back({tok, v.get<float>()});
        a.tokens.push_back(std::move(rt));
      }
    }
  }
  return a;
}

// Student-token soft labels from the teacher's: position j gets the teacher's top-k when a
// teacher token covers exactly the bytes of student token j and all k alternatives are single,
// distinct student tokens.
void map_soft_labels(const Tokenizer& tok, const RemoteAnswer& a, int k, TeacherRecord& r, int64_t* soft) {
  r.k = k;
  r.soft.assign(r.completion.size(), 0);
  r.topk_ids.assign(r.completion.size() * size_t(k), -1);
  r.topk_logp.assign(r.completion.size() * size_t(k), -INFINITY);
  if (k == 0 || a.tokens.empty()) return;
  // byte spans of the student tokens (the answer text re-decoded token by token)
  std::vector<std::pair<size_t, size_t>> spans;
  size_t pos = 0;
  std::string joined;
  for (int32_t id : r.completion) {
    const std::string piece = tok.decode({id}, true);
    spans.push_back({pos, pos + piece.size()});
    pos += piece.size();
    joined += piece;
  }
  std::map<std::pair<size_t, size_t>, size_t> teacher_at;  // byte span -> teacher token index
  size_t tp = 0;
  for (size_t i = 0; i < a.tokens.size(); ++i) {
    teacher_at[{tp, tp + a.tokens[i].text.size()}] = i;
    tp += a.tokens[i].text.size();
  }
  if (joined != a.text) return;  // the text did not survive the round trip: no alignment
  for (size_t j = 0; j < spans.size(); ++j) {
    auto it = teacher_at.find(spans[j]);
    if (it == teacher_at.end()) continue;
    const RemoteToken& t = a.tokens[it->second];
    if (int(t.top.size()) < k) continue;
    std::set<int32_t> seen;
    bool ok = true;
    for (int i = 0; i < k && ok; ++i) {
      const std::vector<int32_t> ids = tok.encode(t.top[size_t(i)].first, false, false);
      ok = ids.size() == 1 && seen.insert(ids[0]).second;
      if (ok) r.topk_ids[j * size_t(k) + size_t(i)] = ids[0], r.topk_logp[j * size_t(k) + size_t(i)] = t.top[size_t(i)].second;
    }
    if (!ok || !seen.count(r.completion[j])) {
      std::fill_n(r.topk_ids.begin() + int64_t(j) * k, k, -1);
      continue;
    }
    r.soft[j] = 1;
    ++*soft;
  }
  for (size_t j = 0; j < r.soft.size(); ++j)  // unused slots must still encode: point them at id 0
    if (!r.soft[j]) std::fill_n(r.topk_ids.begin() + int64_t(j) * k, k, 0);
}

}  // namespace

RemoteReport label_with_remote_teacher(const std::string& base_url, const Tokenizer& tok,
                                       const std::vector<LabelPrompt>& prompts, const LabelSettings& s,
                                       const RemoteSettings& rs, TeacherDatasetWriter& out) {
  RemoteReport rep;
  const HttpClient client(base_url, rs.ca_file);
  std::map<std::string, std::string> headers;
  if (const char* key = std::getenv(rs.api_key_env.c_str()); key && *key) headers["Authorization"] = std::string("Bearer ") + key;
  const int k = std::min(s.top_k, 20);  // the OpenAI API's maximum
  struct Job {
    const LabelPrompt* p;
    uint32_t sample;
  };
  std::vector<Job> jobs;
  for (const LabelPrompt& p : prompts)
    for (int64_t g = 0; g < s.samples; ++g)
      if (!out.done(p.index, uint32_t(g))) jobs.push_back({&p, uint32_t(g)});

  std::mutex mu;  // guards the writer, the report and the rate limiter
  std::atomic<size_t> next{0};
  Clock::time_point next_slot = Clock::now();
  const auto t0 = Clock::now();
  Progress progress("label", int64_t(jobs.size()));
  std::set<uint64_t> failed_prompts;
  auto worker = [&](int wid) {
    Rng jitter(s.seed * 31 + uint64_t(wid));
    for (size_t j; (j = next.fetch_add(1)) < jobs.size();) {
      const Job job = jobs[j];
      json body = {{"model", rs.model}, {"max_tokens", s.max_tokens}, {"temperature", s.temperature},
                   {"seed", s.seed + job.sample}};
      if (rs.legacy_completions) {
        std::string text;
        for (const json& m : job.p->messages) text += m["content"].get<std::string>();
        body["prompt"] = text;
        if (k > 0) body["logprobs"] = k;
      } else {
        body["messages"] = job.p->messages;
        if (k > 0) body["logprobs"] = true, body["top_logprobs"] = k;
      }
      const std::string payload = body.dump();
      std::string last_error;
      bool ok = false;
      for (int attempt = 0; attempt <= rs.retries && !ok; ++attempt) {
        double wait = 0;
        if (rs.requests_per_s > 0) {  // client-side rate limit: one slot every 1/rps seconds
          std::lock_guard<std::mutex> lock(mu);
          const auto now = Clock::now();
          if (next_slot < now) next_slot = now;
          wait = std::chrono::duration<double>(next_slot - now).count();
          next_slot += std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(1.0 / rs.requests_per_s));
        }
        if (wait > 0) std::this_thread::sleep_for(std::chrono::duration<double>(wait));
        const HttpResult res = client.post_json(rs.legacy_completions ? "/completions" : "/chat/completions", payload,
                                                headers, rs.timeout_s);
        {
          std::lock_guard<std::mutex> lock(mu);
          ++rep.requests;
          if (attempt > 0) ++rep.retries;
        }
        bool retry = true;
        double retry_after = 0;
        if (res.kind == HttpResult::Kind::Ok) {
          try {
            const RemoteAnswer a = parse_answer(res.body, rs.legacy_completions);
            TeacherRecord r;
            r.prompt_index = job.p->index;
            r.sample_index = job.sample;
            r.prompt = job.p->ids;
            r.completion = tok.encode(a.text, false, false);
            if (a.finished && tok.eos_id() >= 0) r.completion.push_back(tok.eos_id());  // the teacher ended its turn
            r.finished = a.finished;
            int64_t soft = 0;
            map_soft_labels(tok, a, k, r, &soft);
            if (soft == 0) r.k = 0, r.soft.clear(), r.topk_ids.clear(), r.topk_logp.clear();
            std::lock_guard<std::mutex> lock(mu);
            out.append(r);
            ++rep.records;
            rep.tokens += int64_t(r.completion.size());
            rep.positions += int64_t(r.completion.size());
            rep.soft_positions += soft;
            ok = true;
          } catch (const std::exception& e) {
            last_error = std::string("unreadable response: ") + e.what();
          }
        } else if (res.kind == HttpResult::Kind::HttpError) {
          last_error = fmt::format("HTTP {}: {}", res.status, res.body.substr(0, 200));
          retry = res.status == 429 || res.status >= 500;
          if (auto it = res.headers.find("retry-after"); it != res.headers.end()) retry_after = std::atof(it->second.c_str());
        } else {
          last_error = res.kind == HttpResult::Kind::Timeout ? "timed out" : "connection failed: " + res.error;
        }
        if (ok || !retry) break;
        if (attempt < rs.retries) {
          // exponential backoff with jitter in [0.5, 1.5), at least what Retry-After asks, at most 60 s
          const double backoff = std::min(60.0, rs.backoff_s * std::pow(2.0, attempt)) * (0.5 + double(jitter.uniform()));
          std::this_thread::sleep_for(std::chrono::duration<double>(std::min(120.0, std::max(backoff, retry_after))));
        }
      }
      std::lock_guard<std::mutex> lock(mu);
      if (!ok && failed_prompts.insert(job.p->index).second) rep.failed.push_back({job.p->index, last_error});
      const double secs = std::chrono::duration<double>(Clock::now() - t0).count();
      progress.update(int64_t(j + 1), std::to_string(rep.records) + " done, " + std::to_string(rep.failed.size()) + " failed",
                      secs > 0 ? double(rep.tokens) / secs : 0.0, "tok/s");
    }
  };
  std::vector<std::thread> threads;
  for (int w = 0; w < std::max(1, rs.concurrency); ++w) threads.emplace_back(worker, w);
  for (auto& t : threads) t.join();
  progress.finish();
  std::sort(rep.failed.begin(), rep.failed.end());
  rep.seconds = std::chrono::duration<double>(Clock::now() - t0).count();
  return rep;
}

}  // namespace distill
