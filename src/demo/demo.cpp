#include "demo/demo.h"

#include "core/atomic_file.h"
#include "core/error.h"
#include "core/progress.h"
#include "core/threads.h"
#include "demo/arith_task.h"
#include "eval/evaluate.h"
#include "rl/grpo.h"
#include "teacher/local_teacher.h"
#include "tokenizer/byte_vocab.h"
#include "train/examples.h"
#include "train/report.h"
#include "train/trainer.h"

#include <nlohmann/json.hpp>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>

namespace distill {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

struct ModelShape {
  int64_t dim, layers, heads, ffn;
};

// What each stage does; the quick plan keeps every stage, only smaller.
struct Plan {
  int64_t n_train, n_heldout;
  int64_t n_ground_truth;  // problems with a worked solution the students may see; the rest are prompts only
  ModelShape teacher, student;
  int64_t teacher_steps, student_steps, rl_steps, batch, seq_len;
  int top_k;
  int64_t answer_tokens = 64;  // new tokens for an answer (labelling, GRPO, evaluation)
};

Plan plan_for(const DemoSettings& s) {
  Plan p = s.smoke   ? Plan{2000, 40, 200, {64, 2, 4, 192}, {48, 2, 4, 128}, 200, 200, 6, 16, 96, 8}
           : s.quick ? Plan{8000, 100, 800, {128, 4, 4, 384}, {64, 2, 4, 192}, 1000, 1000, 40, 16, 96, 8}
                     : Plan{30000, 300, 3000, {128, 6, 4, 384}, {64, 2, 4, 192}, 3000, 3000, 300, 16, 96, 8};
  // the hard level's problems and solutions are about 1.6 times as long (up to ~110 tokens together)
  if (s.level == ArithLevel::Hard) p.seq_len = 160, p.answer_tokens = 96;
  return p;
}

ModelConfig config_of(const ModelShape& s, int64_t vocab, const Tokenizer& tok) {
  ModelConfig c;
  c.model_type = "llama";
  c.n_vocab = vocab, c.n_embd = s.dim, c.n_layer = s.layers, c.n_head = s.heads, c.n_kv_head = s.heads;
  c.head_dim = s.dim / s.heads, c.n_ff = s.ffn, c.max_position_embeddings = 512, c.norm_eps = 1e-5;
  c.tie_word_embeddings = true;
  if (tok.eos_id() >= 0) c.eos_token_ids = {tok.eos_id()};
  return c;
}

std::vector<json> read_metrics(const std::string& path) {
  std::vector<json> out;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) out.push_back(json::parse(line));
  return out;
}

void stage(int i, const char* what, double est_s) {
  std::fprintf(stderr, "\n== [%d/6] %s (about %s) ==\n", i, what, format_duration(est_s).c_str());
}

// The task's files: training prompts with worked solutions (all, and the scarce ground-truth
// share), training tasks for labelling and GRPO, held-out tasks and solutions.
void write_demo_data(const fs::path& dir, const Plan& p, const std::vector<ArithProblem>& train,
                     const std::vector<ArithProblem>& heldout) {
  std::ofstream tr(dir / "data/train.jsonl"), gt(dir / "data/train_ground_truth.jsonl"), tasks(dir / "data/train_tasks.jsonl"),
      ho(dir / "data/heldout_tasks.jsonl"), hot(dir / "data/heldout.jsonl");
  for (size_t i = 0; i < train.size(); ++i) {
    const ArithProblem& a = train[i];
    tr << json{{"prompt", a.prompt}, {"completion", a.solution}}.dump() << "\n";
    if (int64_t(i) < p.n_ground_truth) gt << json{{"prompt", a.prompt}, {"completion", a.solution}}.dump() << "\n";
    tasks << json{{"prompt", a.prompt}, {"answer", std::to_string(a.answer)}, {"completion", a.solution}}.dump() << "\n";
  }
  for (const ArithProblem& a : heldout) {
    ho << json{{"prompt", a.prompt}, {"answer", std::to_string(a.answer)}}.dump() << "\n";
    hot << json{{"prompt", a.prompt}, {"completion", a.solution}}.dump() << "\n";
  }
}

// A byte-level BPE learned on the training text: digits stay single tokens, words get merged.
std::shared_ptr<const Tokenizer> make_demo_tokenizer(const fs::path& dir, const std::vector<ArithProblem>& train) {
  std::string corpus;
  for (size_t i = 0; i < train.size() && corpus.size() < 400000; ++i) corpus += train[i].prompt + train[i].solution + "\n";
  write_tokenizer_files((dir / "tokenizer").string(), make_byte_level_tokenizer(corpus, 300, false));
  return Tokenizer::load((dir / "tokenizer").string());
}

