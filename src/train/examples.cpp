#include "train/examples.h"

#include "core/error.h"
#include "formats/json_fields.h"
#include "formats/teacher_dataset.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

#include <nlohmann/json.hpp>

#include <algorithm>
#include <filesystem>
#include <fstream>

namespace distill {

using nlohmann::json;

namespace {

const Tokenizer& need_tokenizer(const Tokenizer* tok, const char* what) {
  if (!tok) fail("{} needs a tokenizer: the student directory has no tokenizer.json", what);
  return *tok;
}

// A document: BOS (if the tokenizer adds one) + text + EOS, so packed documents stay apart.
Example document(const Tokenizer& tok, const std::string& text) {
  Example ex;
  ex.ids = tok.encode(text, true, false);
  if (tok.eos_id() >= 0 && (ex.ids.empty() || ex.ids.back() != tok.eos_id())) ex.ids.push_back(tok.eos_id());
  return ex;
}

std::string string_field(const json& j, const char* key) {
  if (!j[key].is_string()) fail("\"{}\" must be a string", key);
  return j[key].get<std::string>();
}

Example from_json_line(const json& j, const Tokenizer* tok, const ChatTemplate* tmpl) {
  if (!j.is_object()) fail("expected a JSON object");
  Example ex;
  if (j.contains("ids")) {
    if (!j["ids"].is_array() || j["ids"].empty()) fail("\"ids\" must be a non-empty array of token ids");
    for (const json& v : j["ids"]) {
      if (!v.is_number_integer()) fail("\"ids\" holds a non-integer: {}", v.dump());
      const int64_t id = v.get<int64_t>();
      if (id < 0 || id > INT32_MAX) fail("token id {} is out of range", id);
      ex.ids.push_back(int32_t(id));
    }
    if (j.contains("mask")) {
      if (!j["mask"].is_array() || j["mask"].size() != ex.ids.size())
        fail("\"mask\" must be an array as long as \"ids\" ({})", ex.ids.size());
      for (size_t i = 0; i < j["mask"].size(); ++i) {
        const json& v = j["mask"][i];
        if (v.is_boolean()) ex.mask.push_back(v.get<bool>() ? 1 : 0);
        else ex.mask.push_back(uint8_t(jsonf::as_int(v, fmt::format("\"mask\"[{}]", i), 0, 1)));
      }
    }
    return ex;
  }
  if (j.contains("text")) return document(need_tokenizer(tok, "{\"text\"}"), string_field(j, "text"));
  if (j.contains("messages")) {
    const Tokenizer& t = need_tokenizer(tok, "{\"messages\"}");
    if (!tmpl) fail("{{\"messages\"}} needs a chat template (the tokenizer has none: give --chat-template)");
    tmpl->tokenize_conversation(t, parse_messages(j["messages"]), &ex.ids, &ex.mask);
    return ex;
  }
  if (j.contains("prompt") && j.contains("completion")) {
    const Tokenizer& t = need_tokenizer(tok, "{\"prompt\", \"completion\"}");
    const std::string prompt = string_field(j, "prompt"), completion = string_field(j, "completion");
    if (tmpl) {
      tmpl->tokenize_conversation(t, {{"user", prompt}, {"assistant", completion}}, &ex.ids, &ex.mask);
      return ex;
    }
    ex.ids = t.encode(prompt, true, false);
    ex.mask.assign(ex.ids.size(), 0);
    std::vector<int32_t> c = t.encode(completion, false, false);
    if (t.eos_id() >= 0) c.push_back(t.eos_id());
    ex.ids.insert(ex.ids.end(), c.begin(), c.end());
    ex.mask.resize(ex.ids.size(), 1);
    return ex;
  }
  fail("expected one of \"text\", \"prompt\" + \"completion\", \"messages\" or \"ids\"");
}

}  // namespace

// A `distill label` dataset: each record is prompt + completion with the loss on the completion,
// and the teacher's top-k where it has one.
std::vector<Example> read_teacher_dataset(const std::string& dir, const Tokenizer* tok) {
  const json manifest = read_teacher_manifest(dir);
  if (tok) {
    // A dataset without a fingerprint cannot be checked: refuse it rather than train on ids
    // that may mean other tokens.
    const std::string fp = with_context(dir + "/manifest.json", [&] { return jsonf::get_string(manifest, "tokenizer_fingerprint", ""); });
    if (fp != fmt::format("{:016x}", tok->fingerprint()))
      fail("{}: labelled with another tokenizer than the student's ({} vs {:016x}); relabel with the student's tokenizer",
           dir, fp, tok->fingerprint());
  }
  std::vector<Example> out;
  read_records((std::filesystem::path(dir) / "records.bin").string(), [&](TeacherRecord&& r) {
    Example ex;
    ex.where = dir + ": prompt " + std::to_string(r.prompt_index) + " sample " + std::to_string(r.sample_index);
    ex.ids = r.prompt;
    ex.ids.insert(ex.ids.end(), r.completion.begin(), r.completion.end());
    ex.mask.assign(r.prompt.size(), 0);
    ex.mask.resize(ex.ids.size(), 1);
    if (r.k > 0) {
      const size_t k = size_t(r.k), np = r.prompt.size();
      ex.k = r.k;
      ex.soft.assign(np, 0);
      ex.soft.insert(ex.soft.end(), r.soft.begin(), r.soft.end());
      ex.topk_ids.assign(np * k, 0);
      ex.topk_ids.insert(ex.topk_ids.end(), r.topk_ids.begin(), r.topk_ids.end());
      ex.topk_logp.assign(np * k, 0.0f);
      ex.topk_logp.insert(ex.topk_logp.end(), r.topk_logp.begin(), r.topk_logp.end());
      // positions without soft labels are stored without ids (-1): give them a harmless id, unused
      for (size_t j = 0; j < r.soft.size(); ++j)
        if (!r.soft[j]) std::fill_n(ex.topk_ids.begin() + int64_t((np + j) * k), k, 0), std::fill_n(ex.topk_logp.begin() + int64_t((np + j) * k), k, 0.0f);
    }
    out.push_back(std::move(ex));
  });
  if (out.empty()) fail("{}: the dataset holds no records", dir);
  return out;
}

std::vector<Example> read_examples(const std::string& path, const Tokenizer* tok, const ChatTemplate* tmpl) {
  if (std::filesystem::is_directory(path)) {
    if (!std::filesystem::exists(std::filesystem::path(path) / "records.bin"))
      fail("{}: a directory given as data must be a teacher dataset (records.bin, manifest.json)", path);
    return read_teacher_dataset(path, tok);
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("{}: cannot open", path);
  std::vector<Example> out;
  if (std::filesystem::path(path).extension() != ".jsonl") {
    // any other file is one plain-text document
    const std::string text(std::istreambuf_iterator<char>(in), {});
    if (text.empty()) fail("{}: empty file", path);
    out.push_back(document(need_tokenizer(tok, path.c_str()), text));
    out.back().where = path;
    return out;
  }
  std::string line;
  for (int64_t n = 1; std::getline(in, line); ++n) {
    const std::string where = path + ":" + std::to_string(n);
    with_context(where, [&] {
      if (line.find_first_not_of(" \t\r") == std::string::npos) fail("empty line");
      json j;
      try {
        j = json::parse(line);
      } catch (const json::exception& e) {
        fail("malformed JSON: {}", e.what());
      }
      Example ex = from_json_line(j, tok, tmpl);
      if (ex.ids.empty()) fail("the example encodes to no tokens");
      ex.where = where;
      out.push_back(std::move(ex));
    });
  }
  if (out.empty()) fail("{}: no examples", path);
  return out;
}

}  // namespace distill
