// Checked access to fields of JSON written by strangers (tokenizer.json, config.json, dataset
// manifests, request bodies). nlohmann's at()/get<T>() throw their own exceptions on a wrong
// type and narrow numbers silently (2^32 -> 0, 33.5 -> 33); these helpers check the type and
// the range first and throw distill::Error naming the field's path and the value found.
#pragma once

#include "core/error.h"

#include <nlohmann/json.hpp>

#include <cstdint>
#include <string>
#include <string_view>

namespace distill::jsonf {

using nlohmann::json;

// "path.key" for messages.
inline std::string sub(std::string_view path, std::string_view key) {
  return path.empty() ? std::string(key) : std::string(path) + "." + std::string(key);
}

// A short rendering of a value for messages (long arrays/objects cut).
std::string show(const json& v);

// True if j is an object holding `key` with a non-null value.
inline bool has(const json& j, std::string_view key) {
  if (!j.is_object()) return false;
  auto it = j.find(key);
  return it != j.end() && !it->is_null();
}

// The value at key (required; fails when missing or null).
const json& field(const json& j, std::string_view key, std::string_view path);

// An integer in [lo, hi]; 33.5, "33", true and out-of-range values are refused.
int64_t as_int(const json& v, std::string_view path, int64_t lo, int64_t hi);
int64_t get_int(const json& j, std::string_view key, std::string_view path, int64_t lo, int64_t hi);
int64_t get_int(const json& j, std::string_view key, std::string_view path, int64_t lo, int64_t hi, int64_t fallback);

// A finite number.
double as_number(const json& v, std::string_view path);
double get_number(const json& j, std::string_view key, std::string_view path, double fallback);

std::string as_string(const json& v, std::string_view path);
std::string get_string(const json& j, std::string_view key, std::string_view path);
std::string get_string(const json& j, std::string_view key, std::string_view path, const std::string& fallback);

bool get_bool(const json& j, std::string_view key, std::string_view path, bool fallback);

// The array / object at key (required).
const json& get_array(const json& j, std::string_view key, std::string_view path);
const json& get_object(const json& j, std::string_view key, std::string_view path);

// Parses text as JSON; a syntax error becomes distill::Error naming `where`.
json parse(std::string_view text, std::string_view where);

}  // namespace distill::jsonf