void train_on(const fs::path& dir, const Plan& p, const Tokenizer& tok, const std::string& name, const ModelShape& shape,
              const std::string& data, int64_t steps, uint64_t seed, float kd_alpha, const Model* teacher = nullptr,
              double on_policy = 0, int64_t on_policy_from = 0) {
  const int64_t vocab = tok.vocab_size();
  Model m = Model::random(config_of(shape, vocab, tok), DType::F32, seed);
  TrainSettings ts;
  ts.batch = p.batch, ts.seq_len = p.seq_len, ts.steps = steps, ts.seed = seed;
  ts.lr.lr = 2e-3f, ts.lr.warmup_steps = steps / 20, ts.lr.min_lr_ratio = 0.1f;
  ts.eval_every = std::max<int64_t>(1, steps / 10);
  ts.kd_alpha = kd_alpha;
  ts.kd.divergence = Divergence::ForwardKL;
  ts.kd.temperature = 1.0f;
  ts.topk_mode = TopKMode::Tail;
  ts.on_policy = on_policy;
  ts.on_policy_from = on_policy_from;
  ts.out_dir = (dir / name).string();
  TokenDataset td = TokenDataset::build(read_examples(data, &tok, nullptr), p.seq_len, vocab);
  TokenDataset ev = td.split_off(0.02, seed);
  train_model(m, td, ev, teacher, ts, false, &tok);
  copy_tokenizer_files((dir / "tokenizer").string(), ts.out_dir);
}

// The teacher answers every training prompt, with its top-k per token.
void label_stage(const fs::path& dir, const Plan& p, const Tokenizer& tok, const Model& teacher) {
  fs::remove_all(dir / "labels");
  TeacherDatasetWriter out((dir / "labels").string(), false);
  const auto prompts = read_label_prompts((dir / "data/train_tasks.jsonl").string(), &tok, nullptr, 0, 1, false);
  LabelSettings ls;
  ls.top_k = p.top_k;
  ls.max_tokens = p.answer_tokens;
  ls.temperature = 0.0f;
  ls.batch = 64;
  out.manifest()["teacher"] = (dir / "teacher").string();
  out.manifest()["teacher_kind"] = "local";
  out.manifest()["tokenizer_fingerprint"] = fmt::format("{:016x}", tok.fingerprint());
  out.manifest()["tokenizer"] = fs::absolute(dir / "tokenizer").string();
  label_with_local_teacher(teacher, tok, prompts, ls, out);
  out.finish([&](const std::vector<int32_t>& ids) { return tok.decode(ids, false); });
}

// GRPO on the distilled student. The reward is `worked` (the exact answer, reached through right
// steps): with the answer alone, most of a small student's right samples are guesses through a
// wrong step (11 of 14 in one count), and reinforcing them lowered held-out accuracy.
void grpo_stage(const fs::path& dir, const Plan& p, const Tokenizer& tok, uint64_t seed, const std::string& from,
                const std::string& name) {
  Model policy = Model::load((dir / from).string());
  const auto tasks = read_tasks((dir / "data/train_tasks.jsonl").string(), tok, nullptr);
  const auto held = read_tasks((dir / "data/heldout_tasks.jsonl").string(), tok, nullptr);
  GrpoSettings gs;
  gs.group = 8, gs.prompts_per_step = 16, gs.max_new_tokens = p.answer_tokens, gs.steps = p.rl_steps, gs.micro_batch = 32;
  // small steps: at 2e-4 and above the held-out accuracy falls or stalls (tried), 5e-5 raises it;
  // two updates per batch of rollouts with clip-higher used them better than one (tried)
  gs.temperature = 1.0f, gs.lr.lr = 5e-5f, gs.lr.decay = LrDecay::Constant, gs.adamw.weight_decay = 0.0f;
  gs.epochs = 2, gs.clip_low = 0.2f, gs.clip_high = 0.28f;
  gs.eval_every = std::max<int64_t>(1, p.rl_steps / 6);  // the held-out curve in the run's report
  gs.seed = seed, gs.out_dir = (dir / name).string();
  train_grpo(policy, nullptr, tok, tasks, held, RewardSpec::parse("worked"), gs, false);
  copy_tokenizer_files((dir / "tokenizer").string(), gs.out_dir);
}

