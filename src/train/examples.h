// Reading training data into Examples (token ids + loss mask), from every format `distill train`
// accepts. One example per JSONL line; an empty or malformed line is an error naming file:line.
//
//   FILE.txt                              one document: BOS + text + EOS, packed
//   {"text": "..."}                       a document, packed
//   {"prompt": "...", "completion": "..."} a user turn and the reply, rendered with the chat
//                                         template; loss on the reply only (without a template:
//                                         prompt + completion, loss on the completion)
//   {"messages": [{"role", "content"}..]} a conversation; loss on the assistant turns
//   {"ids": [..]} / {"ids": [..], "mask": [..]}   already tokenised
//   DIR (a `distill label` dataset)       prompt + teacher answer, loss on the answer, with the
//                                         teacher's top-k as soft labels where recorded
#pragma once

#include "train/dataset.h"

#include <string>
#include <vector>

namespace distill {

class Tokenizer;
class ChatTemplate;

// tok and tmpl may be null; text formats then fail with a message saying what is needed.
std::vector<Example> read_examples(const std::string& path, const Tokenizer* tok, const ChatTemplate* tmpl);

}  // namespace distill
