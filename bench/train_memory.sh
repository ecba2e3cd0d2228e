#!/usr/bin/env bash
# Training memory against sequence length: one step of `distill train` at batch 1 for T = 512, 1024,
# 2048, 4096 on a Llama 15M shape, printing the run's own estimate (activations) and its measured
# peak RSS, beside what the attention probabilities alone would take if they were stored
# (layers × heads × T² floats), which training no longer does; each also with
# --activation-checkpointing (each layer's input kept, the layer recomputed in the backward). Then
# (unless --quick) one step of a
# Qwen2.5-0.5B shape (896 wide, 24 layers, 14 heads over 2 KV heads, FFN 4864, vocabulary 151 936,
# tied; random weights) at T = 2048: f32, with --activation-checkpointing, and with --precision bf16
# (bf16 products; the linears' kept inputs at half the bytes).
# With --lora: the same 0.5B shape at T = 512, one step each of full fine-tuning, LoRA on the f32
# base and QLoRA on the base quantized to Q8_0 and Q4_K_M GGUF (rank 16, all linear layers): what
# each holds (weights as stored, gradients, AdamW state) and the measured peak.
#
#   bash bench/train_memory.sh [--quick | --lora] [DIR]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${DISTILL_BIN:-$here/build/distill}
quick=0 lora=0
[ "${1:-}" = --quick ] && quick=1 && shift
[ "${1:-}" = --lora ] && lora=1 && shift
dir=${1:-/tmp/distill-train-memory}
mkdir -p "$dir"
[ -x "$bin" ] || { echo "build first: make build" >&2; exit 1; }
uptime

# JSONL of `rows` rows of `len` token ids below `vocab` (a deterministic pattern; content does not matter here).
ids() { awk -v rows="$1" -v len="$2" -v vocab="$3" 'BEGIN { for (r = 0; r < rows; r++) { s = "{\"ids\": ["
  for (i = 0; i < len; i++) s = s (i ? "," : "") ((r * 7919 + i * 104729) % vocab); print s "]}" } }'; }

# one step: model dir, T, vocab [train flags] -> "estimate_activations_MiB total_estimate_MiB peak_RSS_MiB seconds"
step() {
  local model=$1 T=$2 vocab=$3 data="$dir/ids-$2-$3.jsonl"
  shift 3
  [ -f "$data" ] || ids 4 "$T" "$vocab" >"$data"
  local t0=$SECONDS log="$dir/train-$(basename "$model")-$T${1:-}.log"
  "$bin" train --student "$model" --data "$data" --eval-fraction 0 --steps 1 --batch 1 --seq-len "$T" -o "$dir/out" "$@" >"$log" 2>&1
  local act total peak
  act=$(grep -o 'activations [0-9.]* MiB' "$log" | grep -o '[0-9.]*')
  total=$(grep -o 'memory estimate [0-9.]* MiB' "$log" | grep -o '[0-9.]*')
  peak=$(grep -o 'peak memory (RSS) [0-9.]* MiB' "$log" | grep -o '[0-9.]*')
  echo "$act $total $peak $((SECONDS - t0))"
}

qwen_05b() {
  cat >"$dir/qwen2.5-0.5b.json" <<'EOF'
{"model_type": "qwen2", "hidden_size": 896, "num_hidden_layers": 24, "num_attention_heads": 14,
 "num_key_value_heads": 2, "intermediate_size": 4864, "vocab_size": 151936, "tie_word_embeddings": true,
 "rms_norm_eps": 1e-6, "rope_theta": 1000000.0, "max_position_embeddings": 4096}
EOF
  # (a byte-level tokenizer padded to the vocabulary: the GGUF conversion needs one; the data are ids)
  [ -f "$dir/qwen2.5-0.5b/tokenizer.json" ] || "$bin" init --config "$dir/qwen2.5-0.5b.json" --tokenizer bytes --vocab 151936 -o "$dir/qwen2.5-0.5b" >/dev/null
}

