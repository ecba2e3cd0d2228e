#include "core/progress.h"

#include <unistd.h>

#include <fmt/format.h>

#include <cstdio>

namespace distill {

std::string format_duration(double s) {
  if (s < 0 || s != s) return "?";
  char buf[32];
  const long t = long(s + 0.5);
  if (t < 60) std::snprintf(buf, sizeof buf, "%lds", t);
  else if (t < 3600) std::snprintf(buf, sizeof buf, "%ldm%02lds", t / 60, t % 60);
  else std::snprintf(buf, sizeof buf, "%ldh%02ldm", t / 3600, (t % 3600) / 60);
  return buf;
}

Progress::Progress(std::string label, int64_t total, double log_interval_s)
    : label_(std::move(label)), total_(total), tty_(::isatty(2) != 0), log_interval_s_(log_interval_s),
      start_(std::chrono::steady_clock::now()), last_print_(start_) {}

void Progress::update(int64_t done, const std::string& info, double rate, const char* rate_unit) {
  const auto now = std::chrono::steady_clock::now();
  if (start_done_ < 0) start_done_ = done > 0 ? done - 1 : 0;  // resumed runs: rate of this run only
  const double elapsed = std::chrono::duration<double>(now - start_).count();
  const double since_print = std::chrono::duration<double>(now - last_print_).count();
  const bool last = done >= total_;
  if (!tty_ && !last && since_print < log_interval_s_ && done != start_done_ + 1) return;
  if (tty_ && !last && since_print < 0.1) return;
  last_print_ = now;
  const double per_unit = done > start_done_ ? elapsed / double(done - start_done_) : 0.0;
  const double eta = per_unit * double(total_ - done);
  char rate_buf[48] = "";
  if (rate >= 0) std::snprintf(rate_buf, sizeof rate_buf, " | %.0f %s", rate, rate_unit);
  const double frac = total_ > 0 ? double(done) / double(total_) : 1.0;
  if (tty_) {
    const int width = 20, filled = int(frac * width + 0.5);
    std::string bar(size_t(filled), '#');
    bar.resize(size_t(width), '.');
    std::fprintf(stderr, "\r\033[K[%s] %lld/%lld [%s] %s%s | ETA %s", label_.c_str(), (long long)done,
                 (long long)total_, bar.c_str(), info.c_str(), rate_buf, format_duration(eta).c_str());
    open_line_ = true;
  } else {
    std::fprintf(stderr, "[%s] %lld/%lld (%.0f%%) %s%s | elapsed %s | ETA %s\n", label_.c_str(), (long long)done,
                 (long long)total_, 100.0 * frac, info.c_str(), rate_buf, format_duration(elapsed).c_str(),
                 format_duration(eta).c_str());
  }
  std::fflush(stderr);
}

void Progress::finish() {
  if (open_line_) std::fprintf(stderr, "\n");
  open_line_ = false;
}

std::string human_bytes(double b) {
  const char* units[] = {"B", "KB", "MB", "GB", "TB"};
  int u = 0;
  while (b >= 1000 && u < 4) b /= 1000, ++u;
  return fmt::format("{:.1f} {}", b, units[u]);
}

}  // namespace distill
