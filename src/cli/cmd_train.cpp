// distill train: supervised training and distillation of a student model directory.
#include "cli/commands.h"
#include "model/provenance.h"
#include "teacher/cross_tokenizer.h"
#include "teacher/remote_scorer.h"
#include "core/data_parallel.h"
#include "core/error.h"
#include "model/gguf_model.h"
#include "model/model.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"
#include "train/dataset.h"
#include "train/examples.h"
#include "train/kd_loss.h"
#include "train/trainer.h"

#include <CLI/CLI.hpp>

#include <unistd.h>

#include <cstdio>
#include <filesystem>
#include <fstream>

namespace distill {

namespace fs = std::filesystem;

namespace {

struct TrainArgs {
  std::string student, teacher, data, eval_data, out, loss = "auto", schedule = "cosine", chat_template,
      topk_mode = "renormalize", teacher_model, ca_file, api_key_env = "OPENAI_API_KEY";
  int teacher_top_k = 20;
  double eval_fraction = 0.05;
  bool resume = false, no_t2 = false;
  TrainSettings s;
  LoraOptions lora;
};

std::string read_file_or_empty(const fs::path& p) {
  std::ifstream in(p, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

// Whether student and teacher both have a tokenizer.json and they differ.
bool different_tokenizers(const std::string& student_dir, const std::string& teacher_dir) {
  const std::string ts = read_file_or_empty(fs::path(student_dir) / "tokenizer.json");
  const std::string tt = read_file_or_empty(fs::path(teacher_dir) / "tokenizer.json");
  return !ts.empty() && !tt.empty() && ts != tt;
}

// Logit distillation from a loaded teacher needs one token space: the same tokenizer, vocabularies
// differing at most by padding rows at the end (on-policy rows are graded across vocabularies).
void check_teacher_compatible(const std::string& student_dir, const Model& student, const std::string& teacher_dir,
                              const Model& teacher) {
  const std::string ts = read_file_or_empty(fs::path(student_dir) / "tokenizer.json");
  const std::string tt = read_file_or_empty(fs::path(teacher_dir) / "tokenizer.json");
  const bool same_tokenizer = !ts.empty() && ts == tt;
  if (different_tokenizers(student_dir, teacher_dir))
    fail("--teacher {} uses a different tokenizer than --student {}: logit distillation over the dataset needs one token "
         "space; give --on-policy λ (the teacher grades the student's own samples, aligned on bytes), or label the "
         "prompts with the teacher (`distill label`: its top-k projected onto the student's tokens) and train on that",
         teacher_dir, student_dir);
  if (!same_tokenizer && student.config.n_vocab != teacher.config.n_vocab)
    fail("--teacher has {} vocabulary rows and --student {}, and no shared tokenizer.json shows that they differ only "
         "by padding; use sequence-level distillation instead",
         teacher.config.n_vocab, student.config.n_vocab);
}

// Refuses an output directory we cannot write, before any work is done.
void check_writable(const fs::path& dir, bool* created) {
  std::error_code ec;
  *created = !fs::exists(dir);
  fs::create_directories(dir, ec);
  if (ec) fail("--out {}: cannot create: {}", dir.string(), ec.message());
  const fs::path probe = dir / (".write-test." + std::to_string(::getpid()));
  std::ofstream f(probe);
  if (!f) {
    if (*created) fs::remove_all(dir, ec);
    fail("--out {}: directory is not writable", dir.string());
  }
  f.close();
  fs::remove(probe, ec);
}

void run_train(TrainArgs& a) {
  Model student = Model::load(a.student);
  std::unique_ptr<Model> teacher;
  // A teacher URL: a `distill serve` with the student's vocabulary grades on-policy samples.
  const bool remote = a.teacher.rfind("http://", 0) == 0 || a.teacher.rfind("https://", 0) == 0;
  if (remote && !(a.s.on_policy > 0))
    fail("--teacher {}: a remote teacher grades the student's own samples (give --on-policy λ); for offline KD from "
         "an API, label a dataset with `distill label --teacher URL` and train on it",
         a.teacher);
  // A local teacher of another vocabulary grades on-policy samples on bytes (CrossVocabularyScorer).
  const bool cross_vocabulary = !a.teacher.empty() && !remote && a.s.on_policy > 0 && different_tokenizers(a.student, a.teacher);
  if (!a.teacher.empty() && !remote) {
    teacher = std::make_unique<Model>(Model::load(a.teacher));
    if (!cross_vocabulary) check_teacher_compatible(a.student, student, a.teacher, *teacher);
  }
  const bool soft_labels = fs::exists(fs::path(a.data) / "records.bin");  // a `distill label` dataset
  if (a.loss == "auto") a.loss = teacher || remote || soft_labels ? "fkl" : "ce";
  if (a.loss == "ce") {
    if (teacher || remote) fail("--loss ce with --teacher: choose a distillation loss (fkl, rkl, jsd, tvd) or drop --teacher");
    a.s.kd_alpha = 0;
  } else {
    a.s.kd.divergence = parse_divergence(a.loss);
    if (!teacher && !remote && !soft_labels)
      fail("--loss {} distils from a teacher: give --teacher DIR, or --data a `distill label` dataset with --top-k", a.loss);
  }
  if (a.s.on_policy > 0 && !teacher && !remote)
    fail("--on-policy {}: the student's samples are graded by a teacher: give --teacher DIR or URL", a.s.on_policy);
  if (a.s.on_policy_from > 0 && a.s.on_policy <= 0) fail("--on-policy-from {}: give --on-policy λ too", a.s.on_policy_from);
  a.s.topk_mode = parse_topk_mode(a.topk_mode);
  a.s.kd.t2_scale = !a.no_t2;
  a.s.lr.decay = parse_lr_decay(a.schedule);
  a.s.out_dir = a.out;
  a.s.lora = lora_config(a.lora, a.student);

  // The student's tokenizer and chat template turn text into tokens (optional for token-id data).
  std::shared_ptr<const Tokenizer> tok;
  if (fs::exists(fs::path(a.student) / "tokenizer.json") || is_gguf_file(a.student)) tok = Tokenizer::load(a.student);  // (a GGUF holds its vocabulary)
  const auto tmpl = ChatTemplate::choose(a.chat_template, tok.get());
  if (tok && tok->vocab_size() > student.config.n_vocab)
    fail("{}: the tokenizer has {} tokens but the model only {} embedding rows", a.student, tok->vocab_size(),
         student.config.n_vocab);
  auto read = [&](const std::string& path) { return read_examples(path, tok.get(), tmpl.get()); };
  TokenDataset train = TokenDataset::build(read(a.data), a.s.seq_len, student.config.n_vocab);
  TokenDataset eval;
  if (!a.eval_data.empty()) eval = TokenDataset::build(read(a.eval_data), a.s.seq_len, student.config.n_vocab);
  else if (a.eval_fraction > 0) eval = train.split_off(a.eval_fraction, a.s.seed);

  bool created = false;
  check_writable(a.out, &created);
  try {
    std::unique_ptr<RemoteScorer> remote_scorer;
    std::unique_ptr<CrossVocabularyScorer> cross_scorer;
    std::shared_ptr<const Tokenizer> teacher_tok;
    const int k = train.k() > 0 ? int(train.k()) : a.teacher_top_k;
    if ((remote || cross_vocabulary) && !tok) fail("on-policy distillation samples text: the student needs a tokenizer.json");
    if (remote) {
      RemoteScorerSettings rs;
      rs.model = a.teacher_model, rs.ca_file = a.ca_file, rs.api_key_env = a.api_key_env;
      rs.k = k;
      remote_scorer = std::make_unique<RemoteScorer>(a.teacher, *tok, rs);
    } else if (cross_vocabulary) {
      teacher_tok = Tokenizer::load(a.teacher);
      cross_scorer = std::make_unique<CrossVocabularyScorer>(*teacher, *teacher_tok, *tok, k);
      std::fprintf(stderr, "train: the teacher's vocabulary differs (%lld tokens, the student's %lld): it grades the "
                   "student's samples on bytes, top-%d projected onto student tokens\n",
                   (long long)teacher_tok->vocab_size(), (long long)tok->vocab_size(), k);
    }
    TeacherScorer* scorer = remote_scorer ? static_cast<TeacherScorer*>(remote_scorer.get()) : cross_scorer.get();
    const TrainSummary r =
        train_model(student, train, eval, cross_vocabulary ? nullptr : teacher.get(), a.s, a.resume, tok.get(), scorer);
    if (!DataParallel::leader()) return;  // under mpirun, rank 0 writes the model and reports
    if (remote_scorer)
      std::fprintf(stderr, "train: the remote teacher graded samples in %lld requests (%lld sequences from the cache)\n",
                   (long long)remote_scorer->requests(), (long long)remote_scorer->cache_hits());
    if (cross_scorer)
      std::fprintf(stderr, "train: of the %lld positions of the sequences the teacher graded (prompts included), %lld aligned "
                   "with a teacher token (KD), %lld fell inside one (ULD)\n",
                   (long long)cross_scorer->positions(), (long long)cross_scorer->aligned(), (long long)cross_scorer->shaped());
    // Keep the student's tokenizer beside the trained weights so the result runs as it is.
    copy_tokenizer_files(a.student, a.out);
    std::vector<std::string> data = {a.data};
    if (!a.eval_data.empty()) data.push_back(a.eval_data);
    write_provenance(a.out, provenance_record("train", a.student, a.teacher, data, a.s.to_json()));
    std::printf("trained %lld steps in %.1f s (%.0f tokens/s): final loss %.4f", (long long)r.steps, r.seconds,
                r.tokens_per_s, r.final_loss);
    if (r.eval_loss >= 0) std::printf(", held-out loss %.4f (perplexity %.2f)", r.eval_loss, std::exp(r.eval_loss));
    std::printf("\nmodel: %s   report: %s/report.html\n", a.out.c_str(), a.out.c_str());
  } catch (...) {
    // Nothing half-made stays behind: a fresh output directory without a checkpoint is removed.
    std::error_code ec;
    if (created && DataParallel::leader() && !fs::exists(fs::path(a.out) / "checkpoint")) fs::remove_all(a.out, ec);
    throw;
  }
}

}  // namespace

void add_precision_option(CLI::App* cmd, bool* bf16_matmuls) {
  cmd->add_option_function<std::string>(
         "--precision", [bf16_matmuls](const std::string& p) { *bf16_matmuls = p == "bf16"; },
         "Products of the training passes: f32, or bf16 (operands rounded to bf16, sums and master weights f32; "
         "vdpbf16ps where the CPU has AVX512_BF16) [default: f32]")
      ->check(CLI::IsMember({"f32", "bf16"}));
}

void register_train(CLI::App& app) {
  auto a = std::make_shared<TrainArgs>();
  CLI::App* cmd = app.add_subcommand("train", "Train or distil a student model");
  cmd->add_option("--student", a->student, "Student model directory (e.g. from `distill init`)")->required();
  cmd->add_option("--data", a->data,
                  "Training data: a text file, JSONL of {\"text\"}, {\"prompt\",\"completion\"}, {\"messages\"} "
                  "or {\"ids\"[,\"mask\"]}, or a `distill label` dataset directory")->required();
  cmd->add_option("--chat-template", a->chat_template, "Chat format for prompts and messages (default: detected from "
                  "the tokenizer): " + [] { std::string s; for (auto& n : ChatTemplate::names()) s += (s.empty() ? "" : ", ") + n; return s; }());
  cmd->add_option("-o,--out", a->out, "Output model directory (also holds checkpoint/, metrics.jsonl, report.html)")->required();
  cmd->add_option("--eval", a->eval_data, "Held-out data (default: --eval-fraction of --data)");
  cmd->add_option("--eval-fraction", a->eval_fraction, "Rows of --data held out when --eval is not given")->capture_default_str();
  cmd->add_option("--teacher", a->teacher,
                  "Teacher for logit distillation: a model directory (the same tokenizer; with --on-policy also another "
                  "vocabulary, graded on bytes), or (with --on-policy) the URL of a `distill serve` that grades the student's samples");
  cmd->add_option("--teacher-model", a->teacher_model, "Remote teacher: the model name to ask for (default: the server's only one)");
  cmd->add_option("--teacher-top-k", a->teacher_top_k, "Remote teacher, or one of another vocabulary: log-probs per graded token (a label dataset's k wins)")
      ->capture_default_str()->check(CLI::Range(1, 20));
  cmd->add_option("--ca-file", a->ca_file, "Remote teacher over HTTPS with its own certificate: the CA (PEM)");
  cmd->add_option("--api-key-env", a->api_key_env, "Remote teacher: environment variable holding the API key")->capture_default_str();
  cmd->add_option("--loss", a->loss, "ce | fkl | rkl | jsd | tvd (default: ce, or fkl with --teacher)");
  cmd->add_option("--kd-alpha", a->s.kd_alpha, "Distillation weight: loss = (1-a)·CE + a·KD")->capture_default_str()->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--temperature", a->s.kd.temperature, "Distillation temperature")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--beta", a->s.kd.beta, "JSD mixture weight of the teacher (0 = forward KL, 1 = reverse KL)")->capture_default_str()->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--topk-mode", a->topk_mode,
                  "Soft labels from a label dataset: renormalize (KD over the teacher's top-k only) or tail (one extra "
                  "outcome holds the mass outside the top-k on both sides)")->capture_default_str();
  cmd->add_flag("--no-t2", a->no_t2, "Do not scale the distillation loss by T² (default: scaled, as Hinton et al.)");
  cmd->add_option("--on-policy", a->s.on_policy,
                  "On-policy distillation (GKD): fraction of prompt/completion rows whose completion the student "
                  "samples and --teacher grades token by token (0 = offline)")
      ->capture_default_str()->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--uld-weight", a->s.uld_weight, "On-policy from a teacher of another tokenizer: weight of the ULD term "
                  "(sorted-probability distance) at positions inside a teacher token, relative to KD (0: off)")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->add_option("--on-policy-from", a->s.on_policy_from, "With --on-policy: the step at which sampling starts; the "
                  "steps before it distil offline on the data's completions (a random student's samples teach slowly)")
      ->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->add_option("--on-policy-temperature", a->s.on_policy_temperature, "Sampling temperature of the student's on-policy completions")
      ->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--batch", a->s.batch, "Sequences per micro-batch")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--seq-len", a->s.seq_len, "Tokens per sequence")->capture_default_str()->check(CLI::Range(1, 1 << 20));
  cmd->add_option("--grad-accum", a->s.grad_accum, "Micro-batches per optimizer step")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--steps", a->s.steps, "Optimizer steps (0: from --epochs)")->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->add_option("--epochs", a->s.epochs, "Passes over the data when --steps is 0")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--lr", a->s.lr.lr, "Peak learning rate")->capture_default_str()->check(CLI::PositiveNumber);
  cmd->add_option("--min-lr-ratio", a->s.lr.min_lr_ratio, "Final learning rate as a fraction of --lr")->capture_default_str();
  cmd->add_option("--warmup", a->s.lr.warmup_steps, "Linear warmup steps")->capture_default_str()->check(CLI::NonNegativeNumber);
  cmd->add_option("--schedule", a->schedule, "Learning-rate decay: cosine | linear | constant")->capture_default_str();
  cmd->add_option("--weight-decay", a->s.adamw.weight_decay, "AdamW weight decay (matrices only)")->capture_default_str();
  cmd->add_option("--clip", a->s.clip, "Global gradient-norm clip (0 = off)")->capture_default_str();
  cmd->add_option("--seed", a->s.seed, "Seed of the data order and the held-out split")->capture_default_str();
  cmd->add_option("--eval-every", a->s.eval_every, "Steps between held-out evaluations (0 = at the end)")->capture_default_str();
  cmd->add_option("--save-every", a->s.save_every, "Steps between checkpoints (0 = at the end)")->capture_default_str();
  cmd->add_flag("--resume", a->resume, "Continue from OUT/checkpoint (same settings), bit for bit");
  cmd->add_flag("--shard-optimizer", a->s.shard_optimizer,
                "Under mpirun: each rank keeps AdamW's moments for its 1/N of the parameters (ZeRO-1; same steps)");
  cmd->add_flag("--no-overlap-comm", [a](int64_t) { a->s.overlap_comm = false; },
                "Under mpirun: sum the gradients over the ranks after the backward instead of layer by layer during it");
  cmd->add_flag("--activation-checkpointing", a->s.recompute_layers,
                "Keep each layer's input only and recompute the layer in the backward (less memory, ~1/3 more compute, same gradients)");
  add_precision_option(cmd, &a->s.bf16_matmuls);
  add_lora_train_options(cmd, &a->lora);
  cmd->callback([a] { run_train(*a); });
}

}  // namespace distill