if [ $lora = 1 ]; then
  qwen_05b
  for t in q8_0 q4_k_m; do
    [ -f "$dir/qwen2.5-0.5b-$t.gguf" ] || "$bin" convert "$dir/qwen2.5-0.5b" -o "$dir/qwen2.5-0.5b-$t.gguf" --type $t >/dev/null
  done
  echo
  echo "Qwen2.5-0.5B shape (random weights), one training step at T = 512, batch 1, $(nproc) threads"
  echo
  echo "| run | weights (as held) | gradients | AdamW state | activations | whole run (estimate) | peak RSS (measured) | load + step |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
  row() {  # name, model, [flags]
    local name=$1 model=$2
    shift 2
    read -r act total peak secs < <(step "$model" 512 151936 "$@")
    local log="$dir/train-$(basename "$model")-512${1:-}.log" w g o
    w=$(grep -o 'weights [0-9.]* [MG]iB' "$log" | head -1 | cut -d' ' -f2-)
    g=$(grep -o 'gradients [0-9.]* [MG]iB' "$log" | head -1 | cut -d' ' -f2-)
    o=$(grep -o 'optimizer [0-9.]* [MG]iB' "$log" | head -1 | cut -d' ' -f2-)
    echo "| $name | $w | $g | $o | $act MiB | $total MiB | $peak MiB | ${secs} s |"
  }
  row "full fine-tuning (f32)" "$dir/qwen2.5-0.5b"
  row "LoRA r16, f32 base" "$dir/qwen2.5-0.5b" --lora-rank 16
  row "QLoRA r16, Q8_0 GGUF base" "$dir/qwen2.5-0.5b-q8_0.gguf" --lora-rank 16
  row "QLoRA r16, Q4_K_M GGUF base" "$dir/qwen2.5-0.5b-q4_k_m.gguf" --lora-rank 16
  exit 0
fi

[ -f "$dir/llama-15m/config.json" ] || "$bin" init --preset 15m --vocab 32000 -o "$dir/llama-15m" >/dev/null 2>&1
layers=$(jq '.num_hidden_layers' "$dir/llama-15m/config.json"); heads=$(jq '.num_attention_heads' "$dir/llama-15m/config.json")
echo
echo "Llama 15M shape ($layers layers × $heads heads), one training step at batch 1"
echo
echo "| T | activations (estimate) | whole run (estimate) | peak RSS (measured) | stored T×T probabilities would add | step + load time | with --activation-checkpointing: activations / peak RSS / time |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
for T in 512 1024 2048 4096; do
  read -r act total peak secs < <(step "$dir/llama-15m" "$T" 32000)
  read -r cact _ cpeak csecs < <(step "$dir/llama-15m" "$T" 32000 --activation-checkpointing)
  probs=$(awk -v l="$layers" -v h="$heads" -v t="$T" 'BEGIN { printf "%.0f", l * h * t * t * 4 / 1048576 }')
  echo "| $T | $act MiB | $total MiB | $peak MiB | $probs MiB | ${secs} s | $cact MiB / $cpeak MiB / ${csecs} s |"
done

if [ $quick = 0 ]; then
  qwen_05b
  echo
  echo "Qwen2.5-0.5B shape (random weights), one training step at T = 2048, batch 1"
  echo
  read -r act total peak secs < <(step "$dir/qwen2.5-0.5b" 2048 151936)
  grep 'memory estimate' "$dir/train-qwen2.5-0.5b-2048.log"
  echo "measured peak RSS $peak MiB (estimate $total MiB; activations $act MiB), ${secs} s for load + one step"
  read -r act total peak secs < <(step "$dir/qwen2.5-0.5b" 2048 151936 --activation-checkpointing)
  echo "with --activation-checkpointing: measured peak RSS $peak MiB (estimate $total MiB; activations $act MiB), ${secs} s"
  read -r act total peak secs < <(step "$dir/qwen2.5-0.5b" 2048 151936 --precision bf16)
  echo "with --precision bf16: measured peak RSS $peak MiB (estimate $total MiB; activations $act MiB), ${secs} s"
fi
