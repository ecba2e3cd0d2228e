#!/usr/bin/env bash
# Distillation methods side by side on real text (C headers under /usr/include), over seeds:
#
#   teacher  a BPE model (merges learned from the corpus) trained on (96-byte prompt, 160-byte
#            continuation) pairs of the corpus
#   students labelled by that teacher on prompts it was not trained on, then trained for the same
#            number of steps (so the same number of teacher-graded tokens per step):
#     same tokenizer (BPE):   CE on the teacher's text (sequence-level KD) | offline logit KD
#                             (its top-20) | on-policy KD (GKD: the student samples, the teacher
#                             grades every token; half the rows, the same loss as offline KD)
#     byte-level tokenizer:   CE on the teacher's text | cross-tokenizer KD (top-20 projected on
#                             bytes, docs/teacher-dataset.md) | that KD for half the steps, then
#                             on-policy KD across vocabularies in the same run (--on-policy-from:
#                             half the rows sampled by the byte-level student, graded by the BPE
#                             teacher on bytes; docs/distillation.md: on-policy starts from a
#                             student that has seen data)
#   held-out: real continuations of held-out prompts: cross-entropy per token (BPE students: per
#   BPE token; byte students: per byte — compare within a group), and for the BPE students the
#   top-1 agreement with the teacher.
#
# usage: bench/kd_compare.sh [--seeds 3] [--steps 300] [--quick] [--reuse [--first-seed N]]
#                            [--groups "bpe bytes"] [--curve N]
#   (prints a markdown table; --reuse keeps the teacher and labels of the last run, and
#   --first-seed N also keeps its students of seeds < N and runs seeds N..--seeds only;
#   --groups bytes runs the byte-level students only; --curve N also evaluates every N steps and
#   prints each method's held-out CE along the run, mean ± sd over seeds: how fast each learns)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
distill=${DISTILL:-$root/build/distill}
seeds=3 steps=300 teacher_steps=400 pairs=4000 prompts=1200 reuse=0 first_seed=1 groups="bpe bytes" curve=0
while [ $# -gt 0 ]; do
  case $1 in
    --reuse) reuse=1; shift ;;  # keep the teacher and labels of the last run (same settings)
    --seeds) seeds=$2; shift 2 ;;
    --first-seed) first_seed=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --groups) groups=$2; shift 2 ;;
    --curve) curve=$2; shift 2 ;;
    --quick) seeds=2 steps=60 teacher_steps=150 pairs=1500 prompts=300; shift ;;
    *) echo "usage: $0 [--seeds N] [--steps N] [--quick] [--reuse [--first-seed N]] [--groups \"bpe bytes\"] [--curve N]" >&2; exit 2 ;;
  esac
done
work=${TMPDIR:-/tmp}/distill-kd-compare
log() { printf '%s %s\n' "$(date +%H:%M:%S)" "$*" >&2; }
if [ "$reuse" = 1 ] && [ -f "$work/ds-bytes/manifest.json" ]; then
  cd "$work"
  for seed in $(seq "$first_seed" "$seeds"); do  # students of earlier seeds stay, with their results
    rm -rf {ce,kd,onpolicy,bytece,bytekd,byteonpolicy}-"$seed"{,.log} {bpe,byte}-s"$seed"
  done
  if [ "$first_seed" -gt 1 ] && [ -f results.txt ]; then
    awk -v f="$first_seed" '{ n = $1; sub(/.*-/, "", n) } n + 0 < f' results.txt > results.kept && mv results.kept results.txt
  else
    : > results.txt
  fi
else
reuse=0 first_seed=1
rm -rf "$work" && mkdir -p "$work" && cd "$work"
uptime >&2

# --- data: the headers as (prompt, continuation) pairs; train / label prompts / held-out disjoint
. "$root/bench/headers_corpus.sh"
headers_pairs "$pairs" "$prompts"
log "data: $(wc -l < teacher-data.jsonl) teacher pairs, $(wc -l < label-prompts.jsonl) label prompts, $(wc -l < heldout.jsonl) held-out"

headers_config 192 4 6 512 > teacher.json
headers_config 128 3 4 352 > student.json

# --- teacher
"$distill" init --config teacher.json --tokenizer bpe:400 --corpus bpe-corpus.txt --seed 1 -o teacher0 >&2
log "training the teacher ($teacher_steps steps)"
"$distill" train --student teacher0 --data teacher-data.jsonl --eval heldout.jsonl -o teacher --steps "$teacher_steps" \
  --batch 16 --seq-len 320 --lr 0.002 --warmup 20 --eval-every 0 > /dev/null 2> teacher.log
"$distill" init --config student.json --tokenizer teacher --seed 1 -o bpe-student0 > /dev/null
"$distill" init --config student.json --tokenizer bytes --seed 1 -o byte-student0 > /dev/null

# --- labels: the same sampled answers in both tokenizations (same seeds)
label_args="--prompts label-prompts.jsonl --top-k 20 --max-tokens 64 --temperature 0.8 --seed 7"
log "labelling (teacher's tokens)"
"$distill" label --teacher teacher $label_args -o ds-bpe > /dev/null 2>&1
log "labelling (byte-level student's tokens)"
"$distill" label --teacher teacher --tokenizer byte-student0 $label_args -o ds-bytes > /dev/null 2>&1
"$distill" dataset info ds-bytes | grep -E "records|soft" >&2 || true
fi  # reuse

