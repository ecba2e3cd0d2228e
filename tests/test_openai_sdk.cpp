// The official OpenAI SDK (npm package `openai`, run by node) as the client of distill serve:
// chat and completions, streamed and not, logprobs/top_logprobs, n > 1, stop strings, echo
// scoring, and errors as the SDK's typed errors (tests/serve/openai_sdk_client.mjs). Skipped with a
// visible message when node or the npm registry is unavailable.
#include "npm_cache.h"
#include "serve_fixture.h"

#include <nlohmann/json.hpp>

namespace distill {

using namespace distill::test;

namespace {

// The SDK client's checks (tests/serve/openai_sdk_client.mjs) against a server of `m`.
void expect_sdk_checks_pass(const TinyModel& m, const std::string& cache) {
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

}  // namespace

TEST(OpenAISdk, ChatCompletionsStreamingLogprobsErrors) {
  std::string reason;
  const std::string cache = fetch_npm_packages({{"openai@5.23.2", "openai"}}, &reason);
  if (cache.empty()) GTEST_SKIP() << "SKIPPED (no OpenAI SDK): " << reason;
  expect_sdk_checks_pass(TinyModel(), cache);
}

// The same checks served by mixtures of experts: a Qwen3-MoE and a GPT-OSS shape (sinks, biases,
// a sliding window shorter than the requests, MXFP4 experts as a GGUF holds them).
TEST(OpenAISdk, MixturesOfExpertsServeTheSameApi) {
  std::string reason;
  const std::string cache = fetch_npm_packages({{"openai@5.23.2", "openai"}}, &reason);
  if (cache.empty()) GTEST_SKIP() << "SKIPPED (no OpenAI SDK): " << reason;
  for (const char* arch : {"qwen3_moe", "gpt_oss"}) {
    SCOPED_TRACE(arch);
    TinyModel m;
    nlohmann::json j = {{"model_type", arch}, {"vocab_size", m.tok->vocab_size()}, {"hidden_size", 64}, {"intermediate_size", 64},
                        {"num_hidden_layers", 2}, {"num_attention_heads", 4}, {"num_key_value_heads", 2}, {"head_dim", 16},
                        {"num_experts", 8}, {"num_local_experts", 8}, {"num_experts_per_tok", 2}, {"moe_intermediate_size", 32},
                        {"tie_word_embeddings", false}, {"max_position_embeddings", 1024}};
    if (std::string(arch) == "gpt_oss") j["sliding_window"] = 8;
    m.model = Model::random(ModelConfig::from_json(j, arch), DType::F32, 9, 0.5f, std::string(arch) == "gpt_oss" ? DType::MXFP4 : DType::F32);
    randomize_biases(m.model, 40);
    expect_sdk_checks_pass(m, cache);
  }
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
