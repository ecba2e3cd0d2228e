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

namespace distill {

// Harmony (GPT-OSS) byte for byte against the format's published examples: the system message
// with a fixed date and effort, the caller's system prompt as the developer message, the user turn
// and the generation prompt; earlier turns keep only their final answer, ended by <|end|>.
TEST(ChatTemplate, HarmonyRendersThePublishedFormat) {
  ChatTemplate t = ChatTemplate::by_name("harmony");
  EXPECT_STREQ(t.name(), "harmony");
  t.set_date("2025-06-28");
  t.set_reasoning_effort("high");
  const std::string sys =
      "<|start|>system<|message|>You are ChatGPT, a large language model trained by OpenAI.\nKnowledge cutoff: 2024-06\n"
      "Current date: 2025-06-28\n\nReasoning: high\n\n# Valid channels: analysis, commentary, final. Channel must be "
      "included for every message.<|end|>";
  EXPECT_EQ(t.render({{"system", "Use a friendly tone."}, {"user", "What is the weather like in SF?"}}, true),
            sys + "<|start|>developer<|message|># Instructions\n\nUse a friendly tone.<|end|>"
                  "<|start|>user<|message|>What is the weather like in SF?<|end|><|start|>assistant");
  // the reasoning of a finished turn is dropped; its answer stays, normalised to <|end|>
  const std::string reply =
      "<|channel|>analysis<|message|>User asks: \"What is 2 + 2?\" Simple arithmetic. Provide answer.<|end|>"
      "<|start|>assistant<|channel|>final<|message|>2 + 2 = 4.<|return|>";
  EXPECT_EQ(t.render({{"user", "What is 2 + 2?"}, {"assistant", reply}, {"user", "What about 9 / 2?"}}, true),
            sys + "<|start|>user<|message|>What is 2 + 2?<|end|><|start|>assistant<|channel|>final<|message|>2 + 2 = 4.<|end|>"
                  "<|start|>user<|message|>What about 9 / 2?<|end|><|start|>assistant");
  EXPECT_THROW(t.set_reasoning_effort("extreme"), Error);
}

TEST(ChatTemplate, HarmonyReplySplitsIntoChannels) {
  HarmonyReply r = parse_harmony_reply(
      "<|channel|>analysis<|message|>User asks: \"What is 2 + 2?\" Simple arithmetic. Provide answer.<|end|>"
      "<|start|>assistant<|channel|>final<|message|>2 + 2 = 4.<|return|>");
  EXPECT_EQ(r.analysis, "User asks: \"What is 2 + 2?\" Simple arithmetic. Provide answer.");
  EXPECT_EQ(r.final, "2 + 2 = 4.");
  r = parse_harmony_reply("<|channel|>analysis<|message|>Thinking about it");  // cut short while reasoning
  EXPECT_EQ(r.analysis, "Thinking about it");
  EXPECT_EQ(r.final, "");
  r = parse_harmony_reply("<|channel|>commentary to=functions.get_weather <|constrain|>json<|message|>{\"location\":\"Tokyo\"}<|call|>");
  EXPECT_EQ(r.analysis, "{\"location\":\"Tokyo\"}");  // not the answer
  EXPECT_EQ(r.final, "");
  EXPECT_EQ(parse_harmony_reply("plain text").final, "plain text");
}

}  // namespace distill

namespace distill {

// Streamed in any pieces — special tokens split across pieces included — the channels come out
// as the whole reply parses, with no markup leaking into either.
TEST(ChatTemplate, HarmonyStreamMatchesTheWholeParse) {
  const std::string reply =
      "<|channel|>analysis<|message|>User asks: \"What is 2 + 2?\" Simple arithmetic.<|end|>"
      "<|start|>assistant<|channel|>final<|message|>2 + 2 = 4. a<b and x|>y<|return|>";
  const HarmonyReply whole = parse_harmony_reply(reply);
  for (size_t step : {1, 2, 3, 5, 7, 13, 64}) {
    HarmonyStream s;
    std::string analysis, final;
    for (size_t i = 0; i < reply.size(); i += step) {
      const HarmonyReply d = s.push(reply.substr(i, step));
      EXPECT_EQ(d.analysis.find("<|"), std::string::npos) << step;
      EXPECT_EQ(d.final.find("<|"), std::string::npos) << step;
      analysis += d.analysis, final += d.final;
    }
    const HarmonyReply rest = s.finish();
    analysis += rest.analysis, final += rest.final;
    EXPECT_EQ(analysis, whole.analysis) << "pieces of " << step;
    EXPECT_EQ(final, whole.final) << "pieces of " << step;
  }
  EXPECT_EQ(whole.final, "2 + 2 = 4. a<b and x|>y");
}

}  // namespace distill
