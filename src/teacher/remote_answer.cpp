#include "teacher/remote_answer.h"

#include "core/error.h"
#include "formats/json_fields.h"
#include "net/http_client.h"
#include "tokenizer/tokenizer.h"

#include <cmath>
#include <limits>
#include <map>
#include <set>

namespace distill {

using nlohmann::json;

namespace {

std::string at(std::string_view path, size_t i) { return std::string(path) + "[" + std::to_string(i) + "]"; }

// An OpenAI "bytes" array (each 0..255), or the token text when there is none.
std::string token_bytes(const json& t, std::string_view path) {
  if (jsonf::has(t, "bytes")) {
    const json& b = jsonf::get_array(t, "bytes", path);
    std::string s;
    const std::string bp = jsonf::sub(path, "bytes");
    for (size_t i = 0; i < b.size(); ++i) s += char(jsonf::as_int(b[i], at(bp, i), 0, 255));
    return s;
  }
  return jsonf::get_string(t, "token", path);
}

int32_t token_id(const json& t, std::string_view path) {
  return int32_t(jsonf::get_int(t, "id", path, 0, std::numeric_limits<int32_t>::max(), -1));
}

float logprob_of(const json& t, std::string_view path) {
  const double lp = jsonf::as_number(jsonf::field(t, "logprob", path), jsonf::sub(path, "logprob"));
  if (lp > 1e-3) fail("{}: a log-probability must be ≤ 0, got {}", jsonf::sub(path, "logprob"), lp);
  return float(std::min(lp, 0.0));
}

void parse_chat_logprobs(const json& content, std::string_view path, RemoteAnswer& a) {
  for (size_t i = 0; i < content.size(); ++i) {
    const std::string tp = at(path, i);
    const json& t = content[i];
    if (!t.is_object()) fail("{}: expected an object, got {}", tp, jsonf::show(t));
    RemoteToken rt{token_bytes(t, tp), token_id(t, tp), logprob_of(t, tp), {}};
    if (jsonf::has(t, "top_logprobs")) {
      const std::string ap = jsonf::sub(tp, "top_logprobs");
      const json& alts = jsonf::get_array(t, "top_logprobs", tp);
      for (size_t j = 0; j < alts.size(); ++j) {
        const std::string p = at(ap, j);
        if (!alts[j].is_object()) fail("{}: expected an object, got {}", p, jsonf::show(alts[j]));
        rt.top.push_back({token_bytes(alts[j], p), token_id(alts[j], p), logprob_of(alts[j], p)});
      }
    }
    a.tokens.push_back(std::move(rt));
  }
}

// Legacy completions: logprobs {tokens[], top_logprobs[{text: logprob}]} (no bytes, no ids).
void parse_legacy_logprobs(const json& lp, std::string_view path, RemoteAnswer& a) {
  const json& tokens = jsonf::get_array(lp, "tokens", path);
  const json* tops = jsonf::has(lp, "top_logprobs") ? &jsonf::get_array(lp, "top_logprobs", path) : nullptr;
  for (size_t i = 0; i < tokens.size(); ++i) {
    RemoteToken rt{jsonf::as_string(tokens[i], at(jsonf::sub(path, "tokens"), i)), -1, 0.0f, {}};
    if (tops && i < tops->size() && (*tops)[i].is_object())
      for (const auto& [text, v] : (*tops)[i].items()) {
        const double l = jsonf::as_number(v, at(jsonf::sub(path, "top_logprobs"), i) + "." + text);
        rt.top.push_back({text, -1, float(std::min(l, 0.0))});
      }
    a.tokens.push_back(std::move(rt));
  }
}

}  // namespace

RemoteAnswer parse_remote_answer(std::string_view body, bool legacy) {
  const json j = jsonf::parse(body, "the teacher's response");
  if (!j.is_object()) fail("the teacher's response: expected a JSON object, got {}", jsonf::show(j));
  const json& choices = jsonf::get_array(j, "choices", "");
  if (choices.empty()) fail("choices: empty");
  const json& c = choices[0];
  if (!c.is_object()) fail("choices[0]: expected an object, got {}", jsonf::show(c));
  RemoteAnswer a;
  a.fingerprint = jsonf::has(j, "system_fingerprint") ? jsonf::get_string(j, "system_fingerprint", "") : "";
  a.finished = jsonf::get_string(c, "finish_reason", "choices[0]", "") == "stop";
  const bool has_lp = jsonf::has(c, "logprobs");
  if (!legacy) {
    const json& msg = jsonf::get_object(c, "message", "choices[0]");
    a.text = jsonf::has(msg, "content") ? jsonf::get_string(msg, "content", "choices[0].message") : "";
    if (has_lp) {
      const json& lp = jsonf::get_object(c, "logprobs", "choices[0]");
      if (jsonf::has(lp, "content")) parse_chat_logprobs(jsonf::get_array(lp, "content", "choices[0].logprobs"), "choices[0].logprobs.content", a);
    }
  } else {
    a.text = jsonf::get_string(c, "text", "choices[0]");
    if (has_lp) parse_legacy_logprobs(jsonf::get_object(c, "logprobs", "choices[0]"), "choices[0].logprobs", a);
  }
  return a;
}

VocabularyByBytes::VocabularyByBytes(const Tokenizer& tok) {
  auto add = [this](std::unordered_map<std::string, int32_t>& m, std::string bytes, int32_t id) {
    if (bytes.empty()) return;
    longest_ = std::max(longest_, bytes.size());
    auto [it, fresh] = m.emplace(std::move(bytes), id);
    if (!fresh) it->second = -1;  // two tokens with these bytes: neither can be told from the text
  };
  for (int32_t id = 0; id < int32_t(tok.vocab_size()); ++id) {
    if (tok.is_special(id)) {
      special_.emplace(tok.token_bytes(id, false), id);
      continue;
    }
    add(mid_, tok.token_bytes(id, false), id);
    add(start_, tok.token_bytes(id, true), id);
  }
}

int32_t VocabularyByBytes::find(const std::string& bytes, bool at_start) const {
  const auto& m = at_start ? start_ : mid_;
  auto it = m.find(bytes);
  return it == m.end() ? -1 : it->second;
}

int32_t VocabularyByBytes::special(const std::string& text) const {
  const auto it = special_.find(text);
  return it == special_.end() ? -1 : it->second;
}

int32_t VocabularyByBytes::longest_prefix(const std::string& bytes, bool at_start) const {
  for (size_t n = std::min(bytes.size(), longest_); n > 0; --n)
    if (const int32_t id = find(bytes.substr(0, n), at_start); id >= 0) return id;
  return -1;
}

bool project_alternatives(const VocabularyByBytes& vocab, const std::vector<RemoteAlternative>& top, bool at_start, int k,
                          int64_t n_vocab, int32_t* ids, float* logp) {
  std::map<int32_t, double> mass;  // student id -> probability
  for (const RemoteAlternative& alt : top) {
    int32_t id = vocab.special(alt.bytes);
    if (id < 0 && !alt.special) id = vocab.longest_prefix(alt.bytes, at_start);
    if (id >= 0) mass[id] += std::exp(double(alt.logprob));
  }
  if (mass.empty()) return false;
  std::vector<std::pair<double, int32_t>> by_p;
  for (const auto& [id, p] : mass) by_p.push_back({p, id});
  std::sort(by_p.begin(), by_p.end(), [](const auto& a, const auto& b) { return a.first > b.first || (a.first == b.first && a.second < b.second); });
  int32_t pad = 0;
  for (int i = 0; i < k; ++i) {
    if (size_t(i) < by_p.size()) {
      ids[i] = by_p[size_t(i)].second, logp[i] = float(std::max(std::log(by_p[size_t(i)].first), -64.0));
    } else {
      while (mass.count(pad) && pad < n_vocab) ++pad;  // an id not among the real ones
      ids[i] = pad++, logp[i] = -64.0f;
    }
  }
  return true;
}

bool project_continuation(const VocabularyByBytes& vocab, const std::vector<RemoteAlternative>& top, std::string_view prefix,
                          int k, int64_t n_vocab, int32_t* ids, float* logp) {
  std::vector<RemoteAlternative> rest;
  double listed = 0, going_on = 0;
  for (const RemoteAlternative& alt : top) {
    const double p = std::exp(double(alt.logprob));
    listed += p;
    if (!alt.special && alt.bytes.size() > prefix.size() && alt.bytes.compare(0, prefix.size(), prefix) == 0) {
      rest.push_back({alt.bytes.substr(prefix.size()), -1, alt.logprob});
      going_on += p;
    }
  }
  if (rest.empty() || going_on < 1.0 - listed) return false;
  for (RemoteAlternative& alt : rest) alt.logprob = float(double(alt.logprob) - std::log(going_on));  // p / going_on
  return project_alternatives(vocab, rest, false, k, n_vocab, ids, logp);
}

namespace {

// Keeps position j's top-k when its k alternatives are distinct student ids and include the
// token chosen there. Returns whether it did.
bool keep_position(const std::vector<int32_t>& ids, const std::vector<float>& logps, int32_t chosen, size_t j, int k,
                   TeacherRecord& r) {
  std::set<int32_t> seen;
  for (int i = 0; i < k; ++i)
    if (ids[size_t(i)] < 0 || !seen.insert(ids[size_t(i)]).second) return false;
  if (!seen.count(chosen)) return false;
  for (int i = 0; i < k; ++i) r.topk_ids[j * size_t(k) + size_t(i)] = ids[size_t(i)], r.topk_logp[j * size_t(k) + size_t(i)] = logps[size_t(i)];
  r.soft[j] = 1;
  return true;
}

}  // namespace

int64_t answer_to_record(const Tokenizer& tok, const VocabularyByBytes& vocab, const RemoteAnswer& a, int k, TeacherRecord& r) {
  // Same vocabulary, ids given for every token: the teacher's own tokens.
  bool same_vocab = !a.tokens.empty() && a.fingerprint == api_fingerprint(tok);
  for (const RemoteToken& t : a.tokens) same_vocab = same_vocab && t.id >= 0 && t.id < tok.vocab_size();
  if (same_vocab) {
    r.completion.clear();
    for (const RemoteToken& t : a.tokens) r.completion.push_back(t.id);
  } else {
    r.completion = tok.encode(a.text, false, false);
  }
  if (a.finished && tok.eos_id() >= 0) r.completion.push_back(tok.eos_id());  // the teacher ended its turn
  r.finished = a.finished;
  r.k = k;
  r.soft.assign(r.completion.size(), 0);
  r.topk_ids.assign(r.completion.size() * size_t(k), 0);  // unused slots must still encode: id 0
  r.topk_logp.assign(r.completion.size() * size_t(k), -INFINITY);
  int64_t soft = 0;
  std::vector<int32_t> ids(size_t(std::max(k, 0)));
  std::vector<float> logps(ids.size());
  if (same_vocab) {
    for (size_t j = 0; j < a.tokens.size() && k > 0; ++j) {
      const RemoteToken& t = a.tokens[j];
      if (int(t.top.size()) < k) continue;
      for (int i = 0; i < k; ++i) ids[size_t(i)] = t.top[size_t(i)].id, logps[size_t(i)] = t.top[size_t(i)].logprob;
      if (keep_position(ids, logps, r.completion[j], j, k, r)) ++soft;
    }
  } else if (k > 0) {
    // Teacher tokens by the byte offset they start at; the texts must agree byte for byte.
    std::map<size_t, const RemoteToken*> starts_at;
    size_t tp = 0;
    for (const RemoteToken& t : a.tokens) starts_at.emplace(tp, &t), tp += t.bytes.size();
    const size_t n_text = r.completion.size() - (a.finished && tok.eos_id() >= 0 ? 1 : 0);
    std::vector<size_t> offset(n_text);
    std::string joined;
    for (size_t j = 0; j < n_text; ++j) offset[j] = joined.size(), joined += tok.token_bytes(r.completion[j], j == 0);
    if (joined == a.text && tp == a.text.size())
      for (size_t j = 0; j < n_text; ++j) {
        auto it = starts_at.upper_bound(offset[j]);  // past the teacher token holding byte offset[j]
        if (it == starts_at.begin()) continue;
        --it;
        const std::vector<RemoteAlternative>& top = it->second->top;
        int32_t* const ids = r.topk_ids.data() + j * size_t(k);
        float* const logp = r.topk_logp.data() + j * size_t(k);
        // a shared boundary, or inside teacher token `it` after the bytes of it before offset[j]
        const bool projected =
            it->first == offset[j]
                ? project_alternatives(vocab, top, j == 0, k, tok.vocab_size(), ids, logp)
                : project_continuation(vocab, top, std::string_view(a.text).substr(it->first, offset[j] - it->first), k,
                                       tok.vocab_size(), ids, logp);
        if (projected) r.soft[j] = 1, ++soft;
      }
  }
  if (soft == 0) r.k = 0, r.soft.clear(), r.topk_ids.clear(), r.topk_logp.clear();
  return soft;
}

// The model to ask for: the one given, else the only one GET /models lists (a server with several
// must be told which).
std::string choose_model(const HttpClient& client, const std::map<std::string, std::string>& headers, const std::string& model,
                         double timeout_s) {
  if (!model.empty()) return model;
  const HttpResult res = client.get("/models", headers, timeout_s);
  if (res.kind != HttpResult::Kind::Ok)
    fail("--model not given, and GET {}/models failed ({}): name the teacher's model with --model", client.prefix(),
         res.kind == HttpResult::Kind::HttpError ? "HTTP " + std::to_string(res.status) : res.error);
  std::vector<std::string> ids;
  try {
    const json j = jsonf::parse(res.body, "GET /models");
    const json& data = jsonf::get_array(j, "data", "");
    for (size_t i = 0; i < data.size(); ++i) ids.push_back(jsonf::get_string(data[i], "id", "data[" + std::to_string(i) + "]"));
  } catch (const Error& e) {
    fail("--model not given, and the teacher's model list is unreadable ({}): name the model with --model", e.what());
  }
  if (ids.size() == 1) return ids[0];
  if (ids.empty()) fail("--model not given, and the teacher lists no models: name one with --model");
  std::string list;
  for (const std::string& id : ids) list += (list.empty() ? "" : ", ") + id;
  fail("--model not given, and the teacher serves several models: {} — choose one with --model", list);
}

}  // namespace distill
