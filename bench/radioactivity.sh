#!/usr/bin/env bash
# The owner's story end to end, with the CLI only: a teacher served with watermarked answers
# (distill serve --watermark-all), a scraper labelling it through the API (distill label), a
# student trained on those answers, and the radioactivity test telling that student from one
# trained on the same teacher's plain answers. Prints the p-values and the students' accuracy.
#
#   teacher   the demo's (distill demo --smoke, or DEMO=DIR from an earlier demo run); with
#             --text, a BPE model trained on C headers (/usr/include, bench/headers_corpus.sh):
#             answers with real choice in them, where the demo's arithmetic has almost none
#   students  both start from the demo's CE student (--text: one random initialisation) and train
#             the same steps on the teacher's answers to the same prompts: one set watermarked,
#             one plain
#
# usage: bench/radioactivity.sh [--text] [--steps 300] [--prompts 2000] [--temperature 1.0] [--delta 2] [--kd-alpha 0.5]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
distill=${DISTILL:-$root/build/distill}
steps=300 prompts=2000 temperature=1.0 delta=2 kd_alpha=0.5 text=0
while [ $# -gt 0 ]; do
  case $1 in
    --text) text=1; shift ;;
    --steps) steps=$2; shift 2 ;;
    --prompts) prompts=$2; shift 2 ;;
    --temperature) temperature=$2; shift 2 ;;
    --delta) delta=$2; shift 2 ;;
    --kd-alpha) kd_alpha=$2; shift 2 ;;
    *) echo "usage: $0 [--text] [--steps N] [--prompts N] [--temperature T] [--delta D] [--kd-alpha A]" >&2; exit 2 ;;
  esac
done
work=${WORK:-/tmp/distill-radioactivity}
mkdir -p "$work"
uptime >&2
if [ $text = 1 ]; then
  # a teacher of C headers (as bench/kd_compare.sh's), once per work directory; the students start
  # from one random initialisation
  . "$root/bench/headers_corpus.sh"
  teacher=$work/text/teacher start=$work/text/student0
  if [ ! -f "$teacher/config.json" ]; then
    mkdir -p "$work/text"
    (cd "$work/text" && headers_pairs 4000 "$prompts" && headers_config 192 4 6 512 > teacher.json && headers_config 128 3 4 352 > student.json)
    "$distill" init --config "$work/text/teacher.json" --tokenizer bpe:400 --corpus "$work/text/bpe-corpus.txt" --seed 1 -o "$work/text/teacher0" > /dev/null
    "$distill" train --student "$work/text/teacher0" --data "$work/text/teacher-data.jsonl" --eval "$work/text/heldout.jsonl" -o "$teacher" \
      --steps 400 --batch 16 --seq-len 320 --lr 0.002 --warmup 20 --eval-every 0 > "$work/teacher.log" 2>&1
    "$distill" init --config "$work/text/student.json" --tokenizer "$teacher" --seed 1 -o "$start" > /dev/null
  fi
  head -n "$prompts" "$work/text/label-prompts.jsonl" > "$work/prompts.jsonl"
  held=$work/text/heldout.jsonl seq_len=256  # a 96-byte prompt can take ~100 BPE tokens
else
  demo=${DEMO:-$work/demo}
  if [ ! -d "$demo/teacher" ]; then "$distill" demo --smoke -o "$demo" > "$work/demo.log" 2>&1; fi
  teacher=$demo/teacher start=$demo/student-ce held=$demo/data/heldout_tasks.jsonl seq_len=160
  head -n "$prompts" "$demo/data/train_tasks.jsonl" > "$work/prompts.jsonl"
fi
# The radioactivity test samples from held-out prompts (text lines).
jq -r '.prompt | gsub("[\r\n]"; " ")' "$held" > "$work/heldout_prompts.txt"
printf 'the owner keeps this secret\n' > "$work/key"

port=$((20000 + RANDOM % 20000))
for kind in marked plain; do
  # labels are reused when a finished set was made with the same settings
  stamp="$teacher $prompts $temperature $delta $kind"
  if [ "$(cat "$work/labels-$kind.settings" 2> /dev/null)" != "$stamp" ] || [ ! -f "$work/labels-$kind/manifest.json" ]; then
    flags=""
    [ $kind = marked ] && flags="--watermark-all --watermark-key-file $work/key --watermark-delta $delta"
    "$distill" serve "$teacher" --port $port --parallel 8 $flags > "$work/serve-$kind.log" 2>&1 &
    server=$!
    for _ in $(seq 100); do curl -sf "http://127.0.0.1:$port/health" > /dev/null && break; sleep 0.1; done
    rm -rf "$work/labels-$kind"
    "$distill" label --teacher "http://127.0.0.1:$port/v1" --prompts "$work/prompts.jsonl" --tokenizer "$teacher" \
      --completions-api --temperature "$temperature" --max-tokens 64 --top-k 5 --concurrency 8 --seed 1 \
      -o "$work/labels-$kind" > "$work/label-$kind.log" 2>&1
    kill $server; wait $server 2> /dev/null || true
    echo "$stamp" > "$work/labels-$kind.settings"
  fi
  rm -rf "$work/student-$kind"
  "$distill" train --student "$start" --data "$work/labels-$kind" -o "$work/student-$kind" \
    --steps "$steps" --batch 16 --seq-len "$seq_len" --lr 0.001 --seed 2 --kd-alpha "$kd_alpha" > "$work/train-$kind.log" 2>&1
done

echo "| student trained on | contexts | green mass | z | p-value | verdict |"
echo "| --- | --- | --- | --- | --- | --- |"
for kind in marked plain; do
  "$distill" provenance test "$work/student-$kind" --key-file "$work/key" --prompts "$work/heldout_prompts.txt" \
    --samples 256 --tokens 64 --json > "$work/provenance-$kind.json"
  jq -r --arg k "$kind" '"| \($k) answers | \(.contexts) | \(.green_mass * 1000 | round / 10)% | \(.z * 100 | round / 100) | \(.p_value) | \(.verdict) |"' \
    "$work/provenance-$kind.json"
done
echo
if [ $text = 1 ]; then
  echo "held-out cross-entropy of the students on real continuations (the watermark's cost to what they learned):"
  for kind in marked plain; do
    printf '  %s: ' "$kind"
    "$distill" eval "$work/student-$kind" --text "$held" --seq-len 256 --no-speed --json 2>/dev/null | jq -r '.text.loss'
  done
else
  echo "held-out accuracy of the students (the watermark's cost to what they learned):"
  for kind in marked plain; do
    printf '  %s: ' "$kind"
    "$distill" eval "$work/student-$kind" --tasks "$held" --max-new-tokens 64 --json 2>/dev/null | jq -r '.tasks.accuracy // .accuracy // .'
  done
fi
