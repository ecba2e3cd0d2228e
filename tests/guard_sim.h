// A population for the extraction guard's simulation harness: people using an API the way people
// do, and scrapers of several kinds, as a time-ordered list of requests on a simulated clock.
//
//   casual     chat: a few sessions a day in waking hours, bursts of 1–8 turns, varied topics,
//              some follow-ups, an occasional retry of the same prompt
//   heavy      the same, 3–4× as many sessions
//   developer  an app of someone's: every request asks log-probabilities, half at temperature 0,
//              varied prompts, daytime only
// Scrapers (each a kind the guard must flag):
//   bulk       labelling with top_logprobs at temperature 0, a fixed max_tokens, high volume,
//              Poisson timing (no regular clock to give it away)
//   template   one instruction, a slot filled from a list, regular timing
//   paraphrase one question reworded many ways per topic, sweeping topics, regular timing
//   slow       slow-and-low: one request every ~6 minutes around the clock for days, logprobs
//   split      one template job split over 4 keys from one address, each at a modest rate
#pragma once

#include "core/rng.h"

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

namespace distill::test {

struct SimRequest {
  double t = 0;               // seconds since the simulation began
  std::string actor, kind;    // actor: the key's name; kind: casual | heavy | developer | bulk | ...
  std::string origin;
  std::string prompt;
  bool logprobs = false;
  int top_logprobs = 0;
  float temperature = 1.0f;
  int n = 1;
  int64_t max_tokens = 256;
};

class SimPopulation {
public:
  explicit SimPopulation(uint64_t seed) : rng_(seed) {
    // A vocabulary of pseudo-words (syllable strings) and topics over it.
    const char* syl[] = {"ka", "lo", "mi", "ten", "ra", "su", "vor", "el", "pa", "dri", "mon", "qui", "ze", "tha", "ul", "bes"};
    for (int i = 0; i < 3000; ++i) {
      std::string w;
      const int n = 2 + int(rng_.next_u64() % 3);
      for (int s = 0; s < n; ++s) w += syl[rng_.next_u64() % 16];
      words_.push_back(w);
    }
  }

  std::vector<SimRequest> people(const std::string& kind, int count, double days) {
    std::vector<SimRequest> out;
    for (int u = 0; u < count; ++u) {
      const std::string name = kind + "-" + std::to_string(u);
      const std::string origin = "10.1." + std::to_string(u / 200) + "." + std::to_string(u % 200);
      const double wake = uniform(6, 10) * 3600;  // waking window of 14-16 hours
      const double awake = uniform(14, 16) * 3600;
      const double sessions_per_day = kind == "heavy" ? uniform(8, 14) : kind == "developer" ? uniform(4, 8) : uniform(1, 4);
      for (int d = 0; d < int(days); ++d) {
        const int sessions = poisson(sessions_per_day);
        for (int s = 0; s < sessions; ++s) {
          double t = d * 86400.0 + wake + uniform(0, awake);
          const int turns = 1 + int(rng_.next_u64() % (kind == "developer" ? 12 : 8));
          std::string topic = sentence(3);
          std::string last;
          for (int k = 0; k < turns; ++k) {
            SimRequest r{t, name, kind, origin};
            const double roll = rng_.uniform();
            r.prompt = !last.empty() && roll < 0.05 ? last  // a retry
                       : roll < 0.35 ? "about " + topic + ": " + sentence(4 + int(rng_.next_u64() % 10))  // a follow-up
                                     : sentence(5 + int(rng_.next_u64() % 25));
            last = r.prompt;
            r.temperature = rng_.uniform() < 0.1 ? 0.0f : 0.8f;
            r.max_tokens = rng_.uniform() < 0.5 ? 512 : 256 + int64_t(rng_.next_u64() % 512);
            if (kind == "developer") {
              r.logprobs = true, r.top_logprobs = rng_.uniform() < 0.5 ? 5 : 0;
              r.temperature = rng_.uniform() < 0.5 ? 0.0f : 0.7f;
              r.max_tokens = 200;
            } else if (rng_.uniform() < 0.05) {
              r.logprobs = true;  // a curious person tries the option
            }
            out.push_back(r);
            t += exponential(kind == "developer" ? 8.0 : 45.0);
          }
        }
      }
    }
    return out;
  }

