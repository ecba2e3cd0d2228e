// Chat rendering for each family, written from each family's published format, and the
// assistant-only loss mask of tokenize_conversation.
#include "tokenizer/byte_vocab.h"
#include "tokenizer/chat_template.h"
#include "tokenizer/tokenizer.h"
#include "test_util.h"

#include <nlohmann/json.hpp>

namespace distill {

namespace {
const std::vector<ChatMessage> kConversation = {
    {"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello!"}, {"user", "2+2?"}};
std::string render(const char* family, const std::vector<ChatMessage>& m = kConversation, bool gen = true) {
  return ChatTemplate::by_name(family).render(m, gen);
}
}  // namespace

TEST(ChatTemplate, ChatMLAndQwen) {
  EXPECT_EQ(render("chatml"),
            "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n"
            "<|im_start|>user\n2+2?<|im_end|>\n<|im_start|>assistant\n");
  EXPECT_EQ(render("qwen2.5", {{"user", "Hi"}}),
            "<|im_start|>system\nYou are Qwen, created by Alibaba Cloud. You are a helpful assistant.<|im_end|>\n"
            "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n");
  // Qwen3 drops the reasoning of earlier turns
  EXPECT_EQ(render("qwen3", {{"user", "a"}, {"assistant", "<think>\nhmm\n</think>\n\nB"}, {"user", "c"}}),
            "<|im_start|>user\na<|im_end|>\n<|im_start|>assistant\nB<|im_end|>\n<|im_start|>user\nc<|im_end|>\n"
            "<|im_start|>assistant\n");
}

TEST(ChatTemplate, Llama3) {
  EXPECT_EQ(render("llama3", {{"system", "Be brief."}, {"user", " Hi "}}),
            "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nBe brief.<|eot_id|>"
            "<|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n");
}

TEST(ChatTemplate, Llama2AndMistral) {
  EXPECT_EQ(render("llama2"),
            "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nHi [/INST] Hello! </s><s>[INST] 2+2? [/INST]");
  EXPECT_EQ(render("mistral", {{"user", "Hi"}, {"assistant", "Hello!"}, {"user", "2+2?"}}),
            "<s>[INST] Hi [/INST]Hello!</s>[INST] 2+2? [/INST]");
}

TEST(ChatTemplate, DeepSeekR1) {
  EXPECT_EQ(render("deepseek-r1", {{"user", "Hi"}, {"assistant", "<think>x</think>Hello!"}, {"user", "2+2?"}}),
            "<｜begin▁of▁sentence｜><｜User｜>Hi<｜Assistant｜>Hello!<｜end▁of▁sentence｜><｜User｜>2+2?<｜Assistant｜><think>\n");
}

TEST(ChatTemplate, DetectionAndErrors) {
  const TokenizerFiles f = make_byte_level_tokenizer();
  const auto tok = Tokenizer::from_json(f.tokenizer_json, f.tokenizer_config_json, "bytes");
  EXPECT_STREQ(ChatTemplate::detect(*tok).name(), "chatml");
  try {
    ChatTemplate::by_name("vicuna");
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("known: chatml, qwen2.5, qwen3, llama3, llama2, mistral, deepseek-r1"), std::string::npos);
  }
  EXPECT_THROW(parse_messages(nlohmann::json::parse(R"([{"role": "robot", "content": "x"}])")), Error);
  EXPECT_THROW(parse_messages(nlohmann::json::parse(R"([{"role": "user"}])")), Error);
}

TEST(ChatTemplate, LossMaskCoversAssistantRepliesOnly) {
  const TokenizerFiles f = make_byte_level_tokenizer();
  const auto tok = Tokenizer::from_json(f.tokenizer_json, f.tokenizer_config_json, "bytes");
  std::vector<int32_t> ids;
  std::vector<uint8_t> mask;
  const std::vector<ChatMessage> conv = {{"user", "Hi"}, {"assistant", "Yo"}, {"user", "Q"}, {"assistant", "A"}};
  ChatTemplate::by_name("chatml").tokenize_conversation(*tok, conv, &ids, &mask);
  ASSERT_EQ(ids.size(), mask.size());
  std::string masked;
  for (size_t i = 0; i < ids.size(); ++i)
    if (mask[i]) masked += tok->decode({ids[i]});
  EXPECT_EQ(masked, "Yo<|im_end|>A<|im_end|>");
  EXPECT_EQ(tok->decode(ids), ChatTemplate::by_name("chatml").render(conv, false));
}

}  // namespace distill
