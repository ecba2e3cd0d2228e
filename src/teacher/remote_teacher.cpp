#include "teacher/remote_teacher.h"

#include "core/error.h"
#include "core/progress.h"
#include "core/rng.h"
#include "formats/json_fields.h"
#include "net/http_client.h"
#include "teacher/remote_answer.h"
#include "tokenizer/tokenizer.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdlib>
#include <map>
#include <optional>
#include <mutex>
#include <set>
#include <thread>

namespace distill {

using nlohmann::json;

namespace {

using Clock = std::chrono::steady_clock;

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

  const std::string model = choose_model(client, headers, rs.model, rs.timeout_s);
  const VocabularyByBytes vocab(tok);
  // Records are committed in job order (prompt, sample), whatever order the answers arrive in: the
  // file is always a prefix of the uninterrupted run's, so a killed and resumed run writes the
  // same dataset record for record. Answers that arrive early wait in `ready`.
  std::vector<std::optional<TeacherRecord>> ready(jobs.size());
  std::vector<char> resolved(jobs.size(), 0);
  size_t committed = 0;
  std::mutex mu;  // guards the writer, the commit window, the report and the rate limiter
  std::atomic<size_t> next{0};
  Clock::time_point next_slot = Clock::now();
  const auto t0 = Clock::now();
  Progress progress("label", int64_t(jobs.size()));
  std::set<uint64_t> failed_prompts;
  auto worker = [&](int wid) {
    Rng jitter(s.seed * 31 + uint64_t(wid));
    for (size_t j; (j = next.fetch_add(1)) < jobs.size();) {
      const Job job = jobs[j];
      json body = {{"model", model}, {"max_tokens", s.max_tokens}, {"temperature", s.temperature},
                   {"seed", s.seed + job.sample}};
      if (rs.legacy_completions) {
        std::string text;
        for (const json& m : job.p->messages) text += jsonf::get_string(m, "content", "message");
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
            const RemoteAnswer a = parse_remote_answer(res.body, rs.legacy_completions);
            TeacherRecord r;
            r.prompt_index = job.p->index;
            r.sample_index = job.sample;
            r.prompt = job.p->ids;
            const int64_t soft = answer_to_record(tok, vocab, a, k, r);
            std::lock_guard<std::mutex> lock(mu);
            ++rep.records;
            rep.tokens += int64_t(r.completion.size());
            rep.positions += int64_t(r.completion.size());
            rep.soft_positions += soft;
            ready[j] = std::move(r);
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
      resolved[j] = 1;
      for (; committed < jobs.size() && resolved[committed]; ++committed)  // a failed job leaves a gap for --resume
        if (ready[committed]) out.append(*ready[committed]), ready[committed].reset();
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
