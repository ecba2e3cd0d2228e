// distill tokenize DIR TEXT: ids and pieces of a text (a debugging aid); with --json and TEXT "-",
// the text is read from stdin and one JSON array of ids is printed, for outside conformance checks.
#include "cli/commands.h"
#include "core/error.h"
#include "tokenizer/tokenizer.h"

#include <CLI/CLI.hpp>
#include <nlohmann/json.hpp>

#include <cstdio>
#include <iostream>
#include <iterator>

namespace distill {

namespace {

struct TokenizeArgs {
  std::string dir, text;
  bool json = false, no_special = false, parse_special = false, decode = false;
};

void run_tokenize(const TokenizeArgs& a) {
  const auto tok = Tokenizer::load(a.dir);
  std::string text = a.text;
  if (text == "-") text.assign(std::istreambuf_iterator<char>(std::cin), {});
  if (a.decode) {  // TEXT is a JSON array of ids
    nlohmann::json ids;
    try {
      ids = nlohmann::json::parse(text);
    } catch (const nlohmann::json::exception& e) {
      fail("--decode expects a JSON array of ids: {}", e.what());
    }
    if (!ids.is_array()) fail("--decode expects a JSON array of ids");
    std::vector<int32_t> v;
    for (const auto& id : ids) {
      if (!id.is_number_integer() || id.get<int64_t>() < 0 || id.get<int64_t>() >= tok->vocab_size())
        fail("--decode: {} is not a token id of this tokenizer", id.dump());
      v.push_back(id.get<int32_t>());
    }
    std::fputs(tok->decode(v, !a.parse_special).c_str(), stdout);
    return;
  }
  const std::vector<int32_t> ids = tok->encode(text, !a.no_special, a.parse_special);
  if (a.json) {
    std::printf("%s\n", nlohmann::json(ids).dump().c_str());
    return;
  }
  for (int32_t id : ids) std::printf("%8d  %s\n", id, nlohmann::json(tok->id_to_token(id)).dump().c_str());
  std::printf("%zu tokens\n", ids.size());
}

}  // namespace

void register_tokenize(CLI::App& app) {
  auto a = std::make_shared<TokenizeArgs>();
  CLI::App* cmd = app.add_subcommand("tokenize", "Show the token ids and pieces of a text");
  cmd->add_option("dir", a->dir, "Directory with tokenizer.json")->required();
  cmd->add_option("text", a->text, "Text to encode ('-' reads stdin)")->required();
  cmd->add_flag("--json", a->json, "Print one JSON array of ids");
  cmd->add_flag("--no-special", a->no_special, "Do not add BOS/EOS");
  cmd->add_flag("--parse-special", a->parse_special, "Recognise special tokens written in the text");
  cmd->add_flag("--decode", a->decode, "TEXT is a JSON array of ids: print the decoded text");
  cmd->callback([a] { run_tokenize(*a); });
}

}  // namespace distill
