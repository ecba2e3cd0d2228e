// Self-contained HTML reports (inline SVG, no scripts, no external files): loss curves and the
// settings of a run, readable in any browser and safe to attach to a ticket.
#pragma once

#include <nlohmann/json.hpp>

#include <string>
#include <utility>
#include <vector>

namespace distill {

struct Series {
  std::string name;
  std::string color;  // CSS colour
  std::vector<std::pair<double, double>> points;
};

// An SVG line chart of one or more series sharing axes.
std::string svg_line_chart(const std::string& title, const std::string& x_label, const std::vector<Series>& series,
                           int width = 640, int height = 300);

std::string html_escape(const std::string& s);

// The frame of every report: the console's style sheet inlined (core/web_assets), a header with
// the title, <main>; and its end. A report is one file: it opens from disk as it is.
std::string report_page_begin(const std::string& title);
std::string report_page_end();

// report.html for a training run: curves of every numeric metric in `metrics` lines (grouped:
// losses, learning rate, throughput), the summary and the settings. Written atomically.
void write_training_report(const std::string& path, const std::string& title, const std::vector<nlohmann::json>& metrics,
                           const nlohmann::json& summary, const nlohmann::json& settings);

}  // namespace distill
