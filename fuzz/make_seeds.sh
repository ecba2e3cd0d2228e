#!/usr/bin/env bash
# Writes the seed corpora (fuzz/corpus/<target>/) from files distill makes itself: a byte-level
# tokenizer.json, a small model's config.json, safetensors and GGUF files, a teacher dataset, and
# hand-written JSONL lines, request bodies and event streams. Run after `make build`; the result
# is committed (small, real-shaped files).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
distill=${DISTILL:-$root/build/distill}
out=$root/fuzz/corpus
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$out"/{tokenizer_json,chat_template,config_json,safetensors,gguf,jsonl_dataset,teacher_records,openai_request,sse,remote_answer,checkpoint_state}

# (tokenizer_json/spm.json, a SentencePiece-style file with every kind of node, is kept as is.)
# A small model: width 16, one layer, the byte-level tokenizer (ChatML template).
cat > "$tmp/config.json" <<'J'
{"model_type": "qwen2", "hidden_size": 16, "num_hidden_layers": 1, "num_attention_heads": 2, "num_key_value_heads": 1,
 "intermediate_size": 32, "vocab_size": 300, "tie_word_embeddings": true, "rms_norm_eps": 1e-6, "rope_theta": 10000.0}
J
"$distill" init --config "$tmp/config.json" --tokenizer bytes -o "$tmp/m" > /dev/null
cp "$tmp/m/tokenizer.json" "$out/tokenizer_json/bytes.json"
cp "$tmp/m/config.json" "$out/config_json/qwen2.json"
sed 's/"qwen2"/"mistral"/; s/"tie_word_embeddings": true/"sliding_window": 8, "tie_word_embeddings": false/' "$tmp/m/config.json" > "$out/config_json/mistral.json"
sed 's/"qwen2"/"qwen3"/' "$tmp/m/config.json" > "$out/config_json/qwen3.json"
cp "$tmp/m/model.safetensors" "$out/safetensors/small.safetensors"
"$distill" convert "$tmp/m" -o "$out/gguf/small-f32.gguf" --type f32 > /dev/null
"$distill" convert "$tmp/m" -o "$out/gguf/small-f16.gguf" --type f16 > /dev/null

# A teacher dataset: two prompts answered with top-3 log-probs.
printf '%s\n' '{"prompt": "ab"}' '{"messages": [{"role": "user", "content": "cd"}]}' > "$tmp/prompts.jsonl"
"$distill" label --teacher "$tmp/m" --prompts "$tmp/prompts.jsonl" -o "$tmp/labels" --top-k 3 --max-tokens 4 > /dev/null 2>&1
cp "$tmp/labels/records.bin" "$out/teacher_records/records.bin"

printf '%s\n' '{"messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello"}]}' > "$out/chat_template/messages.json"
printf '%s\n' '{"prompt": "What is 2+2?"}' > "$out/chat_template/prompt.json"

printf '%s\n' '{"text": "plain text to learn"}' '{"prompt": "2+2=", "completion": "4"}' \
  '{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}' \
  '{"ids": [1, 2, 3, 4], "mask": [0, 0, 1, 1]}' > "$out/jsonl_dataset/mixed.jsonl"

printf '%s' '{"model": "m", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 8, "temperature": 0.7, "top_p": 0.9, "stop": ["\n"], "logprobs": true, "top_logprobs": 2, "n": 2, "seed": 1, "stream": true, "stream_options": {"include_usage": true}, "logit_bias": {"5": -100}}' > "$out/openai_request/chat.json"
printf '%s' '{"model": "m", "prompt": ["a", [1, 2, 3]], "max_tokens": 0, "echo": true, "logprobs": 3, "user": "u"}' > "$out/openai_request/completions.json"
printf '%s' '{"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}], "max_completion_tokens": 4}' > "$out/openai_request/parts.json"

printf 'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n: keep-alive\n\ndata: [DONE]\n\n' > "$out/sse/stream.txt"
printf '%s' '{"id":"chatcmpl-1","system_fingerprint":"distill-00000000","choices":[{"index":0,"message":{"role":"assistant","content":"the"},"finish_reason":"stop","logprobs":{"content":[{"token":"the","logprob":-0.5,"bytes":[116,104,101],"id":40,"top_logprobs":[{"token":"the","logprob":-0.5,"bytes":[116,104,101],"id":40},{"token":"t","logprob":-1.5,"bytes":[116],"id":117},{"token":"a","logprob":-2.5,"bytes":[97],"id":98}]}]}}]}' > "$out/remote_answer/chat.json"
printf '%s' '{"choices":[{"text":"ab","finish_reason":"length","logprobs":{"tokens":["a","b"],"token_logprobs":[-1,-2],"top_logprobs":[{"a":-1,"b":-3},{"b":-2,"c":-2.5}],"text_offset":[0,1]}}]}' > "$out/remote_answer/legacy.json"
printf '%s' '{"format":1,"step":12,"epoch":0,"cursor":48,"adamw_steps":12,"settings":{"lr":0.001,"batch":4,"loss":"kd"}}' > "$out/checkpoint_state/state.json"
printf 'event: x\r\ndata: a\r\ndata: b\r\n\r\nid: 1\rdata: c\r\r' > "$out/sse/endings.txt"
du -sh "$out"
