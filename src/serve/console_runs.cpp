// Training runs for the owner's console (serve --runs DIR): every directory under DIR (two levels
// deep: a demo's stages) holding a report.html, with its curves read from metrics.jsonl —
// GET /v1/console/runs — and the report itself as a download, GET /v1/console/runs/report?name=.
#include "core/atomic_file.h"
#include "serve/openai_response.h"
#include "serve/server_context.h"

#include <httplib.h>

#include <algorithm>
#include <filesystem>
#include <fstream>
#include <sstream>

namespace distill {

namespace fs = std::filesystem;
using json = nlohmann::json;

namespace {

// Run directories (relative to the runs directory) holding a report.html, in name order.
std::vector<std::string> find_runs(const std::string& root) {
  std::vector<std::string> out;
  std::error_code ec;
  if (root.empty() || !fs::is_directory(root, ec)) return out;
  for (auto it = fs::recursive_directory_iterator(root, fs::directory_options::skip_permission_denied, ec);
       it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (ec) break;
    if (it.depth() >= 2) it.disable_recursion_pending();
    if (it->is_directory(ec) && fs::exists(it->path() / "report.html", ec)) out.push_back(fs::relative(it->path(), root, ec).string());
  }
  if (fs::exists(fs::path(root) / "report.html", ec)) out.push_back(".");
  std::sort(out.begin(), out.end());
  return out;
}

// (step, value) of one metric, at most ~200 points (every k-th line).
json curve(const std::vector<json>& metrics, const char* key) {
  json pts = json::array();
  const size_t every = std::max<size_t>(1, metrics.size() / 200);
  for (size_t i = 0; i < metrics.size(); ++i)
    if ((i % every == 0 || i + 1 == metrics.size()) && metrics[i].contains(key) && metrics[i][key].is_number())
      pts.push_back({metrics[i].value("step", 0), metrics[i][key]});
  return pts;
}

json run_summary(const fs::path& dir, const std::string& name) {
  std::vector<json> metrics;
  std::ifstream in(dir / "metrics.jsonl");
  for (std::string line; std::getline(in, line);) {
    try {
      metrics.push_back(json::parse(line));
    } catch (const json::exception&) {  // a line being written: the rest is still worth showing
    }
  }
  const bool demo = fs::exists(dir / "results.json");
  const bool rl = !metrics.empty() && metrics.back().contains("reward_mean");
  json r = {{"name", name}, {"kind", demo ? "demo" : rl ? "rl" : "train"}, {"steps", metrics.empty() ? 0 : metrics.back().value("step", 0)},
            {"loss", curve(metrics, "loss")}, {"eval_loss", curve(metrics, "eval_loss")}, {"reward", curve(metrics, "reward_mean")}};
  if (demo) {
    try {
      r["results"] = json::parse(read_text_file((dir / "results.json").string(), "demo results")).value("summary", json::array());
    } catch (const std::exception&) {
    }
  }
  return r;
}

}  // namespace

void handle_console_runs(OpenAIServer::Context& ctx, const httplib::Request& req, httplib::Response& res, const Caller& caller) {
  require_admin(ctx, caller);
  const std::vector<std::string> runs = find_runs(ctx.opt.runs_dir);
  if (req.path.size() >= 7 && req.path.compare(req.path.size() - 7, 7, "/report") == 0) {
    const std::string name = req.get_param_value("name");
    // Only a run the listing shows: the name is never a path the client chooses.
    if (std::find(runs.begin(), runs.end(), name) == runs.end())
      throw ApiError(404, "invalid_request_error", fmt::format("no run named '{}'", name), "name", "run_not_found");
    res.set_header("Content-Disposition", "attachment; filename=\"report.html\"");
    res.set_header("Content-Security-Policy", "sandbox; default-src 'none'; style-src 'unsafe-inline'; img-src data:");
    res.set_content(read_text_file((fs::path(ctx.opt.runs_dir) / name / "report.html").string(), "report"), "text/html; charset=utf-8");
    return;
  }
  json list = json::array();
  for (const std::string& name : runs) list.push_back(run_summary(fs::path(ctx.opt.runs_dir) / name, name));
  res.set_content(dump_json({{"object", "list"}, {"runs_dir", ctx.opt.runs_dir}, {"data", list}}), "application/json");
}

}  // namespace distill