// Held-out accuracy, perplexity, fidelity to the teacher and speed of each model.
std::vector<DemoRow> evaluate_stage(const fs::path& dir, const Plan& p, const Tokenizer& tok, const Model& teacher,
                                    const std::vector<std::pair<std::string, std::string>>& models) {
  const int64_t vocab = tok.vocab_size();
  const auto held_tasks = read_tasks((dir / "data/heldout_tasks.jsonl").string(), tok, nullptr);
  // perplexity and fidelity on the held-out solutions given their problems
  const TokenDataset held = TokenDataset::build(read_examples((dir / "data/heldout.jsonl").string(), &tok, nullptr),
                                                p.seq_len, vocab);
  const RewardSpec answer = RewardSpec::parse("answer");
  std::vector<DemoRow> rows;
  for (const auto& [name, method] : models) {
    const Model m = Model::load((dir / name).string());
    DemoRow r;
    r.name = name, r.method = method, r.dir = (dir / name).string(), r.params = m.config.n_params();
    r.accuracy = evaluate_task_accuracy(m, tok, held_tasks, answer, p.answer_tokens, 1, 0.0f).accuracy;
    r.perplexity = evaluate_text(m, held).perplexity;
    const Fidelity f = evaluate_fidelity(m, teacher, held);
    r.agreement = f.top1_agreement, r.kl = f.kl;
    r.decode_tps = evaluate_speed(m).decode_tps;
    rows.push_back(r);
  }

  return rows;
}

// Each method's mean and sample standard deviation over its seeds.
struct MethodSummary {
  std::string method;
  int n = 0;
  double acc = 0, acc_sd = 0, ppl = 0, ppl_sd = 0, agreement = 0, kl = 0;
};

std::vector<MethodSummary> summarize(const std::vector<DemoRow>& rows) {
  std::vector<MethodSummary> out;
  for (const char* m : {"teacher", "student-ce", "student-kd", "student-gkd", "student-rl"}) {
    MethodSummary ms;
    ms.method = m;
    std::vector<double> acc, ppl;
    for (const DemoRow& r : rows)
      if (r.method == m) acc.push_back(r.accuracy), ppl.push_back(r.perplexity), ms.agreement += r.agreement, ms.kl += r.kl;
    ms.n = int(acc.size());
    if (ms.n == 0) continue;
    auto mean_sd = [](const std::vector<double>& v, double* mean, double* sd) {
      *mean = 0;
      for (double x : v) *mean += x / double(v.size());
      *sd = 0;
      for (double x : v) *sd += (x - *mean) * (x - *mean);
      *sd = v.size() > 1 ? std::sqrt(*sd / double(v.size() - 1)) : 0.0;
    };
    mean_sd(acc, &ms.acc, &ms.acc_sd);
    mean_sd(ppl, &ms.ppl, &ms.ppl_sd);
    ms.agreement /= ms.n, ms.kl /= ms.n;
    out.push_back(ms);
  }
  return out;
}

void print_summary(const std::vector<DemoRow>& rows, int seeds, double total_s) {
  std::printf("\nheld-out results, %d student seed%s (mean ± sd), %s in all:\n\n", seeds, seeds > 1 ? "s" : "",
              format_duration(total_s).c_str());
  std::printf("| model | accuracy | perplexity | top-1 agreement with teacher | KL(teacher‖model) |\n| --- | --- | --- | --- | --- |\n");
  for (const MethodSummary& m : summarize(rows))
    std::printf("| %s | %.1f ± %.1f %% | %.3f ± %.3f | %.1f %% | %.4f |\n", m.method.c_str(), 100 * m.acc, 100 * m.acc_sd, m.ppl,
                m.ppl_sd, 100 * m.agreement, m.kl);
  std::printf("\n");
}

