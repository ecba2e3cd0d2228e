// The official OpenAI SDK (npm package `openai`, run by node) as the client of distill serve:
// chat and completions, streamed and not, logprobs/top_logprobs, n > 1, stop strings, echo
// scoring, and errors as the SDK's typed errors (tests/serve/openai_sdk_client.mjs). Skipped with a
// visible message when node or the npm registry is unavailable.
#include "npm_cache.h"
#include "serve_fixture.h"

#include <nlohmann/json.hpp>

namespace distill {

using namespace distill::test;

TEST(OpenAISdk, ChatCompletionsStreamingLogprobsErrors) {
  std::string reason;
  const std::string cache = fetch_npm_packages({{"openai@5.23.2", "openai"}}, &reason);
  if (cache.empty()) GTEST_SKIP() << "SKIPPED (no OpenAI SDK): " << reason;
  TinyModel m;
  TempDir dir;
  const std::string key = "sk-test-key";
  write_bytes(dir / "keys.json", nlohmann::json{{"keys", {{{"name", "sdk"}, {"sha256", sha256_hex(key)}}}}}.dump());
  ServeOptions o;
  o.keys_file = dir / "keys.json";
  RunningServer s(m, o);
  int status = 0;
  const std::string out = run_capture("node '" + std::string(DISTILL_SOURCE_DIR) + "/tests/serve/openai_sdk_client.mjs' '" +
                                          cache + "/openai/package/index.mjs' 'http://127.0.0.1:" + std::to_string(s.port()) +
                                          "/v1' '" + key + "' tiny 2>&1",
                                      &status);
  EXPECT_EQ(status, 0) << out;
  EXPECT_NE(out.find("all checks passed"), std::string::npos) << out;
}

// The same checks over HTTPS: serve --tls-cert/--tls-key with a self-signed certificate that
// node is told to trust (NODE_EXTRA_CA_CERTS), as a user would set up a private server.
TEST(OpenAISdk, OverHttpsWithASelfSignedCertificate) {
  std::string reason;
  const std::string cache = fetch_npm_packages({{"openai@5.23.2", "openai"}}, &reason);
  if (cache.empty()) GTEST_SKIP() << "SKIPPED (no OpenAI SDK): " << reason;
  TempDir dir;
  const std::string gen = "openssl req -x509 -newkey rsa:2048 -nodes -keyout " + (dir / "key.pem") + " -out " +
                          (dir / "cert.pem") + " -days 1 -subj /CN=localhost -addext subjectAltName=IP:127.0.0.1 2>/dev/null";
  if (std::system(gen.c_str()) != 0) GTEST_SKIP() << "SKIPPED: the openssl command is not available to make a certificate";
  TinyModel m;
  const std::string key = "sk-test-key";
  write_bytes(dir / "keys.json", nlohmann::json{{"keys", {{{"name", "sdk"}, {"sha256", sha256_hex(key)}}}}}.dump());
  ServeOptions o;
  o.keys_file = dir / "keys.json";
  o.tls_cert = dir / "cert.pem", o.tls_key = dir / "key.pem";
  RunningServer s(m, o);
  int status = 0;
  const std::string out = run_capture("NODE_EXTRA_CA_CERTS='" + (dir / "cert.pem") + "' node '" + std::string(DISTILL_SOURCE_DIR) +
                                          "/tests/serve/openai_sdk_client.mjs' '" + cache +
                                          "/openai/package/index.mjs' 'https://127.0.0.1:" + std::to_string(s.port()) +
                                          "/v1' '" + key + "' tiny 2>&1",
                                      &status);
  EXPECT_EQ(status, 0) << out;
  EXPECT_NE(out.find("all checks passed"), std::string::npos) << out;
}

}  // namespace distill
