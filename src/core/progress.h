// Progress of long work. On a terminal: one line redrawn in place with a bar, rate and ETA.
// Otherwise (logs, CI): a plain line every `log_interval` seconds and at the end.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace distill {

std::string format_duration(double seconds);  // "42s", "3m07s", "1h02m"
std::string human_bytes(double bytes);        // "512.0 B", "1.2 MB", "13.4 GB" (powers of 1000)

class Progress {
public:
  Progress(std::string label, int64_t total, double log_interval_s = 10.0);
  // `done` units finished; `rate_unit` names what rate() counts (e.g. "tok/s"); info is free text.
  void update(int64_t done, const std::string& info, double rate = -1.0, const char* rate_unit = "");
  // Ends the in-place line (terminal) so later output starts on a fresh line.
  void finish();

private:
  std::string label_;
  int64_t total_, start_done_ = -1;
  bool tty_;
  double log_interval_s_;
  std::chrono::steady_clock::time_point start_, last_print_;
  bool open_line_ = false;
};

}  // namespace distill