// report.html (table and training curves) and results.json.
void write_demo_report(const fs::path& dir, const Plan& p, const DemoSettings& set, const std::vector<DemoRow>& rows,
                       double total_s) {
  std::string html = report_page_begin("distill demo") + "<p>The recipe on an embedded arithmetic task, on this machine, in " +
                     format_duration(total_s) + ". Held-out accuracy is the exact final answer, greedy decoding.</p>";
  // per method over the seeds, then every model
  html += "<h2>Per method (mean ± sd over the student seeds)</h2><table><tr><th>method</th><th>seeds</th><th>held-out accuracy</th>"
          "<th>perplexity</th><th>top-1 agreement with teacher</th><th>KL(teacher‖model)</th></tr>";
  for (const MethodSummary& m : summarize(rows))
    html += fmt::format("<tr><td>{}</td><td>{}</td><td>{:.1f} ± {:.1f} %</td><td>{:.3f} ± {:.3f}</td><td>{:.1f} %</td><td>{:.4f}</td></tr>",
                        m.method, m.n, 100 * m.acc, 100 * m.acc_sd, m.ppl, m.ppl_sd, 100 * m.agreement, m.kl);
  html += "</table><h2>Every model</h2><table><tr>"
                     "<th>model</th><th>parameters</th><th>held-out accuracy</th><th>perplexity</th><th>top-1 agreement with teacher</th>"
                     "<th>KL(teacher‖model)</th><th>decode tokens/s</th></tr>";
  for (const DemoRow& r : rows)
    html += fmt::format("<tr><td>{}</td><td>{:.2f} M</td><td>{:.1f} %</td><td>{:.3f}</td><td>{:.1f} %</td><td>{:.4f}</td><td>{:.0f}</td></tr>",
                        r.name, double(r.params) / 1e6, 100 * r.accuracy, r.perplexity, 100 * r.agreement, r.kl, r.decode_tps);
  html += "</table>";
  const char* colors[] = {"#d62728", "#1f77b4", "#2ca02c", "#9467bd"};
  std::vector<Series> loss, eval_loss;
  int ci = 0;
  for (const char* name : {"teacher", "student-ce", "student-kd", "student-gkd"}) {
    Series s{std::string(name) + " train", colors[ci], {}}, e{std::string(name) + " held-out", colors[ci], {}};
    for (const json& m : read_metrics((dir / name / "metrics.jsonl").string())) {
      s.points.push_back({m["step"].get<double>(), m.value("ce", m["loss"].get<double>())});
      if (m.contains("eval_loss")) e.points.push_back({m["step"].get<double>(), m["eval_loss"].get<double>()});
    }
    loss.push_back(s), eval_loss.push_back(e), ++ci;
  }
  html += "<h2>Training</h2>" + svg_line_chart("cross-entropy on the training batches", "step", loss) + "<br>" +
          svg_line_chart("held-out loss during training", "step", eval_loss);
  Series reward{"mean reward", "#2ca02c", {}}, held{"held-out accuracy", "#d62728", {}};
  for (const json& m : read_metrics((dir / "student-rl/metrics.jsonl").string())) {
    reward.points.push_back({m["step"].get<double>(), m["reward_mean"].get<double>()});
    if (m.contains("eval_accuracy")) held.points.push_back({m["step"].get<double>(), m["eval_accuracy"].get<double>()});
  }
  html += "<h2>GRPO on the distilled student</h2>" +
          svg_line_chart("mean reward of the sampled completions, held-out accuracy (greedy)", "step", {reward, held});
  html += "<p>Each stage's own report: teacher/report.html, student-ce/report.html, student-kd/report.html, "
          "student-gkd/report.html, student-rl/report.html (other seeds: the same names with -s2, -s3, …).</p>" +
          report_page_end();
  write_file_atomic((dir / "report.html").string(), html.data(), html.size());
  json results = json::array(), summary = json::array();
  for (const MethodSummary& m : summarize(rows))
    summary.push_back({{"method", m.method}, {"seeds", m.n}, {"accuracy_mean", m.acc}, {"accuracy_sd", m.acc_sd},
                       {"perplexity_mean", m.ppl}, {"perplexity_sd", m.ppl_sd}, {"top1_agreement_mean", m.agreement}, {"kl_mean", m.kl}});
  for (const DemoRow& r : rows)
    results.push_back({{"model", r.name}, {"method", r.method}, {"dir", r.dir}, {"parameters", r.params}, {"accuracy", r.accuracy},
                       {"perplexity", r.perplexity}, {"top1_agreement", r.agreement}, {"kl", r.kl},
                       {"decode_tokens_per_s", r.decode_tps}});
  const std::string rj = json{{"quick", set.quick}, {"smoke", set.smoke}, {"task", arith_level_name(set.level)}, {"seconds", total_s}, {"heldout_problems", p.n_heldout},
                              {"eval", {{"max_new_tokens", p.answer_tokens}, {"seq_len", p.seq_len}}}, {"models", results},
                              {"summary", summary}}.dump(2);
  write_file_atomic((dir / "results.json").string(), rj.data(), rj.size());
}

}  // namespace

