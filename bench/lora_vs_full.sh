#!/usr/bin/env bash
# LoRA against full fine-tuning on the embedded arithmetic task, same run, same data, same steps:
# the demo's teacher (a pretrained base) is fine-tuned on the 800 worked solutions both ways, and
# both are evaluated on the 100 held-out problems (greedy accuracy) and held-out text (perplexity).
# Prints held-out accuracy, perplexity, the optimizer memory each run reported, trainable
# parameters, peak RSS and wall time.
#
#   bash bench/lora_vs_full.sh [DEMO_DIR] [STEPS] [RANK]
# DEMO_DIR: an existing `distill demo --quick` (or full) output; made if missing (about 6 minutes).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
bin=${DISTILL_BIN:-$here/build/distill}
demo=${1:-/tmp/distill-lora-bench}
steps=${2:-400}
rank=${3:-16}
[ -x "$bin" ] || { echo "build first: make build" >&2; exit 1; }
[ -f "$demo/teacher/model.safetensors" ] || "$bin" demo --quick -o "$demo"

uptime
common=(--student "$demo/teacher" --data "$demo/data/train_ground_truth.jsonl" --steps "$steps" --batch 16 --seq-len 96
        --warmup 20 --eval-every 100 --seed 7)
run() {  # name, extra args...
  local name=$1; shift
  local t0=$SECONDS
  "$bin" train "${common[@]}" -o "$demo/ft-$name" "$@" 2>"$demo/ft-$name.log"
  echo $((SECONDS - t0)) >"$demo/ft-$name.seconds"
}
run full --lr 5e-4
run lora --lr 2e-3 --lora-rank "$rank"

row() {  # label, model dir, [train log]
  local j; j=$("$bin" eval $2 --tasks "$demo/data/heldout_tasks.jsonl" --text "$demo/data/heldout.jsonl" --max-new-tokens 64 --json 2>/dev/null)
  local acc ppl; acc=$(jq -r '.tasks.accuracy * 100' <<<"$j"); ppl=$(jq -r '.text.perplexity' <<<"$j")
  if [ -n "${3:-}" ]; then
    local opt trainable peak secs
    opt=$(grep -o 'optimizer [0-9.]* MiB' "$3" | head -1 | grep -o "[0-9.]*")
    trainable=$(grep -o '[0-9]* trainable parameters of [0-9]*' "$3" | awk '{print $1}' || true)
    [ -n "$trainable" ] || trainable=$(jq -r '.parameters' <<<"$j")
    peak=$(grep -o 'peak memory (RSS) [0-9.]* MiB' "$3" | grep -o '[0-9.]* MiB')
    secs=$(cat "${3%.log}.seconds")
    printf '| %s | %.1f %% | %.3f | %s | %s MiB | %s | %s s |\n' "$1" "$acc" "$ppl" "$trainable" "$opt" "$peak" "$secs"
  else
    printf '| %s | %.1f %% | %.3f | – | – | – | – |\n' "$1" "$acc" "$ppl"
  fi
}
echo
echo "fine-tuning the demo teacher on 800 worked solutions, $steps steps of 16 rows; 100 held-out problems"
echo
echo "| model | held-out accuracy | held-out perplexity | trainable parameters | AdamW state | peak RSS | train time |"
echo "| --- | --- | --- | --- | --- | --- | --- |"
row "base (demo teacher)" "$demo/teacher"
row "full fine-tuning" "$demo/ft-full" "$demo/ft-full.log"
row "LoRA rank $rank, all-linear" "$demo/ft-lora" "$demo/ft-lora.log"
row "base + adapter (run --lora)" "$demo/teacher --lora $demo/ft-lora/adapter"
