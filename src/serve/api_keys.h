// API keys and quotas. The keys file (JSON) stores only SHA-256 hashes of keys:
//
//   {"keys": [{"name": "alice", "sha256": "<64 hex>", "requests_per_minute": 60,
//              "tokens_per_day": 200000, "models": ["student"], "watermark": true, "admin": false}],
//    "guard": {...}}   (thresholds of the extraction guard, serve/guard.h)
//
// (0 or absent limits = unlimited; absent "models" = every model). A presented key is hashed and
// compared with every stored hash in constant time (no early exit, no lookup keyed by the
// secret). Requests per minute: a sliding 60 s window; tokens per day: prompt + completion tokens
// counted per UTC day.
#pragma once

#include "core/digest.h"  // sha256_hex

#include <chrono>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

namespace distill {

// A new random key ("sk-distill-" + 32 bytes of OS randomness, hex).
std::string generate_api_key();

struct ApiKey {
  std::string name;
  std::string sha256;            // 64 lower-case hex digits
  int64_t requests_per_minute = 0;
  int64_t tokens_per_day = 0;
  std::vector<std::string> models;  // empty: all
  bool watermark = false;        // answers carry the server's watermark (with --watermark-key)
  bool admin = false;            // may read and change the guard (GET/POST /v1/guard)
};

// Why a request may not proceed; retry_after_s for 429.
struct QuotaDecision {
  bool allowed = true;
  std::string reason;
  double retry_after_s = 0;
};

class KeyStore {
public:
  // Throws distill::Error naming the file and entry for anything malformed.
  static KeyStore load(const std::string& path);
  static std::vector<ApiKey> parse(const std::string& json_text, const std::string& where);
  explicit KeyStore(std::vector<ApiKey> keys);
  KeyStore(KeyStore&& o) noexcept : keys_(std::move(o.keys_)), usage_(std::move(o.usage_)) {}

  // The index of the key, or nullopt. Constant time in the key's content.
  std::optional<size_t> find(const std::string& presented) const;
  const ApiKey& key(size_t i) const { return keys_[i]; }
  bool allows_model(size_t i, const std::string& model) const;

  // Counts one request now if within requests_per_minute and the day's tokens are not spent.
  QuotaDecision admit(size_t i, std::chrono::system_clock::time_point now = std::chrono::system_clock::now());
  // Adds a finished request's tokens to the day's total.
  void add_tokens(size_t i, int64_t tokens, std::chrono::system_clock::time_point now = std::chrono::system_clock::now());
  // The day's token use of a key (day = days since the epoch, UTC), to carry over a restart.
  std::pair<int64_t, int64_t> tokens_used(size_t i) const;
  void restore_tokens_used(size_t i, int64_t day, int64_t tokens);
  size_t size() const { return keys_.size(); }

private:
  struct Usage {
    std::deque<std::chrono::system_clock::time_point> recent;  // request times in the last minute
    int64_t day = -1;                                          // days since the epoch (UTC)
    int64_t tokens = 0;                                        // tokens used that day
  };
  std::vector<ApiKey> keys_;
  std::vector<Usage> usage_;
  mutable std::mutex mu_;
};

}  // namespace distill