  // `count` scrapers of one kind (split: `count` groups of 4 keys).
  std::vector<SimRequest> scrapers(const std::string& kind, int count, double days) {
    std::vector<SimRequest> out;
    for (int u = 0; u < count; ++u) {
      const std::string name = kind + "-" + std::to_string(u);
      const std::string origin = "203.0." + std::to_string(kind.size()) + "." + std::to_string(u);
      const std::string instruction = "Answer the question below in one sentence, then give the answer alone. Question: what is";
      double t = uniform(0, 86400);
      auto push = [&](SimRequest r) {
        r.origin = r.origin.empty() ? origin : r.origin;
        out.push_back(r);
      };
      if (kind == "bulk") {
        while (t < days * 86400 && out.size() < size_t(u + 1) * 3000) {
          SimRequest r{t, name, kind};
          r.prompt = sentence(6 + int(rng_.next_u64() % 30));
          r.logprobs = true, r.top_logprobs = 20, r.temperature = 0, r.max_tokens = 128;
          push(r);
          t += exponential(20.0);
        }
      } else if (kind == "template" || kind == "split") {
        const int keys = kind == "split" ? 4 : 1;
        const double gap = kind == "split" ? 240.0 : 30.0;
        for (int i = 0; t < days * 86400 && i < 4000; ++i) {
          SimRequest r{t, keys > 1 ? name + "-k" + std::to_string(i % keys) : name, kind};
          r.prompt = instruction + " " + words_[rng_.next_u64() % words_.size()] + "?";
          r.logprobs = kind == "split", r.top_logprobs = kind == "split" ? 5 : 0;
          r.temperature = 0.7f, r.max_tokens = 64;
          push(r);
          t += gap / keys * uniform(0.7, 1.3);
        }
      } else if (kind == "paraphrase") {
        const char* openers[] = {"Could you tell me", "Explain", "I want to know", "Please describe", "What do you know about",
                                 "Give me a short answer:", "Quick question:", "Tell me"};
        for (int topic = 0; t < days * 86400 && topic < 200; ++topic) {
          std::vector<std::string> core = {words_[rng_.next_u64() % words_.size()], words_[rng_.next_u64() % words_.size()],
                                           words_[rng_.next_u64() % words_.size()], words_[rng_.next_u64() % words_.size()]};
          for (int v = 0; v < 10; ++v) {
            std::vector<std::string> c = core;
            for (size_t i = 0; i + 1 < c.size(); ++i)
              if (rng_.uniform() < 0.4) std::swap(c[i], c[i + 1]);
            SimRequest r{t, name, kind};
            r.prompt = std::string(openers[rng_.next_u64() % 8]) + " how " + c[0] + " " + c[1] + " relates to " + c[2] + " " + c[3];
            r.temperature = 0.7f, r.max_tokens = 256;
            push(r);
            t += 40 * uniform(0.6, 1.4);
          }
        }
      } else if (kind == "slow") {
        while (t < days * 86400) {
          SimRequest r{t, name, kind};
          r.prompt = sentence(8 + int(rng_.next_u64() % 20));
          r.logprobs = true, r.top_logprobs = 5, r.temperature = 0.7f, r.max_tokens = 256;
          push(r);
          t += 360 * uniform(0.5, 1.5);
        }
      }
    }
    return out;
  }

  std::string sentence(int n) {
    std::string s;
    for (int i = 0; i < n; ++i) s += (i ? " " : "") + words_[rng_.next_u64() % words_.size()];
    return s;
  }

private:
  double uniform(double a, double b) { return a + (b - a) * double(rng_.uniform()); }
  double exponential(double mean) { return -mean * std::log(1.0 - double(rng_.uniform()) * 0.999999); }
  int poisson(double mean) {
    int k = 0;
    double p = std::exp(-mean), s = p;
    const double u = rng_.uniform();
    while (u > s && k < 1000) p *= mean / ++k, s += p;
    return k;
  }
  Rng rng_;
  std::vector<std::string> words_;
};

inline void sort_by_time(std::vector<SimRequest>& v) {
  std::stable_sort(v.begin(), v.end(), [](const SimRequest& a, const SimRequest& b) { return a.t < b.t; });
}

}  // namespace distill::test