std::vector<DemoRow> run_demo(const DemoSettings& set) {
  const auto t_start = std::chrono::steady_clock::now();
  const Plan p = plan_for(set);
  const fs::path dir(set.out_dir);
  fs::create_directories(dir / "data");

  // ---- data and tokenizer
  const std::vector<ArithProblem> train = make_arith_problems(p.n_train, set.seed, set.level);
  const std::vector<ArithProblem> heldout = make_arith_problems(p.n_heldout, set.seed + 1000003, set.level);
  write_demo_data(dir, p, train, heldout);
  const auto tok = make_demo_tokenizer(dir, train);
  std::fprintf(stderr,
               "distill demo%s: %s task, %lld training problems (worked solutions for %lld of them) and %lld held-out ones, "
               "vocabulary %lld, %d threads\n",
               set.smoke ? " --smoke" : set.quick ? " --quick" : "", arith_level_name(set.level), (long long)p.n_train, (long long)p.n_ground_truth, (long long)p.n_heldout,
               (long long)tok->vocab_size(), num_threads());
  std::fprintf(stderr, "example: %s%s\n", train[0].prompt.c_str(), train[0].solution.c_str());

  // ---- 1. teacher
  stage(1, "train the teacher", (set.quick || set.smoke) ? 60 : 270);
  train_on(dir, p, *tok, "teacher", p.teacher, (dir / "data/train.jsonl").string(), p.teacher_steps, set.seed, 0.0f);
  const Model teacher = Model::load((dir / "teacher").string());

  // ---- 2. label: the students' side of the story: worked solutions are scarce (n_ground_truth of
  // them), prompts are plentiful, and a teacher can answer them all.
  stage(2, "the teacher answers the training prompts (top-k log-probs per token)", (set.quick || set.smoke) ? 10 : 40);
  label_stage(dir, p, *tok, teacher);

  // ---- 3. students of the same size and steps, per seed: one on the worked solutions there are
  // (CE), one on the teacher's answers to all the prompts (CE on its text + KD on its top-k), one
  // on-policy (KD for the first half of the steps, then half of each batch its own samples graded by the teacher)
  const int seeds = set.seeds > 0 ? set.seeds : set.quick || set.smoke ? 1 : 3;
  const auto named = [](const char* method, int s) { return s == 0 ? std::string(method) : fmt::format("{}-s{}", method, s + 1); };
  std::vector<std::pair<std::string, std::string>> models = {{"teacher", "teacher"}};
  for (int s = 0; s < seeds; ++s) {
    const uint64_t seed = set.seed + 1 + uint64_t(s);
    stage(3, fmt::format("seed {} of {}: train three students: ground truth only (CE), distilled (CE + KD), on-policy (GKD)",
                         s + 1, seeds).c_str(), (set.quick || set.smoke) ? 50 : 150);
    train_on(dir, p, *tok, named("student-ce", s), p.student, (dir / "data/train_ground_truth.jsonl").string(), p.student_steps,
             seed, 0.0f);
    train_on(dir, p, *tok, named("student-kd", s), p.student, (dir / "labels").string(), p.student_steps, seed, 0.5f);
    train_on(dir, p, *tok, named("student-gkd", s), p.student, (dir / "labels").string(), p.student_steps, seed, 0.5f, &teacher, 0.5,
             p.student_steps / 2);
    // ---- 4. GRPO on the distilled student
    stage(4, fmt::format("seed {} of {}: GRPO on the distilled student with the answer reward", s + 1, seeds).c_str(),
          (set.quick || set.smoke) ? 10 : 70);
    grpo_stage(dir, p, *tok, set.seed + uint64_t(s), named("student-kd", s), named("student-rl", s));
    for (const char* m : {"student-ce", "student-kd", "student-gkd", "student-rl"}) models.push_back({named(m, s), m});
  }

  // ---- 5. evaluate them all on the held-out problems
  stage(5, "evaluate on held-out problems", ((set.quick || set.smoke) ? 5 : 15) * seeds);
  const std::vector<DemoRow> rows = evaluate_stage(dir, p, *tok, teacher, models);

  // ---- 6. the table and the report
  stage(6, "report", 1);
  const double total_s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t_start).count();
  write_demo_report(dir, p, set, rows, total_s);
  print_summary(rows, seeds, total_s);
  const std::string student = (dir / "student-rl").string();
  const std::string request = json{{"model", "student-rl"}, {"prompt", heldout[0].prompt}, {"max_tokens", p.answer_tokens}, {"temperature", 0}}.dump();
  std::printf("report: %s   (all of it took %s)\n"
              "try:    distill run %s -p \"%s\" --raw --temp 0\n"
              "serve:  distill serve %s --port 8080\n"
              "        curl -s localhost:8080/v1/completions -d '%s'\n",
              (dir / "report.html").c_str(), format_duration(total_s).c_str(), student.c_str(), heldout[0].prompt.c_str(),
              student.c_str(), request.c_str());
  return rows;
}

}  // namespace distill
