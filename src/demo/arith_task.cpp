#include "demo/arith_task.h"

#include "core/error.h"
#include "core/rng.h"

#include <fmt/format.h>

namespace distill {

namespace {

struct Person {
  const char* name;
  const char* pronoun;
};
constexpr Person kPeople[] = {{"Mia", "She"}, {"Tom", "He"}, {"Ava", "She"}, {"Leo", "He"}, {"Zoe", "She"},
                              {"Sam", "He"}, {"Ivy", "She"}, {"Max", "He"}};
constexpr const char* kItems[] = {"apples", "marbles", "stamps", "coins", "books", "cards", "shells", "pens"};

int64_t pick(Rng& rng, int64_t lo, int64_t hi) { return lo + int64_t(rng.next_u64() % uint64_t(hi - lo + 1)); }

}  // namespace

ArithLevel parse_arith_level(const std::string& name) {
  if (name == "standard") return ArithLevel::Standard;
  if (name == "hard") return ArithLevel::Hard;
  fail("--task '{}': expected standard or hard", name);
}

const char* arith_level_name(ArithLevel level) { return level == ArithLevel::Hard ? "hard" : "standard"; }

std::vector<ArithProblem> make_arith_problems(int64_t n, uint64_t seed, ArithLevel level) {
  const bool hard = level == ArithLevel::Hard;
  Rng rng(seed);
  std::vector<ArithProblem> out;
  for (int64_t i = 0; i < n; ++i) {
    const Person& p = kPeople[rng.next_u64() % 8];
    const char* item = kItems[rng.next_u64() % 8];
    int64_t x = hard ? pick(rng, 10, 99) : pick(rng, 10, 60);
    std::string q = fmt::format("{} has {} {}.", p.name, x, item);
    std::string a;
    const int steps = hard ? int(pick(rng, 3, 4)) : int(pick(rng, 2, 3));
    for (int s = 0; s < steps; ++s) {
      const int64_t op = pick(rng, 0, 9);
      const char* then = s == 0 ? "" : "Then ";
      const std::string who = s == 0 ? p.pronoun : std::string(1, char(std::tolower(p.pronoun[0]))) + (p.pronoun + 1);
      if (hard && op >= 7 && x <= 150) {  // double or triple
        const int64_t c = op == 9 ? 3 : 2;
        q += fmt::format(" {}the number of {} {}.", s == 0 ? "Then " : then, item, c == 2 ? "doubles" : "triples");
        a += fmt::format(" {} * {} = {}.", x, c, x * c);
        x *= c;
      } else if ((op < 5 || x < 2) && x <= 300) {  // add
        const int64_t b = hard ? pick(rng, 10, 99) : pick(rng, 5, 49);
        q += fmt::format(" {}{} {} {} more.", then, who, rng.next_u64() % 2 ? "finds" : "buys", b);
        a += fmt::format(" {} + {} = {}.", x, b, x + b);
        x += b;
      } else if (op < 9 || x > 150) {  // take away (also keeps the numbers small)
        const int64_t b = pick(rng, 1, x - 1);
        q += fmt::format(" {}{} gives away {}.", then, who, b);
        a += fmt::format(" {} - {} = {}.", x, b, x - b);
        x -= b;
      } else {  // multiply
        const int64_t c = 2;
        q += fmt::format(" {}the number of {} {}.", s == 0 ? "Then " : then, item, c == 2 ? "doubles" : "triples");
        a += fmt::format(" {} * {} = {}.", x, c, x * c);
        x *= c;
      }
    }
    q += fmt::format(" How many {} does {} have now?", item, p.name);
    out.push_back({"Q: " + q + "\nA:", a + fmt::format(" #### {}", x), x});
  }
  return out;
}

}  // namespace distill
