#include "train/report.h"

#include "core/atomic_file.h"
#include "core/web_assets.h"

#include <fmt/format.h>

#include <algorithm>
#include <cmath>

namespace distill {

using nlohmann::json;

std::string html_escape(const std::string& s) {
  std::string out;
  for (char c : s) {
    switch (c) {
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '&': out += "&amp;"; break;
      case '"': out += "&quot;"; break;
      default: out += c;
    }
  }
  return out;
}

std::string report_page_begin(const std::string& title) {
  return "<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><meta name='viewport' content='width=device-width, initial-scale=1'>"
         "<title>" + html_escape(title) + "</title><style>" + web_asset_text("/web/style.css") +
         "</style></head><body class='report'><header class='top'><h1>" + html_escape(title) + "</h1></header><main>";
}

std::string report_page_end() { return "</main></body></html>\n"; }

std::string svg_line_chart(const std::string& title, const std::string& x_label, const std::vector<Series>& series,
                           int width, int height) {
  double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
  for (const Series& s : series)
    for (auto [x, y] : s.points)
      if (std::isfinite(y)) x0 = std::min(x0, x), x1 = std::max(x1, x), y0 = std::min(y0, y), y1 = std::max(y1, y);
  if (!(x0 <= x1)) return "<p>" + html_escape(title) + ": no data</p>";
  if (x1 == x0) x1 = x0 + 1;
  if (y1 == y0) y1 = y0 + 1, y0 -= 1;
  const int left = 60, right = 15, top = 30, bottom = 40;
  const double pw = width - left - right, ph = height - top - bottom;
  auto px = [&](double x) { return left + (x - x0) / (x1 - x0) * pw; };
  auto py = [&](double y) { return top + (1.0 - (y - y0) / (y1 - y0)) * ph; };
  std::string svg = fmt::format(
      "<svg xmlns='http://www.w3.org/2000/svg' width='{}' height='{}' font-family='sans-serif' font-size='11'>"
      "<text x='{}' y='18' font-size='13' font-weight='bold'>{}</text>"
      "<rect x='{}' y='{}' width='{}' height='{}' fill='none' stroke='#999'/>",
      width, height, left, html_escape(title), left, top, pw, ph);
  for (int i = 0; i <= 4; ++i) {  // y grid and labels
    const double y = y0 + (y1 - y0) * i / 4.0;
    svg += fmt::format("<line x1='{}' x2='{}' y1='{:.1f}' y2='{:.1f}' stroke='#eee'/>"
                       "<text x='{}' y='{:.1f}' text-anchor='end'>{:.4g}</text>",
                       left, left + pw, py(y), py(y), left - 4, py(y) + 4, y);
  }
  svg += fmt::format("<text x='{}' y='{}' text-anchor='start'>{:.6g}</text><text x='{}' y='{}' text-anchor='end'>{:.6g}</text>"
                     "<text x='{}' y='{}' text-anchor='middle'>{}</text>",
                     left, top + ph + 14, x0, left + pw, top + ph + 14, x1, left + pw / 2, height - 6, html_escape(x_label));
  int legend_x = left + 10;
  for (const Series& s : series) {
    std::string pts;
    for (auto [x, y] : s.points)
      if (std::isfinite(y)) pts += fmt::format("{:.1f},{:.1f} ", px(x), py(y));
    svg += fmt::format("<polyline fill='none' stroke='{}' stroke-width='1.5' points='{}'/>", s.color, pts);
    if (s.points.size() == 1)
      svg += fmt::format("<circle cx='{:.1f}' cy='{:.1f}' r='3' fill='{}'/>", px(s.points[0].first), py(s.points[0].second), s.color);
    svg += fmt::format("<rect x='{}' y='{}' width='10' height='3' fill='{}'/><text x='{}' y='{}'>{}</text>", legend_x,
                       top + 8, s.color, legend_x + 14, top + 12, html_escape(s.name));
    legend_x += 20 + 7 * int(s.name.size());
  }
  return svg + "</svg>";
}

namespace {

Series series_of(const std::vector<json>& metrics, const std::string& key, const std::string& color) {
  Series s{key, color, {}};
  for (const json& m : metrics)
    if (m.contains(key) && m[key].is_number() && m.contains("step")) s.points.push_back({m["step"].get<double>(), m[key].get<double>()});
  return s;
}

std::string table(const json& j) {
  std::string out = "<table>";
  for (const auto& [k, v] : j.items())
    out += "<tr><th>" + html_escape(k) + "</th><td>" + html_escape(v.is_string() ? v.get<std::string>() : v.dump()) + "</td></tr>";
  return out + "</table>";
}

// Charts of the keys present in the metrics, one chart per title; none when no key is present.
std::string charts_of(const std::vector<json>& metrics, const std::string& title,
                      std::initializer_list<std::pair<const char*, const char*>> keys) {
  std::vector<Series> series;
  for (auto [key, color] : keys)
    if (Series s = series_of(metrics, key, color); !s.points.empty()) series.push_back(std::move(s));
  return series.empty() ? "" : svg_line_chart(title, "step", series) + "<br>";
}

// Why a reinforcement run learns or does not: which groups carried signal, how large the
// advantages were, how far the policy moved and how its samples changed.
std::string rl_diagnostics(const std::vector<json>& metrics) {
  return charts_of(metrics, "share of groups: without signal (all rewards equal), all right, all wrong",
                   {{"zero_signal_frac", "#7f7f7f"}, {"solved_frac", "#2ca02c"}, {"unsolved_frac", "#d62728"}}) +
         charts_of(metrics, "advantages: mean |A|, share of rollouts with A ≠ 0",
                   {{"adv_abs_mean", "#1f77b4"}, {"adv_nonzero_frac", "#9467bd"}}) +
         charts_of(metrics, "policy entropy at the sampled tokens (nats)", {{"entropy", "#ff7f0e"}}) +
         charts_of(metrics, "KL to the reference (k3, per token)", {{"kl", "#9467bd"}}) +
         charts_of(metrics, "completion length (tokens)", {{"completion_len", "#8c564b"}});
}

}  // namespace

void write_training_report(const std::string& path, const std::string& title, const std::vector<json>& metrics,
                           const json& summary, const json& settings) {
  std::string html = report_page_begin(title) + "<h2>Summary</h2>" + table(summary) + "<h2>Curves</h2>";
  std::vector<Series> losses;
  for (auto [key, color] : {std::pair{"loss", "#1f77b4"}, {"ce", "#2ca02c"}, {"kd", "#9467bd"}, {"eval_loss", "#d62728"}}) {
    Series s = series_of(metrics, key, color);
    if (!s.points.empty()) losses.push_back(std::move(s));
  }
  html += svg_line_chart("loss", "step", losses) + "<br>";
  std::vector<Series> rewards;  // reinforcement learning runs
  for (auto [key, color] : {std::pair{"reward_mean", "#1f77b4"}, {"accuracy", "#2ca02c"}, {"eval_accuracy", "#d62728"}}) {
    Series s = series_of(metrics, key, color);
    if (!s.points.empty()) rewards.push_back(std::move(s));
  }
  if (!rewards.empty()) html += svg_line_chart("reward and accuracy", "step", rewards) + "<br>";
  html += rl_diagnostics(metrics);
  // Distillation: how closely the student follows its teacher on held-out data.
  if (Series kl = series_of(metrics, "eval_kl_to_teacher", "#9467bd"); !kl.points.empty()) {
    html += svg_line_chart("held-out KL(teacher ‖ student), nats/token", "step", {kl}) + "<br>";
    html += svg_line_chart("held-out top-1 agreement with the teacher", "step", {series_of(metrics, "eval_top1_agreement", "#2ca02c")}) + "<br>";
  }
  html += svg_line_chart("learning rate", "step", {series_of(metrics, "lr", "#ff7f0e")}) + "<br>";
  html += svg_line_chart("tokens/s", "step", {series_of(metrics, "tokens_per_s", "#8c564b")}) + "<br>";
  html += svg_line_chart("gradient norm (before clipping)", "step", {series_of(metrics, "grad_norm", "#7f7f7f")});
  html += "<h2>Settings</h2>" + table(settings) + report_page_end();
  write_file_atomic(path, html.data(), html.size());
}

}  // namespace distill
