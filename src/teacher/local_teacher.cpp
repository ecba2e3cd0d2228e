#include "teacher/local_teacher.h"

#include "core/error.h"
#include "core/progress.h"
#include "generate/batch_generate.h"
#include "model/decoder.h"
#include "tokenizer/tokenizer.h"

#include <algorithm>
#include <chrono>

namespace distill {

namespace {

// Top-k of the teacher along a given completion: one batched forward over prompt + completion.
std::vector<TeacherRecord> score(const Model& teacher, const std::vector<const LabelPrompt*>& batch,
                                 const std::vector<std::vector<int32_t>>& completions, int k) {
  size_t longest = 0;
  for (size_t i = 0; i < batch.size(); ++i) longest = std::max(longest, batch[i]->ids.size() + completions[i].size());
  KVCache cache(teacher.config, int64_t(batch.size()), int64_t(longest));
  Decoder dec(teacher);
  Batch b;
  for (size_t i = 0; i < batch.size(); ++i) {
    const auto& p = batch[i]->ids;
    const auto& c = completions[i];
    for (size_t t = 0; t < p.size() + c.size(); ++t) {
      const int32_t id = t < p.size() ? p[t] : c[t - p.size()];
      // logits wanted where they predict a completion token: the last prompt token onwards
      b.add(id, int32_t(t), int32_t(i), t + 1 >= p.size() && t + 1 < p.size() + c.size());
    }
  }
  const float* logits = dec.forward(b, cache);
  const int64_t V = teacher.config.n_vocab;
  std::vector<TeacherRecord> out;
  int64_t row = 0;
  for (size_t i = 0; i < batch.size(); ++i) {
    TeacherRecord r;
    r.prompt_index = batch[i]->index;
    r.prompt = batch[i]->ids;
    r.completion = completions[i];
    r.finished = true;
    r.k = k;
    r.soft.assign(r.completion.size(), 1);
    r.topk_ids.resize(r.completion.size() * size_t(k));
    r.topk_logp.resize(r.completion.size() * size_t(k));
    for (size_t j = 0; j < r.completion.size(); ++j, ++row)
      top_k_logprobs(logits + row * V, V, k, r.topk_ids.data() + j * size_t(k), r.topk_logp.data() + j * size_t(k));
    out.push_back(std::move(r));
  }
  return out;
}

}  // namespace

LabelReport label_with_local_teacher(const Model& teacher, const Tokenizer& tok, const std::vector<LabelPrompt>& prompts,
                                     const LabelSettings& s, TeacherDatasetWriter& out,
                                     const std::function<TeacherRecord(const TeacherRecord&)>& to_student) {
  LabelReport rep;
  // A prompt the teacher's context cannot hold is refused before any work, as `run` refuses it
  // (a silently truncated or overflowing prompt would label garbage).
  const int64_t n_ctx = teacher.config.max_position_embeddings;
  for (const LabelPrompt& p : prompts)
    if (int64_t(p.ids.size()) >= n_ctx)
      fail("prompt {} (line {}) has {} tokens; the teacher's context holds {}", p.index, p.index + 1, p.ids.size(), n_ctx);
  const auto t0 = std::chrono::steady_clock::now();
  const int k = int(std::min<int64_t>(s.top_k, teacher.config.n_vocab));
  const int64_t n_batches = (int64_t(prompts.size()) + s.batch - 1) / s.batch;
  Progress progress("label", n_batches);
  for (int64_t b = 0; b < n_batches; ++b) {
    std::vector<const LabelPrompt*> batch;
    for (int64_t i = b * s.batch; i < std::min<int64_t>(int64_t(prompts.size()), (b + 1) * s.batch); ++i)
      batch.push_back(&prompts[size_t(i)]);
    const int64_t samples = s.score_completions ? 1 : s.samples;
    bool all_done = true;
    for (const LabelPrompt* p : batch)
      for (int64_t g = 0; g < samples; ++g) all_done &= out.done(p->index, uint32_t(g));
    if (all_done) {
      rep.skipped += int64_t(batch.size()) * samples;
      continue;
    }
    std::vector<TeacherRecord> records;
    if (s.score_completions) {
      std::vector<std::vector<int32_t>> completions;
      // a given completion is a whole reply: it ends with the end-of-turn token, as generated ones do
      for (const LabelPrompt* p : batch) {
        completions.push_back(tok.encode(*p->completion, false, false));
        if (tok.eos_id() >= 0) completions.back().push_back(tok.eos_id());
      }
      records = score(teacher, batch, completions, k);
    } else {
      std::vector<std::vector<int32_t>> ids;
      BatchGenerateOptions o;
      o.group = samples;
      o.max_new_tokens = s.max_tokens;
      o.sampler.temperature = s.temperature;
      o.sampler.top_k = 0, o.sampler.top_p = s.top_p, o.sampler.min_p = 0.0f;
      o.top_k_logprobs = k;
      for (const LabelPrompt* p : batch) ids.push_back(p->ids), o.prompt_seeds.push_back(s.seed * 7919u + p->index);
      for (SampledCompletion& c : generate_batch(teacher, tok, ids, o, nullptr)) {
        TeacherRecord r;
        r.prompt_index = batch[size_t(c.prompt_index)]->index;
        r.sample_index = uint32_t(c.sample_index);
        r.prompt = ids[size_t(c.prompt_index)];
        r.completion = std::move(c.completion);
        r.finished = c.finished;
        r.k = k;
        r.soft.assign(r.completion.size(), 1);
        r.topk_ids = std::move(c.topk_ids);
        r.topk_logp = std::move(c.topk_logp);
        records.push_back(std::move(r));
      }
    }
    for (const TeacherRecord& r : records) {
      if (out.done(r.prompt_index, r.sample_index)) {
        ++rep.skipped;
        continue;
      }
      out.append(to_student ? to_student(r) : r);
      ++rep.records;
      rep.tokens += int64_t(r.completion.size());
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    progress.update(b + 1, std::to_string(rep.records) + " records", secs > 0 ? double(rep.tokens) / secs : 0, "tok/s");
  }
  progress.finish();
  rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  return rep;
}

}  // namespace distill
