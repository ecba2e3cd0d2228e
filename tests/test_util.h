// Helpers shared by the tests: scratch directories, raw file writing, comparisons.
#pragma once

#include "core/rng.h"
#include "core/tensor.h"
#include "model/kv_cache.h"

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include <chrono>
#include <cmath>
#include <csignal>
#include <functional>
#include <random>
#include <thread>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

namespace distill::test {

// A fresh directory under the system temp dir, removed at scope exit.
// The KV cache type new caches get, for one scope (restored after, whatever happens).
class ScopedKvCacheType {
public:
  explicit ScopedKvCacheType(DType t) : before_(default_kv_cache_type()) { set_default_kv_cache_type(t); }
  ~ScopedKvCacheType() { set_default_kv_cache_type(before_); }
  ScopedKvCacheType(const ScopedKvCacheType&) = delete;
  ScopedKvCacheType& operator=(const ScopedKvCacheType&) = delete;

private:
  DType before_;
};

class TempDir {
public:
  TempDir() {
    const auto* info = ::testing::UnitTest::GetInstance()->current_test_info();
    std::string name = std::string("distill-") + (info ? info->name() : "test") + "-" + std::to_string(::getpid());
    path_ = std::filesystem::temp_directory_path() / name;
    std::filesystem::remove_all(path_);
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  std::string operator/(const std::string& child) const { return (path_ / child).string(); }
  std::string str() const { return path_.string(); }

private:
  std::filesystem::path path_;
};

// The spacing of f16 values at |x| (normal range): teacher datasets keep log-probs as f16
// (formats/topk_codec.h), so two stored values of nearly equal log-probs may be one of these apart.
inline double f16_quantum(float x) {
  int e = 0;
  std::frexp(std::abs(x), &e);  // |x| = m·2^e, m in [0.5, 1): f16's 10 mantissa bits step by 2^(e−11)
  return std::ldexp(1.0, std::max(e, -13) - 11);
}

// (L(x + h) − L(x − h)) / 2h with x restored after: the central difference every backward test
// compares its gradient with.
inline double central_difference(float& x, float h, const std::function<double()>& loss) {
  const float saved = x;
  x = saved + h;
  const double lp = loss();
  x = saved - h;
  const double lm = loss();
  x = saved;
  return (lp - lm) / (2.0 * h);
}

inline void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), std::streamsize(bytes.size()));
}

inline std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

inline std::vector<float> random_vector(size_t n, uint64_t seed, float scale = 1.0f) {
  Rng rng(seed);
  std::vector<float> v(n);
  for (float& x : v) x = scale * rng.normal();
  return v;
}

inline float max_abs(const float* a, size_t n) {
  float m = 0.0f;
  for (size_t i = 0; i < n; ++i) m = std::max(m, std::fabs(a[i]));
  return m;
}

// Infinity when either side has a NaN (std::max would skip it and hide the failure).
inline float max_abs_diff(const float* a, const float* b, size_t n) {
  float m = 0.0f;
  for (size_t i = 0; i < n; ++i) {
    const float d = std::fabs(a[i] - b[i]);
    if (std::isnan(d)) return INFINITY;
    m = std::max(m, d);
  }
  return m;
}

// Runs the distill binary with `args` (shell syntax; `env` is prepended, e.g. "VAR=1 "), capturing
// stdout and stderr together.
struct CliResult {
  int exit_code;
  std::string output;
};
inline CliResult run_distill(const std::string& args, const std::string& env = "") {
  const std::string cmd = env + " " + std::string(DISTILL_BINARY) + " " + args + " 2>&1";
  FILE* p = popen(cmd.c_str(), "r");
  CliResult r{-1, ""};
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  const int status = pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return r;
}

// How much of `whole` bytes `file` holds so far (0 while it does not exist): kill_at_random's
// progress of a job writing one growing file.
inline double file_share(const std::filesystem::path& file, size_t whole) {
  return std::filesystem::exists(file) ? double(std::filesystem::file_size(file)) / double(whole) : 0.0;
}

// Starts `distill ARGS` until `times` runs were SIGKILLed mid-run (at most 4·times attempts),
// each at a random moment within what an uninterrupted run takes (full_ms). After each kill,
// progress() says how far the result got: 0 (nothing yet), in (0, 1) (a kill that landed mid-run)
// or ≥ 1 (the run finished first). The window adapts to the machine: a kill that found nothing
// waits longer next time (a loaded machine starts processes slowly), one that found a finished
// result calls restart() (remove the result, so runs start over) and waits less. Returns how many
// kills landed mid-run (a test that kills should see at least one).
inline int kill_at_random(const std::string& args, int times, int full_ms, uint32_t seed,
                          const std::function<double()>& progress, const std::function<void()>& restart) {
  std::mt19937 rng(seed);
  int landed = 0;
  double lo = 0.1 * full_ms, hi = 0.6 * full_ms;
  for (int attempt = 0; attempt < 4 * times && landed < times; ++attempt) {
    const pid_t pid = fork();
    if (pid == 0) {
      const std::string cmd = std::string(DISTILL_BINARY) + " " + args + " >/dev/null 2>&1";
      execl("/bin/sh", "sh", "-c", ("exec " + cmd).c_str(), nullptr);
      _exit(127);
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(std::uniform_int_distribution<int>(int(lo), int(hi))(rng)));
    ::kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    const double p = progress();
    if (p <= 0) {
      lo *= 1.5, hi *= 1.5;
    } else if (p >= 1) {
      restart();
      lo *= 0.7, hi *= 0.7;
    } else {
      ++landed;
    }
  }
  return landed;
}

inline std::string reference_path(const std::string& file) { return std::string(DISTILL_REFERENCE_DIR) + "/" + file; }

// The last held-out loss a training run recorded in its metrics.jsonl (-1 if none).
inline double last_eval_loss(const std::string& metrics_path) {
  std::ifstream in(metrics_path);
  std::string line;
  double loss = -1;
  while (std::getline(in, line)) {
    const nlohmann::json j = nlohmann::json::parse(line);
    if (j.contains("eval_loss")) loss = j["eval_loss"];
  }
  return loss;
}

// A part of the memory estimate train and rl print ("..., optimizer 0.4 MiB, activations 18.0
// MiB"), in MiB; -1 when the log has none.
inline double memory_estimate_mib(const std::string& log, const std::string& part) {
  const std::string key = ", " + part + " ";
  const size_t at = log.find(key);
  return at == std::string::npos ? -1.0 : std::stod(log.substr(at + key.size()));
}

// The GRPO tests' policy: a byte-level tiny model trained to answer "Pick a digit" with a random
// digit (DIR/sft), and 20 tasks whose rewarded answer is "7" (DIR/tasks.jsonl).
inline CliResult train_digit_picker(const std::string& dir) {
  {
    std::ofstream sft(dir + "/sft.jsonl"), tasks(dir + "/tasks.jsonl");
    for (int i = 0; i < 300; ++i) sft << nlohmann::json{{"prompt", "Pick a digit"}, {"completion", std::to_string((i * 7) % 10)}}.dump() << "\n";
    for (int i = 0; i < 20; ++i) tasks << R"({"prompt": "Pick a digit", "answer": "7"})" << "\n";
  }
  const CliResult r = run_distill("init --preset tiny --tokenizer bytes -o " + dir + "/s0");
  if (r.exit_code != 0) return r;
  return run_distill("train --student " + dir + "/s0 --data " + dir + "/sft.jsonl -o " + dir + "/sft" +
                     " --steps 150 --batch 8 --seq-len 48 --lr 0.003 --eval-fraction 0");
}

}  // namespace distill::test
