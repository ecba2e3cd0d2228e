#include "serve/api_keys.h"

#include "core/digest.h"
#include "core/error.h"

#include <nlohmann/json.hpp>
#include <openssl/rand.h>

#include <fstream>
#include <sstream>

namespace distill {

using json = nlohmann::json;

std::string generate_api_key() {
  unsigned char b[32];
  if (RAND_bytes(b, sizeof b) != 1) fail("could not draw random bytes for a key");
  static const char* hex = "0123456789abcdef";
  std::string key = "sk-distill-";
  for (unsigned char c : b) key += hex[c >> 4], key += hex[c & 15];
  return key;
}

std::vector<ApiKey> KeyStore::parse(const std::string& text, const std::string& where) {
  json j;
  try {
    j = json::parse(text);
  } catch (const json::exception& e) {
    fail("{}: not valid JSON: {}", where, e.what());
  }
  if (!j.is_object() || !j.contains("keys") || !j["keys"].is_array()) fail("{}: expected {{\"keys\": [...]}}", where);
  std::vector<ApiKey> keys;
  for (size_t i = 0; i < j["keys"].size(); ++i) {
    const json& e = j["keys"][i];
    const std::string at = fmt::format("{}: keys[{}]", where, i);
    if (!e.is_object()) fail("{} must be an object", at);
    ApiKey k;
    if (!e.contains("name") || !e["name"].is_string() || e["name"].get<std::string>().empty()) fail("{}: 'name' must be a non-empty string", at);
    k.name = e["name"];
    if (!e.contains("sha256") || !e["sha256"].is_string()) fail("{} ({}): 'sha256' (the key's SHA-256, hex) is required", at, k.name);
    k.sha256 = e["sha256"];
    if (k.sha256.size() != 64 || k.sha256.find_first_not_of("0123456789abcdef") != std::string::npos)
      fail("{} ({}): 'sha256' must be 64 lower-case hex digits", at, k.name);
    for (const char* f : {"requests_per_minute", "tokens_per_day"})
      if (e.contains(f) && !e[f].is_null() && (!e[f].is_number_integer() || e[f].get<int64_t>() < 0))
        fail("{} ({}): '{}' must be a non-negative integer", at, k.name, f);
    k.requests_per_minute = e.value("requests_per_minute", int64_t(0));
    k.tokens_per_day = e.value("tokens_per_day", int64_t(0));
    if (e.contains("models")) {
      if (!e["models"].is_array()) fail("{} ({}): 'models' must be an array of model names", at, k.name);
      for (const json& m : e["models"]) {
        if (!m.is_string()) fail("{} ({}): 'models' must be an array of model names", at, k.name);
        k.models.push_back(m);
      }
    }
    for (const char* f : {"watermark", "admin"})
      if (e.contains(f) && !e[f].is_boolean()) fail("{} ({}): '{}' must be true or false", at, k.name, f);
    k.watermark = e.value("watermark", false);
    k.admin = e.value("admin", false);
    for (const ApiKey& other : keys)
      if (other.name == k.name) fail("{}: the name '{}' is used twice", at, k.name);
    keys.push_back(std::move(k));
  }
  return keys;
}

KeyStore KeyStore::load(const std::string& path) {
  std::ifstream in(path);
  if (!in) fail("{}: cannot open the keys file", path);
  std::stringstream ss;
  ss << in.rdbuf();
  return KeyStore(parse(ss.str(), path));
}

KeyStore::KeyStore(std::vector<ApiKey> keys) : keys_(std::move(keys)), usage_(keys_.size()) {}

std::optional<size_t> KeyStore::find(const std::string& presented) const {
  const std::string h = sha256_hex(presented);
  std::optional<size_t> found;
  for (size_t i = 0; i < keys_.size(); ++i) {
    // Constant time: every byte of every stored hash is compared, whatever matches.
    unsigned diff = 0;
    for (size_t b = 0; b < 64; ++b) diff |= unsigned(uint8_t(h[b]) ^ uint8_t(keys_[i].sha256[b]));
    const bool match = diff == 0;
    if (match && !found) found = i;
  }
  return found;
}

bool KeyStore::allows_model(size_t i, const std::string& model) const {
  const auto& m = keys_[i].models;
  return m.empty() || std::find(m.begin(), m.end(), model) != m.end() || std::find(m.begin(), m.end(), "*") != m.end();
}

namespace {
int64_t utc_day(std::chrono::system_clock::time_point t) {
  return std::chrono::duration_cast<std::chrono::seconds>(t.time_since_epoch()).count() / 86400;
}
}  // namespace

QuotaDecision KeyStore::admit(size_t i, std::chrono::system_clock::time_point now) {
  std::lock_guard<std::mutex> lock(mu_);
  const ApiKey& k = keys_[i];
  Usage& u = usage_[i];
  if (u.day != utc_day(now)) u.day = utc_day(now), u.tokens = 0;
  if (k.tokens_per_day > 0 && u.tokens >= k.tokens_per_day) {
    const double to_midnight = double((u.day + 1) * 86400) -
                               std::chrono::duration<double>(now.time_since_epoch()).count();
    return {false, fmt::format("the key '{}' has used its {} tokens for today (UTC)", k.name, k.tokens_per_day), to_midnight};
  }
  const auto minute = std::chrono::seconds(60);
  while (!u.recent.empty() && now - u.recent.front() >= minute) u.recent.pop_front();
  if (k.requests_per_minute > 0 && int64_t(u.recent.size()) >= k.requests_per_minute) {
    const double wait = std::chrono::duration<double>(u.recent.front() + minute - now).count();
    return {false, fmt::format("the key '{}' is limited to {} requests per minute", k.name, k.requests_per_minute),
            std::max(wait, 0.001)};
  }
  u.recent.push_back(now);
  return {};
}

void KeyStore::add_tokens(size_t i, int64_t tokens, std::chrono::system_clock::time_point now) {
  std::lock_guard<std::mutex> lock(mu_);
  Usage& u = usage_[i];
  if (u.day != utc_day(now)) u.day = utc_day(now), u.tokens = 0;
  u.tokens += tokens;
}

std::pair<int64_t, int64_t> KeyStore::tokens_used(size_t i) const {
  std::lock_guard<std::mutex> lock(mu_);
  return {usage_[i].day, usage_[i].tokens};
}

void KeyStore::restore_tokens_used(size_t i, int64_t day, int64_t tokens) {
  std::lock_guard<std::mutex> lock(mu_);
  usage_[i].day = day, usage_[i].tokens = tokens;
}

}  // namespace distill
