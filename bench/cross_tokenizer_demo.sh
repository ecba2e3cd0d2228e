#!/usr/bin/env bash
# Cross-tokenizer distillation on the embedded task (issue 17): the demo's BPE teacher (`distill
# demo` leaves it in its directory) labels the training prompts in a *byte-level* student's tokens
# (`label --tokenizer`: its text re-encoded, its top-k projected on bytes, continuations inside
# its tokens included — docs/teacher-dataset.md). Students of the demo's shape with the byte-level
# tokenizer then train on those records over seeds, with the demo's settings. Both see the same
# teacher text:
#   CE   sequence-level KD: the teacher's text only (--kd-alpha 0)
#   KD   cross-tokenizer logit KD: (1 − α)·CE + α·forward KL to the projected top-k (α 0.5, tail)
#   KD-T cross-tokenizer KD at temperature T (both distributions tempered, loss × T²): the demo's
#        teacher is nearly certain (held-out perplexity ~1.01), so at T = 1 its top-k is nearly
#        its text; tempering brings out the rest of its top-k (which digit it would put second)
# and are scored on the demo's held-out problems (exact answer, greedy), with held-out CE.
#
#   bash bench/cross_tokenizer_demo.sh [DEMO_DIR] [--seeds N] [--first-seed N] [--steps N]
#                                      [--methods "ce kd kd-t2"]
# (DEMO_DIR: a finished `distill demo --out DIR` run; default /tmp/distill-demo. Runs seeds
# --first-seed..--seeds of each method; the labels and the results of other runs are kept, so a
# later call can add seeds or methods; the table covers every run in the results.)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
distill=${DISTILL:-$root/build/distill}
demo=/tmp/distill-demo seeds=3 steps=3000 first_seed=1 methods="ce kd kd-t2"
while [ $# -gt 0 ]; do
  case $1 in
    --seeds) seeds=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --first-seed) first_seed=$2; shift 2 ;;
    --methods) methods=$2; shift 2 ;;
    -*) echo "usage: $0 [DEMO_DIR] [--seeds N] [--first-seed N] [--steps N] [--methods \"ce kd kd-t2\"]" >&2; exit 2 ;;
    *) demo=$1; shift ;;
  esac
done
[ -f "$demo/teacher/config.json" ] && [ -f "$demo/data/train_tasks.jsonl" ] ||
  { echo "$demo: no finished demo run there (make demo, or distill demo --out DIR)" >&2; exit 2; }
command -v jq > /dev/null || { echo "needs jq" >&2; exit 2; }
work=${TMPDIR:-/tmp}/distill-cross-tokenizer-demo
mkdir -p "$work" && cd "$work"
log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
uptime >&2

# the demo student's shape, with the byte-level tokenizer (which sets the vocabulary)
jq '{model_type, hidden_size, intermediate_size, num_hidden_layers, num_attention_heads, num_key_value_heads,
     head_dim, max_position_embeddings, rms_norm_eps, rope_theta, tie_word_embeddings, vocab_size}' \
  "$demo/student-kd/config.json" > student.json
"$distill" init --config student.json --tokenizer bytes --seed 1 -o byte0 > /dev/null
if [ ! -f ds-bytes/manifest.json ]; then
  log "labelling the training prompts in the byte-level tokens (the demo's settings: greedy, top-8)"
  "$distill" label --teacher "$demo/teacher" --tokenizer byte0 --prompts "$demo/data/train_tasks.jsonl" \
    --top-k 8 --max-tokens 64 --temperature 0 -o ds-bytes > label.log 2>&1
fi
"$distill" dataset info ds-bytes | grep -E "records|soft" >&2

touch results.txt
for seed in $(seq "$first_seed" "$seeds"); do
  "$distill" init --config student.json --tokenizer bytes --seed "$seed" -o "byte-s$seed" > /dev/null
  for method in $methods; do
    case $method in
      ce) alpha=0 temp=1 ;;
      kd) alpha=0.5 temp=1 ;;
      kd-t*) alpha=0.5 temp=${method#kd-t} ;;
      *) echo "unknown method $method (ce, kd, kd-tT)" >&2; exit 2 ;;
    esac
    name=$method-$seed
    log "seed $seed: $method"
    rm -rf "$name"
    # a byte-level example (prompt + answer) is < 256 bytes; the demo's BPE rows are 96 tokens
    "$distill" train --student "byte-s$seed" --data ds-bytes -o "$name" --steps "$steps" --batch 16 --seq-len 256 \
      --lr 0.002 --warmup $((steps / 20)) --seed "$seed" --loss fkl --kd-alpha "$alpha" --temperature "$temp" \
      --topk-mode tail --eval-every $((steps / 10)) > /dev/null 2> "$name.log"
    acc=$("$distill" eval "$name" --tasks "$demo/data/heldout_tasks.jsonl" --reward answer --max-new-tokens 64 --no-speed --json |
          jq -r .tasks.accuracy)
    ce=$("$distill" eval "$name" --text "$demo/data/heldout.jsonl" --seq-len 256 --no-speed --json | jq -r .text.loss)
    # held-out loss along the run (10 evaluations): how fast each learns
    curve=$(jq -s -r '[.[] | select(has("eval_loss")) | .eval_loss * 1000 | round / 1000] | map(tostring) | join(" ")' "$name/metrics.jsonl")
    { grep -v "^$name " results.txt || true; echo "$name $acc $ce $curve"; } > results.new && mv results.new results.txt
    echo "$name $acc $ce $curve" >&2
  done
done

echo
echo "Byte-level students of the demo's shape taught by the demo's BPE teacher, $steps steps per run"
echo
echo "| method | seeds | held-out accuracy (mean ± sd) | held-out CE, nats/byte (mean ± sd) | by seed (accuracy) |"
echo "| --- | --- | --- | --- | --- |"
for key in $(awk '{ sub(/-[0-9]+$/, "", $1); print $1 }' results.txt | sort -u); do
  case $key in
    ce) label="CE on the teacher's text (sequence-level KD)" ;;
    kd) label="cross-tokenizer KD (top-8 projected on bytes, α 0.5)" ;;
    *) label="cross-tokenizer KD at T = ${key#kd-t} (α 0.5)" ;;
  esac
  grep -E "^$key-[0-9]+ " results.txt | awk -v label="$label" '
    { n++; a += $2; aa += $2 * $2; c += $3; cc += $3 * $3; by = by (by ? " / " : "") sprintf("%.1f", 100 * $2) }
    END { ma = a / n; mc = c / n
          sa = n > 1 ? sqrt((aa - n * ma * ma) / (n - 1)) : 0; sc = n > 1 ? sqrt((cc - n * mc * mc) / (n - 1)) : 0
          printf "| %s | %d | %.1f ± %.1f %% | %.4f ± %.4f | %s |\n", label, n, 100 * ma, 100 * sa, mc, sc, by }'
done
echo
echo "Held-out loss every $((steps / 10)) steps, by run:"
awk '{ printf "  %s:", $1; for (i = 4; i <= NF; i++) printf " %s", $i; printf "\n" }' results.txt
