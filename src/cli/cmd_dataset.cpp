// distill dataset info|merge|export: inspect, combine (e.g. the shards of several machines) and
// export teacher datasets (formats/teacher_dataset.h).
#include "cli/commands.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "formats/json_fields.h"
#include "formats/teacher_dataset.h"
#include "tokenizer/tokenizer.h"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <filesystem>
#include <fstream>

namespace distill {

namespace fs = std::filesystem;
using nlohmann::json;

namespace {

void info(const std::string& dir) {
  const json m = read_teacher_manifest(dir);
  const json st = dataset_stats(dir);  // recomputed: also verifies every record's checksum
  std::printf("%s\n  teacher      %s (%s)\n  tokenizer    %s\n  records      %lld (%lld finished)\n"
              "  tokens       %lld prompt, %lld completion\n  soft labels  %lld positions, top-%d\n"
              "  size         %.0f bytes, %.1f bytes per labelled token (top-k: %.1f bytes per soft position)\n"
              "  failed       %zu prompts\n",
              dir.c_str(), m.value("teacher", "?").c_str(), m.value("teacher_kind", "?").c_str(),
              m.value("tokenizer_fingerprint", "?").c_str(), (long long)st["records"].get<int64_t>(),
              (long long)st["finished"].get<int64_t>(), (long long)st["prompt_tokens"].get<int64_t>(),
              (long long)st["completion_tokens"].get<int64_t>(), (long long)st["soft_positions"].get<int64_t>(),
              st["top_k"].get<int>(), st["bytes"].get<double>(), st["bytes_per_labelled_token"].get<double>(),
              st["topk_bytes_per_soft_position"].get<double>(),
              m.contains("failed") ? m["failed"].size() : size_t(0));
  if (st["soft_positions"].get<int64_t>() > 0)  // what logit KD can add to CE on the text
    std::printf("  soft content teacher entropy %.3f nats over its top-%d (mass %.3f), top-1 probability %.3f, "
                "top-1 = the text's token at %.1f %% of positions\n",
                st["soft_topk_entropy"].get<double>(), st["top_k"].get<int>(), st["soft_topk_mass"].get<double>(),
                st["soft_top1_prob"].get<double>(), 100.0 * st["soft_top1_is_text"].get<double>());
}

void merge(const std::vector<std::string>& inputs, const std::string& out_dir) {
  if (fs::exists(fs::path(out_dir) / "records.bin")) fail("{}: already holds a dataset", out_dir);
  json first;
  for (const std::string& in : inputs) {
    const json m = read_teacher_manifest(in);
    if (first.is_null()) first = m;
    else if (m.value("tokenizer_fingerprint", "") != first.value("tokenizer_fingerprint", ""))
      fail("{}: written with another tokenizer than {}: datasets must share one token space", in, inputs[0]);
  }
  TeacherDatasetWriter w(out_dir, false);
  int64_t dup = 0;
  for (const std::string& in : inputs)
    read_records((fs::path(in) / "records.bin").string(), [&](TeacherRecord&& r) {
      if (w.done(r.prompt_index, r.sample_index)) return void(++dup);  // the same prompt in two inputs
      w.append(r);
    });
  w.manifest() = first;
  w.manifest()["merged_from"] = inputs;
  w.manifest()["shard"] = "merged";
  const auto tok = Tokenizer::load(jsonf::get_string(first, "tokenizer", "manifest.json"));
  w.finish([&](const std::vector<int32_t>& ids) { return tok->decode(ids, false); });
  std::printf("merged %zu datasets into %s: %lld records (%lld duplicates skipped)\n", inputs.size(), out_dir.c_str(),
              (long long)w.records(), (long long)dup);
}

void export_jsonl(const std::string& dir, const std::string& out) {
  const json m = read_teacher_manifest(dir);
  const auto tok = Tokenizer::load(jsonf::get_string(m, "tokenizer", dir + "/manifest.json"));
  std::string text;
  read_records((fs::path(dir) / "records.bin").string(), [&](TeacherRecord&& r) {
    json line = {{"prompt_index", r.prompt_index}, {"sample", r.sample_index}, {"prompt", tok->decode(r.prompt, false)},
                 {"completion", tok->decode(r.completion, false)}, {"prompt_ids", r.prompt},
                 {"completion_ids", r.completion}, {"finished", r.finished}};
    if (r.k > 0) {
      json topk = json::array();
      for (size_t j = 0; j < r.completion.size(); ++j) {
        if (!r.soft[j]) {
          topk.push_back(nullptr);
          continue;
        }
        json ids(std::vector<int32_t>(r.topk_ids.begin() + int64_t(j) * r.k, r.topk_ids.begin() + int64_t(j + 1) * r.k));
        json lps(std::vector<float>(r.topk_logp.begin() + int64_t(j) * r.k, r.topk_logp.begin() + int64_t(j + 1) * r.k));
        topk.push_back({{"ids", ids}, {"logprobs", lps}});
      }
      line["top_k"] = topk;
    }
    text += line.dump() + "\n";
  });
  write_file_atomic(out, text.data(), text.size());
  std::printf("exported %s -> %s\n", dir.c_str(), out.c_str());
}

}  // namespace

void register_dataset(CLI::App& app) {
  CLI::App* cmd = app.add_subcommand("dataset", "Inspect, merge and export teacher datasets");
  cmd->require_subcommand(1);
  auto dir = std::make_shared<std::string>();
  CLI::App* i = cmd->add_subcommand("info", "Counts, size per labelled token, and a checksum pass over every record");
  i->add_option("dir", *dir, "Dataset directory")->required();
  i->callback([dir] { info(*dir); });
  auto inputs = std::make_shared<std::vector<std::string>>();
  auto out = std::make_shared<std::string>();
  CLI::App* m = cmd->add_subcommand("merge", "Combine datasets (e.g. --shard outputs) into one");
  m->add_option("inputs", *inputs, "Dataset directories")->required();
  m->add_option("-o,--out", *out, "Output dataset directory")->required();
  m->callback([inputs, out] { merge(*inputs, *out); });
  auto edir = std::make_shared<std::string>();
  auto eout = std::make_shared<std::string>();
  CLI::App* e = cmd->add_subcommand("export", "Write a dataset as JSONL (text, ids and top-k)");
  e->add_option("dir", *edir, "Dataset directory")->required();
  e->add_option("-o,--out", *eout, "Output JSONL file")->required();
  e->callback([edir, eout] { export_jsonl(*edir, *eout); });
}

}  // namespace distill
