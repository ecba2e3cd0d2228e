#include "tasks/rewards.h"

#include "core/error.h"
#include "tasks/sandbox.h"
#include "core/regex.h"

#include <algorithm>
#include <cctype>
#include <iterator>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <cerrno>

namespace distill {

namespace {

std::string trim(const std::string& s) {
  const size_t b = s.find_first_not_of(" \t\r\n"), e = s.find_last_not_of(" \t\r\n");
  return b == std::string::npos ? "" : s.substr(b, e - b + 1);
}

// Content of the last \boxed{…}, matching nested braces; nothing if unbalanced.
std::optional<std::string> last_boxed(const std::string& s) {
  const size_t at = s.rfind("\\boxed{");
  if (at == std::string::npos) return std::nullopt;
  int depth = 0;
  for (size_t i = at + 6; i < s.size(); ++i) {
    if (s[i] == '{') ++depth;
    else if (s[i] == '}' && --depth == 0) return s.substr(at + 7, i - at - 7);
  }
  return std::nullopt;
}

// A number written with optional sign, thousands separators, decimals, exponent; nullopt if the
// whole string is not one.
std::optional<double> parse_number(std::string s) {
  s = trim(s);
  while (!s.empty() && (s.back() == '.' || s.back() == '%')) s.pop_back();
  if (!s.empty() && s[0] == '$') s.erase(0, 1);
  std::string clean;
  for (char c : s)
    if (c != ',' && c != ' ') clean += c;
  if (clean.empty()) return std::nullopt;
  char* end = nullptr;
  errno = 0;
  const double v = std::strtod(clean.c_str(), &end);
  if (end != clean.c_str() + clean.size() || errno == ERANGE || !std::isfinite(v)) return std::nullopt;
  return v;
}

std::string normalise_text(std::string s) {
  s = trim(s);
  std::string out;
  for (char c : s) {
    if (c == '$' || c == '{' || c == '}') continue;
    if (std::isspace(static_cast<unsigned char>(c))) {
      if (!out.empty() && out.back() != ' ') out += ' ';
      continue;
    }
    out += char(std::tolower(static_cast<unsigned char>(c)));
  }
  while (!out.empty() && (out.back() == '.' || out.back() == ' ')) out.pop_back();
  return out;
}

// The "a op b = c" steps of a completion: how many, and how many are right.
std::pair<int64_t, int64_t> count_arithmetic_steps(const std::string& c) {
  // "a op b = c" with integers or decimals; the operator may be + - * / × ÷ or x
  static const Regex step(R"(-?\d+(?:\.\d+)?\s*(?:[-+*/x]|×|÷)\s*-?\d+(?:\.\d+)?\s*=\s*-?\d+(?:\.\d+)?)");
  int64_t total = 0, right = 0;
  for (const auto& [begin, end] : step.find_all(c)) {
    const std::string m = c.substr(begin, end - begin);  // the regex vouches for its shape
    const char* p = m.c_str();
    char* next = nullptr;
    const auto skip = [&] { while (*p == ' ' || *p == '\t' || *p == '\n') ++p; };
    const double a = std::strtod(p, &next);
    p = next, skip();
    const std::string op = std::strncmp(p, "×", 2) == 0 || std::strncmp(p, "÷", 2) == 0 ? std::string(p, 2) : std::string(p, 1);
    p += op.size(), skip();
    const double b = std::strtod(p, &next);
    p = next, skip();
    const double got = std::strtod(p + 1, nullptr);  // past '='
    double want = 0;
    if (op == "+") want = a + b;
    else if (op == "-") want = a - b;
    else if (op == "*" || op == "x" || op == "×") want = a * b;
    else if (b != 0) want = a / b;
    else continue;  // a division by zero is not a step that can be right
    ++total;
    right += std::fabs(got - want) <= 1e-6 * std::max(1.0, std::fabs(want));
  }
  return {total, right};
}

}  // namespace

double arithmetic_steps_right(const std::string& c) {
  const auto [total, right] = count_arithmetic_steps(c);
  return total ? double(right) / double(total) : 0.0;
}

bool every_arithmetic_step_right(const std::string& c) {
  const auto [total, right] = count_arithmetic_steps(c);
  return right == total;
}

std::optional<std::string> extract_answer(const std::string& c) {
  if (auto b = last_boxed(c)) return trim(*b);
  const size_t hashes = c.rfind("####");
  if (hashes != std::string::npos) {
    std::string rest = c.substr(hashes + 4);
    rest = rest.substr(0, rest.find('\n'));
    if (!trim(rest).empty()) return trim(rest);
  }
  const size_t open = c.rfind("<answer>");
  if (open != std::string::npos) {
    const size_t close = c.find("</answer>", open);
    if (close != std::string::npos) return trim(c.substr(open + 8, close - open - 8));
  }
  // the last number: digits with optional sign, separators and decimals
  static const Regex number(R"(-?\d[\d,]*(?:\.\d+)?(?:[eE][-+]?\d+)?)");
  const auto matches = number.find_all(c);
  if (matches.empty()) return std::nullopt;
  return c.substr(matches.back().first, matches.back().second - matches.back().first);
}

bool answers_match(const std::string& got, const std::string& want) {
  const auto a = parse_number(got), b = parse_number(want);
  if (a && b) return std::fabs(*a - *b) <= 1e-9 * std::max(1.0, std::fabs(*b));
  return normalise_text(got) == normalise_text(want);
}

bool final_answer_right(const nlohmann::json& task, const std::string& completion) {
  const auto got = extract_answer(completion);
  if (!got || !task.contains("answer")) return false;
  const std::string want = task["answer"].is_string() ? task["answer"].get<std::string>() : task["answer"].dump();
  return answers_match(*got, want);
}

RewardSpec RewardSpec::parse(const std::string& spec) {
  static const std::string kKinds[] = {"answer", "worked", "format", "steps", "regex", "length", "cmd"};
  // Terms are separated by commas that are followed by a reward name, so a regex or command may
  // itself contain commas ("regex:a{1,3}").
  auto starts_term = [&](size_t at) {
    for (const std::string& k : kKinds) {
      const size_t n = k.size();
      if (spec.compare(at, n, k) == 0 && (at + n == spec.size() || spec[at + n] == ':' || spec[at + n] == ',')) return true;
    }
    return false;
  };
  std::vector<std::string> items;
  size_t begin = 0;
  for (size_t i = 0; i <= spec.size(); ++i)
    if (i == spec.size() || (spec[i] == ',' && starts_term(i + 1))) items.push_back(spec.substr(begin, i - begin)), begin = i + 1;
  RewardSpec r;
  for (std::string item : items) {
    item = trim(item);
    if (item.empty()) continue;
    RewardTerm t;
    const size_t colon = item.find(':');
    t.kind = item.substr(0, colon);
    std::string rest = colon == std::string::npos ? "" : item.substr(colon + 1);
    const bool takes_arg = t.kind == "regex" || t.kind == "cmd";
    // the weight: the whole rest for answer/format/length, a trailing ":number" for regex/cmd
    const size_t last = takes_arg ? rest.rfind(':') : std::string::npos;
    const std::string weight = takes_arg ? (last == std::string::npos ? "" : rest.substr(last + 1)) : rest;
    if (!weight.empty()) {
      const auto w = parse_number(weight);
      if (w) {
        t.weight = *w;
        rest = takes_arg ? rest.substr(0, last) : "";
      } else if (!takes_arg) {
        fail("--reward {}: weight '{}' is not a number", t.kind, weight);
      }
    }
    t.arg = rest;
    if (t.kind == "regex") {
      if (t.arg.empty()) fail("--reward regex needs a pattern: regex:PATTERN[:weight]");
      t.regex = std::make_shared<Regex>(t.arg);
    } else if (t.kind == "cmd") {
      if (t.arg.empty()) fail("--reward cmd needs a program: cmd:PROGRAM[:weight]");
    } else if (std::find(std::begin(kKinds), std::end(kKinds), t.kind) == std::end(kKinds)) {
      fail("--reward: unknown reward '{}' (known: answer, worked, format, steps, regex:PATTERN, length, cmd:PROGRAM)", t.kind);
    }
    r.terms_.push_back(std::move(t));
  }
  if (r.terms_.empty()) fail("--reward is empty");
  return r;
}

std::vector<std::string> RewardSpec::term_metric_names() const {
  std::vector<std::string> names;
  for (size_t i = 0; i < terms_.size(); ++i) {
    int seen = 1;
    for (size_t j = 0; j < i; ++j) seen += terms_[j].kind == terms_[i].kind;
    names.push_back(seen > 1 ? fmt::format("reward_{}#{}", terms_[i].kind, seen) : fmt::format("reward_{}", terms_[i].kind));
  }
  return names;
}

bool RewardSpec::has_answer() const {
  for (const RewardTerm& t : terms_)
    if (t.kind == "answer" || t.kind == "worked") return true;
  return false;
}

double RewardSpec::score(const nlohmann::json& task, const std::string& completion, int64_t n_tokens,
                         int64_t max_tokens, std::vector<double>* components) const {
  double total = 0.0;
  if (components) components->clear();
  for (const RewardTerm& t : terms_) {
    double v = 0.0;
    if (t.kind == "answer" || t.kind == "worked") {
      v = final_answer_right(task, completion) ? 1.0 : 0.0;
      // worked: a right answer reached through a wrong step is a guess, and earns nothing
      if (t.kind == "worked" && v > 0.0 && !every_arithmetic_step_right(completion)) v = 0.0;
    } else if (t.kind == "format") {
      // "<think>" may have been in the prompt; what matters is a closed think block, then an answer
      const size_t close = completion.find("</think>");
      const size_t open = completion.find("<think>");
      v = close != std::string::npos && (open == std::string::npos || open < close) &&
                  !trim(completion.substr(close + 8)).empty()
              ? 1.0
              : 0.0;
    } else if (t.kind == "steps") {
      v = arithmetic_steps_right(completion);
    } else if (t.kind == "regex") {
      v = t.regex->find_all(completion).empty() ? 0.0 : 1.0;
    } else if (t.kind == "length") {
      v = max_tokens > 0 ? -double(n_tokens) / double(max_tokens) : 0.0;
    } else if (t.kind == "cmd") {
      std::vector<std::string> argv;
      std::stringstream ss(t.arg);
      for (std::string a; ss >> a;) argv.push_back(a);
      SandboxLimits lim;
      lim.timeout_s = cmd_timeout_s;
      const SandboxResult res = run_sandboxed(argv, nlohmann::json{{"task", task}, {"completion", completion}}.dump() + "\n", lim);
      if (!res.timed_out && res.exit_code == 0) {
        std::stringstream out(res.out);
        double x;
        if (out >> x && std::isfinite(x)) v = x;
      }
    }
    if (components) components->push_back(v);
    total += t.weight * v;
  }
  return total;
}

}  // namespace distill
