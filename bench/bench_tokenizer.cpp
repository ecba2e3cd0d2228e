// Tokenizer benchmark: MB/s of encoding a large mixed text (prose, code, CJK, emoji) on one
// thread, for the tokenizer directories given (e.g. the npm-shipped Qwen3 / Llama 3 files that
// the conformance test unpacks into build/npm-cache), or a byte-level tokenizer made here.
//   bench_tokenizer [DIR...]
#include "tokenizer/byte_vocab.h"
#include "tokenizer/tokenizer.h"

#include <chrono>
#include <cstdio>
#include <string>

using namespace distill;

int main(int argc, char** argv) {
  const std::string unit =
      "The quick brown fox jumps over the lazy dog; it's 2024 and we've 3.14159 reasons. "
      "def f(x):\n    return [i * i for i in range(x)]  # squares\n"
      "東京は日本の首都です。北京是中国的首都。서울은 한국의 수도입니다. Привет, мир! 🎉👍🏽\n";
  std::string text;
  while (text.size() < (8u << 20)) text += unit + std::to_string(text.size()) + " ";
  std::printf("bench_tokenizer: %.1f MB of mixed text, one thread\n", double(text.size()) / 1e6);
  std::vector<std::pair<std::string, std::shared_ptr<const Tokenizer>>> toks;
  for (int i = 1; i < argc; ++i) toks.push_back({argv[i], Tokenizer::load(argv[i])});
  if (toks.empty()) {
    const TokenizerFiles f = make_byte_level_tokenizer(text.substr(0, 200000), 2000);
    toks.push_back({"byte-level, 2000 merges (made here)", Tokenizer::from_json(f.tokenizer_json, f.tokenizer_config_json, "bytes")});
  }
  for (auto& [name, tok] : toks) {
    tok->encode(text.substr(0, 100000));  // warm the word cache the way real text would
    const auto t0 = std::chrono::steady_clock::now();
    const std::vector<int32_t> ids = tok->encode(text, false, false);
    const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    std::printf("%-60s %8.2f MB/s  %6.2f M tokens/s  %.2f bytes/token\n", name.c_str(), double(text.size()) / 1e6 / s,
                double(ids.size()) / 1e6 / s, double(text.size()) / double(ids.size()));
  }
  return 0;
}
