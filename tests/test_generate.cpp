// Generator: stop strings (never shown, even when split across tokens), end-of-turn ids,
// max_new_tokens, cached-prefix reuse across turns giving the same tokens as a fresh start.
#include "generate/generator.h"
#include "tokenizer/byte_vocab.h"
#include "tiny_model.h"

namespace distill {

namespace {


SamplerSettings greedy() {
  SamplerSettings s;
  s.temperature = 0;
  return s;
}

}  // namespace

TEST(Generator, MaxTokensAndDeterminism) {
  test::TinyModel x(32, 2, 1, 256);
  Generator g(x.model, *x.tok, 128);
  SamplerSettings s = greedy();
  GenerateOptions opt;
  opt.max_new_tokens = 12;
  opt.stop_at_eos = false;
  std::string streamed;
  const auto prompt = x.tok->encode("abc", false);
  GenerateResult r = g.generate(prompt, s, opt, [&](const std::string& p) { streamed += p; return true; });
  EXPECT_EQ(r.tokens.size(), 12u);
  EXPECT_EQ(r.finish_reason, "length");
  EXPECT_EQ(streamed, r.text);
  // the same prompt again reuses the cache (only the last token is re-run) and gives the same reply
  SamplerSettings s2 = greedy();
  GenerateResult r2 = g.generate(prompt, s2, opt, [](const std::string&) { return true; });
  EXPECT_EQ(r2.n_prefilled, 1);
  EXPECT_EQ(r2.tokens, r.tokens);
  // a fresh generator agrees with the cached one
  Generator fresh(x.model, *x.tok, 128);
  SamplerSettings s3 = greedy();
  EXPECT_EQ(fresh.generate(prompt, s3, opt, [](const std::string&) { return true; }).tokens, r.tokens);
}

TEST(Generator, StopStringsAreNeverShown) {
  test::TinyModel x(32, 2, 1, 256);
  Generator g(x.model, *x.tok, 128);
  GenerateOptions opt;
  opt.max_new_tokens = 40;
  opt.stop_at_eos = false;
  SamplerSettings s = greedy();
  const auto prompt = x.tok->encode("hello", false);
  const GenerateResult full = g.generate(prompt, s, opt, [](const std::string&) { return true; });
  ASSERT_GE(full.text.size(), 6u);
  // stop at a string that the greedy reply contains, spanning several tokens
  opt.stop = {full.text.substr(3, 3)};
  g.reset();
  SamplerSettings s2 = greedy();
  std::string streamed;
  const GenerateResult r = g.generate(prompt, s2, opt, [&](const std::string& p) { streamed += p; return true; });
  EXPECT_EQ(r.finish_reason, "stop");
  EXPECT_EQ(r.text, full.text.substr(0, full.text.find(opt.stop[0])));
  EXPECT_EQ(streamed, r.text) << "nothing of the stop string reached the stream";
}

TEST(Generator, CancelAndContextErrors) {
  test::TinyModel x(32, 2, 1, 256);
  Generator g(x.model, *x.tok, 16);
  GenerateOptions opt;
  opt.max_new_tokens = 100;
  opt.stop_at_eos = false;
  SamplerSettings s = greedy();
  int pieces = 0;
  const GenerateResult r = g.generate(x.tok->encode("ab", false), s, opt, [&](const std::string&) { return ++pieces < 3; });
  EXPECT_EQ(r.finish_reason, "cancelled");
  // the context bounds the reply
  SamplerSettings s2 = greedy();
  g.reset();
  const GenerateResult full = g.generate(x.tok->encode("ab", false), s2, opt, [](const std::string&) { return true; });
  EXPECT_EQ(full.finish_reason, "length");
  EXPECT_LE(full.n_prompt + int64_t(full.tokens.size()), 16);
  EXPECT_THROW(g.generate(std::vector<int32_t>(20, 'a'), s2, opt, [](const std::string&) { return true; }), Error);
}

}  // namespace distill
