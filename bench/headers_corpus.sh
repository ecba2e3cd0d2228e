# Sourced by the benches that need real text: the C headers under /usr/include as
# (96-byte prompt, 160-byte continuation) pairs, and the model configs they train.
#
#   headers_pairs PAIRS PROMPTS   in the current directory: corpus.txt, bpe-corpus.txt (the first
#                                 MB, for learning BPE merges), teacher-data.jsonl (PAIRS pairs),
#                                 label-prompts.jsonl (PROMPTS prompts) and heldout.jsonl (300
#                                 pairs) — disjoint 256-byte chunks
#   headers_config DIM LAYERS HEADS FFN   a Llama config.json on stdout (vocabulary 32 000, tied)

headers_pairs() {
  local pairs=$1 prompts=$2
  { cat /usr/include/*.h /usr/include/*/*.h 2>/dev/null | LC_ALL=C tr -cd '\11\12\15\40-\176' | head -c 4000000 > corpus.txt; } || true
  head -c 1000000 corpus.txt > bpe-corpus.txt
  LC_ALL=C awk -v pairs="$pairs" -v prompts="$prompts" '
    function esc(s) { gsub(/\\/, "&&", s); gsub(/"/, "\\\\&", s); gsub(/\t/, "\\\\t", s); gsub(/\r/, "\\\\r", s); gsub(/\n/, "\\\\n", s); return s }
    BEGIN { RS = "^$" }
    { text = $0 }
    END {
      n = int(length(text) / 256)
      for (i = 0; i < n && i < pairs + prompts + 300; i++) {
        c = substr(text, i * 256 + 1, 256)
        p = esc(substr(c, 1, 96)); q = esc(substr(c, 97, 160))
        if (i < pairs) print "{\"prompt\": \"" p "\", \"completion\": \"" q "\"}" > "teacher-data.jsonl"
        else if (i < pairs + prompts) print "{\"prompt\": \"" p "\"}" > "label-prompts.jsonl"
        else print "{\"prompt\": \"" p "\", \"completion\": \"" q "\"}" > "heldout.jsonl"
      }
    }' corpus.txt
  local f
  for f in teacher-data label-prompts heldout; do jq -e . "$f.jsonl" > /dev/null || { echo "$f.jsonl: not JSON" >&2; return 1; }; done
}

headers_config() {
  printf '{"model_type":"llama","hidden_size":%d,"num_hidden_layers":%d,"num_attention_heads":%d,"num_key_value_heads":%d,"intermediate_size":%d,"vocab_size":32000,"head_dim":%d,"rms_norm_eps":1e-5,"max_position_embeddings":1024,"tie_word_embeddings":true,"rope_theta":10000.0}\n' \
    "$1" "$2" "$3" "$3" "$4" $(($1 / $3))
}
