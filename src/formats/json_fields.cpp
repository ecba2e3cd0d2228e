#include "formats/json_fields.h"

#include <cmath>

namespace distill::jsonf {

std::string show(const json& v) {
  std::string s = v.dump(-1, ' ', false, json::error_handler_t::replace);
  if (s.size() > 80) s = s.substr(0, 77) + "...";
  return s;
}

const json& field(const json& j, std::string_view key, std::string_view path) {
  if (!j.is_object()) fail("{}: expected an object, got {}", path.empty() ? "(top level)" : std::string(path), show(j));
  auto it = j.find(key);
  if (it == j.end() || it->is_null()) fail("{}: missing", sub(path, key));
  return *it;
}

int64_t as_int(const json& v, std::string_view path, int64_t lo, int64_t hi) {
  // Unsigned values above INT64_MAX and every float (even 33.0 written as 33.5) are refused
  // rather than narrowed.
  if (v.is_number_unsigned()) {
    const uint64_t u = v.get<uint64_t>();
    if (u > uint64_t(INT64_MAX) || int64_t(u) > hi || int64_t(u) < lo)
      fail("{}: {} is outside [{}, {}]", path, show(v), lo, hi);
    return int64_t(u);
  }
  if (!v.is_number_integer()) fail("{}: expected an integer, got {}", path, show(v));
  const int64_t i = v.get<int64_t>();
  if (i < lo || i > hi) fail("{}: {} is outside [{}, {}]", path, i, lo, hi);
  return i;
}

int64_t get_int(const json& j, std::string_view key, std::string_view path, int64_t lo, int64_t hi) {
  return as_int(field(j, key, path), sub(path, key), lo, hi);
}

int64_t get_int(const json& j, std::string_view key, std::string_view path, int64_t lo, int64_t hi, int64_t fallback) {
  return has(j, key) ? as_int(j[std::string(key)], sub(path, key), lo, hi) : fallback;
}

double as_number(const json& v, std::string_view path) {
  if (!v.is_number()) fail("{}: expected a number, got {}", path, show(v));
  const double d = v.get<double>();
  if (!std::isfinite(d)) fail("{}: {} is not a finite number", path, d);
  return d;
}

double get_number(const json& j, std::string_view key, std::string_view path, double fallback) {
  return has(j, key) ? as_number(j[std::string(key)], sub(path, key)) : fallback;
}

std::string as_string(const json& v, std::string_view path) {
  if (!v.is_string()) fail("{}: expected a string, got {}", path, show(v));
  return v.get<std::string>();
}

std::string get_string(const json& j, std::string_view key, std::string_view path) {
  return as_string(field(j, key, path), sub(path, key));
}

std::string get_string(const json& j, std::string_view key, std::string_view path, const std::string& fallback) {
  return has(j, key) ? as_string(j[std::string(key)], sub(path, key)) : fallback;
}

bool get_bool(const json& j, std::string_view key, std::string_view path, bool fallback) {
  if (!has(j, key)) return fallback;
  const json& v = j[std::string(key)];
  if (!v.is_boolean()) fail("{}: expected true or false, got {}", sub(path, key), show(v));
  return v.get<bool>();
}

const json& get_array(const json& j, std::string_view key, std::string_view path) {
  const json& v = field(j, key, path);
  if (!v.is_array()) fail("{}: expected an array, got {}", sub(path, key), show(v));
  return v;
}

const json& get_object(const json& j, std::string_view key, std::string_view path) {
  const json& v = field(j, key, path);
  if (!v.is_object()) fail("{}: expected an object, got {}", sub(path, key), show(v));
  return v;
}

json parse(std::string_view text, std::string_view where) {
  try {
    return json::parse(text);
  } catch (const json::exception& e) {
    fail("{}: malformed JSON: {}", where, e.what());
  }
}

}  // namespace distill::jsonf
