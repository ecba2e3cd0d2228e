// distill label: a teacher answers prompts once; the answers and (where available) the teacher's
// top-k log-probabilities are stored as a dataset for training students (formats/teacher_dataset.h).
#include "cli/commands.h"
#include "core/data_parallel.h"
#include "core/error.h"
#include "core/threads.h"
#include "teacher/label_prompts.h"
#include "teacher/local_teacher.h"
#include "teacher/remote_teacher.h"
#include "teacher/cross_tokenizer.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"

#include <CLI/CLI.hpp>

#include <cstdio>
#include <filesystem>

namespace distill {

namespace fs = std::filesystem;

namespace {

struct LabelArgs {
  std::string teacher, prompts, out, shard = "0/1", chat_template, model, tokenizer, api_key_env = "OPENAI_API_KEY";
  bool resume = false;
  LabelSettings s;
  RemoteSettings r;
};

void run_label(LabelArgs& a) {
  // Under mpirun every rank labels its own shard into its own dataset (merged after with
  // `distill dataset merge OUT.shard-*-of-N -o OUT`).
  if (DataParallel::size() > 1 && a.shard == "0/1") {
    a.shard = fmt::format("{}/{}", DataParallel::rank(), DataParallel::size());
    a.out += fmt::format(".shard-{}-of-{}", DataParallel::rank(), DataParallel::size());
  }
  const auto [shard, n_shards] = parse_shard(a.shard);
  const bool remote = a.teacher.rfind("http://", 0) == 0 || a.teacher.rfind("https://", 0) == 0;
  // The tokenizer the dataset is written in: the student's (--tokenizer), else the local
  // teacher's. A local teacher with another tokenizer labels in its own and each record is
  // rewritten in the student's (teacher/cross_tokenizer.h).
  const std::string tok_dir = !a.tokenizer.empty() ? a.tokenizer : remote ? "" : a.teacher;
  if (tok_dir.empty()) fail("a remote teacher needs --tokenizer DIR: the student's tokenizer the dataset is written in");
  const auto tok = Tokenizer::load(tok_dir);
  const auto tmpl = ChatTemplate::choose(a.chat_template, tok.get());
  const std::vector<LabelPrompt> prompts =
      read_label_prompts(a.prompts, tok.get(), tmpl.get(), shard, n_shards, a.s.score_completions);
  std::shared_ptr<const Tokenizer> teacher_tok = tok;
  std::unique_ptr<ChatTemplate> teacher_tmpl;
  std::vector<LabelPrompt> teacher_prompts;
  if (!remote && tok_dir != a.teacher) {
    teacher_tok = Tokenizer::load(a.teacher);
    if (teacher_tok->fingerprint() != tok->fingerprint()) {
      teacher_tmpl = ChatTemplate::choose(a.chat_template, teacher_tok.get());
      teacher_prompts = read_label_prompts(a.prompts, teacher_tok.get(), teacher_tmpl.get(), shard, n_shards, a.s.score_completions);
    } else {
      teacher_tok = tok;  // the same vocabulary: nothing to bridge
    }
  }
  const bool cross = !teacher_prompts.empty();
  TeacherDatasetWriter out(a.out, a.resume);
  if (out.repaired_bytes() > 0)
    std::fprintf(stderr, "label: cut %llu bytes of a torn record left by an interrupted run\n", (unsigned long long)out.repaired_bytes());
  auto& m = out.manifest();
  m["teacher"] = a.teacher;
  m["teacher_kind"] = remote ? "remote" : "local";
  m["tokenizer_fingerprint"] = fmt::format("{:016x}", tok->fingerprint());
  m["tokenizer"] = fs::absolute(tok_dir).string();
  if (cross) m["teacher_tokenizer_fingerprint"] = fmt::format("{:016x}", teacher_tok->fingerprint()), m["cross_tokenizer"] = true;
  m["prompts"] = fs::absolute(a.prompts).string();
  m["shard"] = a.shard;
  m["settings"] = {{"top_k", a.s.top_k}, {"max_tokens", a.s.max_tokens}, {"temperature", a.s.temperature},
                   {"samples", a.s.samples}, {"seed", a.s.seed}, {"score_completions", a.s.score_completions}};
  std::fprintf(stderr, "label: %zu prompts (shard %s), %lld already done, teacher %s\n", prompts.size(), a.shard.c_str(),
               (long long)out.records(), a.teacher.c_str());
  int64_t records = 0, tokens = 0;
  double seconds = 0;
  std::vector<std::pair<uint64_t, std::string>> failed;
  if (remote) {
    if (!a.model.empty()) a.r.model = a.model;
    a.r.api_key_env = a.api_key_env;
    const RemoteReport rep = label_with_remote_teacher(a.teacher, *tok, prompts, a.s, a.r, out);
    records = rep.records, tokens = rep.tokens, seconds = rep.seconds, failed = rep.failed;
    m["soft_label_positions"] = rep.soft_positions;
    m["remote_positions"] = rep.positions;
  } else {
    const Model teacher = Model::load(a.teacher);
    std::function<TeacherRecord(const TeacherRecord&)> to_student;
    std::optional<TokenizerBridge> bridge;
    std::map<uint64_t, const LabelPrompt*> student_prompt;
    if (cross) {
      bridge.emplace(*teacher_tok, *tok);
      for (const LabelPrompt& p : prompts) student_prompt[p.index] = &p;
      to_student = [&](const TeacherRecord& r) { return bridge->to_student(r, student_prompt.at(r.prompt_index)->ids); };
    }
    const LabelReport rep = label_with_local_teacher(teacher, *teacher_tok, cross ? teacher_prompts : prompts, a.s, out, to_student);
    records = rep.records, tokens = rep.tokens, seconds = rep.seconds;
  }
  nlohmann::json failed_json = nlohmann::json::array();
  for (const auto& [idx, why] : failed) failed_json.push_back({{"prompt_index", idx}, {"error", why}});
  m["failed"] = failed_json;
  out.finish([&](const std::vector<int32_t>& ids) { return tok->decode(ids, false); });
  const auto counts = m["counts"];
  std::printf("labelled %lld new records (%lld tokens) in %.1f s (%.0f teacher tokens/s); dataset: %lld records, "
              "%.1f bytes per labelled token -> %s\n",
              (long long)records, (long long)tokens, seconds, seconds > 0 ? double(tokens) / seconds : 0.0,
              (long long)counts["records"].get<int64_t>(), counts["bytes_per_labelled_token"].get<double>(), a.out.c_str());
  if (!failed.empty()) {
    std::fprintf(stderr, "label: %zu prompts failed (rerun with --resume to retry them):\n", failed.size());
    for (const auto& [idx, why] : failed) std::fprintf(stderr, "  prompt %llu: %s\n", (unsigned long long)idx, why.c_str());
    throw Error(fmt::format("{} of {} prompts failed", failed.size(), prompts.size()));
  }
}

}  // namespace

void register_label(CLI::App& app) {
  auto a = std::make_shared<LabelArgs>();
  CLI::App* cmd = app.add_subcommand("label", "Have a teacher (local model or OpenAI-compatible API) answer prompts");
  cmd->add_option("--teacher", a->teacher, "Model directory or GGUF file, or the base URL of an OpenAI-compatible API (http[s]://host/v1)")->required();
  cmd->add_option("--prompts", a->prompts, "JSONL: {\"id\"?, \"prompt\"} or {\"id\"?, \"messages\"}")->required();
  cmd->add_option("-o,--out", a->out, "Dataset directory")->required();
  cmd->add_option("--model", a->model, "Model name sent to a remote teacher");
  cmd->add_option("--tokenizer", a->tokenizer, "The student's model directory whose tokenizer the dataset is written in (required for a remote teacher; for a local one with another tokenizer, its answers are re-tokenised and its top-k projected on bytes)");
  cmd->add_option("--top-k", a->s.top_k, "Teacher log-probs kept per token (remote APIs: at most 20)")->capture_default_str()->check(CLI::Range(0, 1000));
  cmd->add_option("--max-tokens", a->s.max_tokens, "Tokens per answer at most")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--temperature", a->s.temperature, "Sampling temperature (0 = greedy)")->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->add_option("--samples", a->s.samples, "Answers per prompt")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--seed", a->s.seed, "Sampling seed")->capture_default_str();
  cmd->add_option("--batch", a->s.batch, "Local teacher: prompts generated together")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_flag("--score-completions", a->s.score_completions, "Local teacher: score each line's \"completion\" instead of generating");
  cmd->add_option("--shard", a->shard, "I/N: label only prompts whose line index % N == I")->capture_default_str();
  cmd->add_option("--chat-template", a->chat_template, "Chat format instead of the detected one");
  cmd->add_option("--concurrency", a->r.concurrency, "Remote: requests in flight")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--rate-limit", a->r.requests_per_s, "Remote: requests per second at most (0 = no limit)")->capture_default_str();
  cmd->add_option("--timeout", a->r.timeout_s, "Remote: seconds per request")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--retries", a->r.retries, "Remote: retries on 429/5xx/timeouts")->capture_default_str();
  cmd->add_option("--backoff", a->r.backoff_s, "Remote: first retry delay in seconds (doubles, with jitter)")->capture_default_str();
  cmd->add_option("--api-key-env", a->api_key_env, "Remote: environment variable holding the API key")->capture_default_str();
  cmd->add_option("--ca-file", a->r.ca_file, "Remote https teacher: trust this PEM certificate (authority), e.g. a self-signed server's");
  cmd->add_flag("--completions-api", a->r.legacy_completions, "Remote: POST /v1/completions instead of /v1/chat/completions");
  cmd->add_flag("--resume", a->resume, "Continue an interrupted dataset: only prompts not yet done");
  cmd->callback([a] { run_label(*a); });
}

}  // namespace distill
