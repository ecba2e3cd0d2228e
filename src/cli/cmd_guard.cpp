// The owner's side of the extraction guard: `distill usage --guard SOURCE` (a report from a
// running server's /v1/guard or from a --guard-state file) and `distill keys guard NAME ACTION`
// (reset, allow or auto, sent to a running server).
#include "cli/commands.h"
#include "core/atomic_file.h"
#include "core/error.h"
#include "net/http_client.h"
#include "serve/guard.h"

#include <CLI/CLI.hpp>

#include <cctype>
#include <cstdio>
#include <cstdlib>
#include <filesystem>

namespace distill {

using json = nlohmann::json;

namespace {

std::string admin_key(const std::string& file) {
  std::string k = file.empty() ? "" : read_text_file(file, "admin key file");
  while (!k.empty() && std::isspace(uint8_t(k.back()))) k.pop_back();
  if (k.empty())
    if (const char* env = std::getenv("DISTILL_ADMIN_KEY")) k = env;
  if (k.empty()) fail("the server's guard needs an admin key: --admin-key-file FILE or DISTILL_ADMIN_KEY");
  return k;
}

bool is_url(const std::string& s) { return s.rfind("http://", 0) == 0 || s.rfind("https://", 0) == 0; }

json call_server(const std::string& url, const std::string& path, const std::string* body, const std::string& key_file) {
  HttpClient client(url);
  const std::map<std::string, std::string> h = {{"Authorization", "Bearer " + admin_key(key_file)}};
  const HttpResult r = body ? client.post_json(path, *body, h, 30) : client.get(path, h, 30);
  if (r.kind == HttpResult::Kind::Ok) return json::parse(r.body);
  std::string why = r.error;
  try {
    why = json::parse(r.body).at("error").at("message");
  } catch (const std::exception&) {
  }
  fail("{}{}: {}{}", client.prefix(), path, r.status ? fmt::format("HTTP {}: ", r.status) : "", why);
}

void print_guard(const json& j) {
  std::printf("%-20s %-15s %6s %9s  %s\n", "key", "level", "score", "requests", "reasons");
  for (const json& k : j.at("keys")) {
    const auto& reasons = k.at("reasons");
    std::printf("%-20s %-15s %6.2f %9lld  %s\n", k.at("key").get<std::string>().c_str(), k.at("level").get<std::string>().c_str(),
                k.at("score").get<double>(), (long long)k.at("requests").get<int64_t>(),
                reasons.empty() ? "-" : reasons[0].get<std::string>().c_str());
    for (size_t i = 1; i < reasons.size(); ++i) std::printf("%55s%s\n", "", reasons[i].get<std::string>().c_str());
    if (k.at("owner") != "auto") std::printf("%55s(the owner set: %s)\n", "", k.at("owner").get<std::string>().c_str());
  }
}

}  // namespace

void guard_report(const std::string& source, const std::string& key_file) {
  if (is_url(source)) return print_guard(call_server(source, "/guard", nullptr, key_file));
  GuardOptions o;
  o.state_file = source;
  o.read_only = true;
  if (!std::filesystem::exists(source)) fail("{}: no guard state file here (serve --guard-state writes one)", source);
  Guard g(o);
  print_guard(g.report_json());
}

void guard_owner_action(const std::string& server, const std::string& name, const std::string& action, const std::string& key_file) {
  const std::string body = json{{"action", action}}.dump();
  call_server(server, "/guard/keys/" + name, &body, key_file);
  std::printf("%s: %s\n", name.c_str(), action.c_str());
}

}  // namespace distill