last() { jq -s -r "[.[] | select(has(\"$2\"))] | last | .$2" "$1/metrics.jsonl"; }
command -v jq > /dev/null && command -v bc > /dev/null || { echo "needs jq and bc (apt-get install jq bc)" >&2; exit 1; }
train() {  # name student data seed extra...
  local name=$1 student=$2 data=$3 seed=$4; shift 4
  local t0=$(date +%s.%N)
  # rows (held-out ones too): a BPE example is < 256 tokens; a byte-level one < 512
  local len=256
  case $student in byte*) len=512 ;; esac
  "$distill" train --student "$student" --data "$data" --eval heldout.jsonl -o "$name" --steps "${run_steps:-$steps}" --batch 8 \
    --seq-len $len --lr 0.002 --warmup 10 --seed "$seed" --eval-every "$curve" "$@" > /dev/null 2> "$name.log"
  local secs=$(echo "$(date +%s.%N) - $t0" | bc)
  # held-out CE, and (same tokenizer) agreement with the teacher, by `distill eval`
  local ev agree=null
  if [ "$(jq -r .tokenizer_fingerprint ds-bpe/manifest.json)" = "$(jq -r .tokenizer_fingerprint "$data/manifest.json")" ]; then
    ev=$("$distill" eval "$name" --text heldout.jsonl --seq-len $len --teacher teacher --no-speed --json)
    agree=$(jq -r .fidelity.top1_agreement <<< "$ev")
  else
    ev=$("$distill" eval "$name" --text heldout.jsonl --seq-len $len --no-speed --json)
  fi
  # held-out loss every --curve steps (the trainer's evaluation on the same held-out text)
  local along=$(jq -s -r '[.[] | select(has("eval_loss")) | .eval_loss] | map(tostring) | join(" ")' "$name/metrics.jsonl")
  printf '%s %s %s %.0f %s\n' "$name" "$(jq -r .text.loss <<< "$ev")" "$agree" "$secs" "$along" >> results.txt
}
[ "$reuse" = 1 ] || : > results.txt
for seed in $(seq "$first_seed" "$seeds"); do
  for kind in bpe byte; do "$distill" init --config student.json --tokenizer $([ $kind = bpe ] && echo teacher || echo bytes) --seed "$seed" -o "$kind-s$seed" > /dev/null; done
  if [[ " $groups " == *" bpe "* ]]; then
    log "seed $seed: BPE students"
    train "ce-$seed" "bpe-s$seed" ds-bpe "$seed" --loss ce
    train "kd-$seed" "bpe-s$seed" ds-bpe "$seed" --loss fkl --kd-alpha 0.5
    train "onpolicy-$seed" "bpe-s$seed" ds-bpe "$seed" --teacher teacher --on-policy 0.5 --loss fkl --kd-alpha 0.5
  fi
  if [[ " $groups " == *" bytes "* ]]; then
    log "seed $seed: byte-level students"
    train "bytece-$seed" "byte-s$seed" ds-bytes "$seed" --loss ce
    train "bytekd-$seed" "byte-s$seed" ds-bytes "$seed" --loss fkl --kd-alpha 0.5
    train "byteonpolicy-$seed" "byte-s$seed" ds-bytes "$seed" --teacher teacher --on-policy 0.5 --on-policy-from $((steps / 2)) \
      --loss fkl --kd-alpha 0.5
  fi
done

# --- table: mean ± sd over seeds
teacher_loss=$(last teacher eval_loss)
echo
echo "Held-out cross-entropy on real continuations (C headers), $seeds seeds, $steps steps × 8 rows each; teacher: $teacher_loss nats/BPE token"
echo
echo "| student | method | held-out CE (mean ± sd) | top-1 agreement with the teacher | s/run |"
echo "| --- | --- | --- | --- | --- |"
for m in "ce:BPE:CE on the teacher's text (sequence-level KD)" "kd:BPE:offline logit KD (top-20, α 0.5)" \
         "onpolicy:BPE:on-policy KD (GKD: half the rows sampled by the student, same loss)" "bytece:bytes:CE on the teacher's text (sequence-level KD)" \
         "bytekd:bytes:cross-tokenizer KD (top-20 projected on bytes, α 0.5)" \
         "byteonpolicy:bytes:that KD for half the steps, then on-policy KD across vocabularies in the same run (half the rows)"; do
  IFS=: read -r key tok label <<< "$m"
  grep -q "^$key-" results.txt || continue  # a group not run (--groups)
  grep "^$key-" results.txt | awk -v tok="$tok" -v label="$label" '
    { n++; s += $2; ss += $2 * $2; if ($3 != "null") { a += $3; na++ }; t += $4 }
    END { mean = s / n; sd = n > 1 ? sqrt((ss - n * mean * mean) / (n - 1)) : 0
          printf "| %s | %s | %.4f ± %.4f | %s | %.0f |\n", tok, label, mean, sd, na ? sprintf("%.3f", a / na) : "n/a", t / n }'
done
echo
echo "(BPE rows: nats per BPE token; byte rows: nats per byte. Same held-out text.)"
[ "$curve" -gt 0 ] || exit 0
echo
echo "Held-out cross-entropy along the run (the trainer's evaluation every $curve steps), mean ± sd over $seeds seeds:"
echo
printf '| method |'; for at in $(seq "$curve" "$curve" "$steps"); do printf ' step %d |' "$at"; done; echo
printf '| --- |'; for _ in $(seq "$curve" "$curve" "$steps"); do printf ' --- |'; done; echo
for key in ce kd onpolicy bytece bytekd byteonpolicy; do
  grep -q "^$key-" results.txt || continue
  grep "^$key-" results.txt | awk -v key="$key" '
    { for (i = 5; i <= NF; i++) { s[i] += $i; ss[i] += $i * $i }; n++; if (NF > m) m = NF }
    END { line = "| " key " |"
          for (i = 5; i <= m; i++) { mean = s[i] / n; sd = n > 1 ? sqrt((ss[i] - n * mean * mean) / (n - 1)) : 0
                                     line = line sprintf(" %.3f ± %.3f |", mean, sd) }
          print line }'
done
