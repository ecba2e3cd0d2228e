#!/usr/bin/env bash
# GRPO against on-policy distillation from the same start, over seeds: held-out exact-answer
# accuracy (greedy) of the start, after GRPO and after on-policy distillation (GKD) from the
# teacher, as mean ± sd, with each run's wall time.
#
#   DEMO_DIR   a `distill demo` directory (its data/, labels/, teacher/ and students)
#   --start M  the student both methods start from (default student-ce: see below)
#   --seeds N  seeds of the GRPO sampling and of the GKD data order (default 3)
#   --steps N  GRPO steps (default 1000)
#   --gkd-steps N  on-policy distillation steps (default 1000)
#   --gkd-lr X     on-policy distillation's constant learning rate (default 2e-4)
#   -- ARGS    the GRPO options instead of the defaults (--lr 5e-5 --epochs 2 --clip 0.2,0.28 --reward worked)
#
# usage: bench/grpo_seeds.sh DEMO_DIR [--start M] [--seeds 3] [--steps 1000] [--gkd-steps 1000] [-- rl args]
# Two runs at a time, one thread each (two cores). Prints a markdown table.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
distill=${DISTILL:-$root/build/distill}
[ $# -ge 1 ] || { echo "usage: $0 DEMO_DIR [--start M] [--seeds N] [--steps N] [--gkd-steps N] [-- rl args]" >&2; exit 2; }
demo=$(cd "$1" && pwd); shift
start=student-ce seeds=3 steps=1000 gkd_steps=1000 gkd_lr=2e-4 rl_args=(--lr 5e-5 --epochs 2 --clip 0.2,0.28 --reward worked)
while [ $# -gt 0 ]; do
  case $1 in
    --start) start=$2; shift 2 ;;
    --seeds) seeds=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --gkd-steps) gkd_steps=$2; shift 2 ;;
    --gkd-lr) gkd_lr=$2; shift 2 ;;
    --) shift; rl_args=("$@"); break ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
for f in data/train_tasks.jsonl data/heldout_tasks.jsonl labels/manifest.json teacher/config.json "$start/config.json"; do
  [ -f "$demo/$f" ] || { echo "$demo/$f is missing: run distill demo -o $demo first" >&2; exit 1; }
done
work=$demo/grpo-seeds
mkdir -p "$work"
uptime >&2
accuracy() {  # greedy held-out accuracy of a model directory, as a fraction
  "$distill" eval "$1" --tasks "$demo/data/heldout_tasks.jsonl" --reward answer --max-new-tokens 64 --no-speed --json |
    python3 -c 'import json,sys; t=sys.stdin.read(); print(json.loads(t[t.index("{"):])["tasks"]["accuracy"])'
}
timed() {  # timed NAME CMD...: runs CMD, logs to NAME.log, writes NAME.seconds
  local name=$1; shift
  local t0; t0=$(date +%s.%N)
  "$@" > "$work/$name.log" 2>&1
  echo "$(date +%s.%N) - $t0" | bc > "$work/$name.seconds"
}
for s in $(seq 1 "$seeds"); do
  timed "rl-s$s" "$distill" -t 1 rl --model "$demo/$start" --tasks "$demo/data/train_tasks.jsonl" \
    --eval "$demo/data/heldout_tasks.jsonl" --eval-every $((steps / 6)) --group 8 --prompts-per-step 16 \
    --max-new-tokens 64 --micro-batch 32 --steps "$steps" --seed "$s" "${rl_args[@]}" \
    -o "$work/rl-s$s" &
  timed "gkd-s$s" "$distill" -t 1 train --student "$demo/$start" --data "$demo/labels" --teacher "$demo/teacher" \
    --on-policy 1 --kd-alpha 1 --steps "$gkd_steps" --batch 16 --seq-len 96 --lr "$gkd_lr" --schedule constant --warmup 0 \
    --weight-decay 0 --seed "$s" -o "$work/gkd-s$s" &
  wait
done
base=$(accuracy "$demo/$start")
{
  echo "start $start: held-out accuracy $base"
  for m in rl gkd; do
    for s in $(seq 1 "$seeds"); do echo "$m $s $(accuracy "$work/$m-s$s") $(cat "$work/$m-s$s.seconds")"; done
  done
} > "$work/results.txt"
python3 - "$work/results.txt" "$start" "$steps" "$gkd_steps" <<'EOF'
import statistics as st, sys
lines = open(sys.argv[1]).read().split("\n")
base = float(lines[0].split()[-1])
rows = {}
for l in lines[1:]:
    if l.strip():
        m, s, acc, sec = l.split()
        rows.setdefault(m, []).append((float(acc), float(sec)))
print(f"| from {sys.argv[2]} ({100*base:.1f} %) | seeds | held-out accuracy (mean ± sd) | lift | wall time per run (1 thread) |")
print("| --- | --- | --- | --- | --- |")
for m, label in (("rl", f"GRPO, {sys.argv[3]} steps"), ("gkd", f"on-policy KD, {sys.argv[4]} steps")):
    acc = [a for a, _ in rows[m]]
    sd = st.stdev(acc) if len(acc) > 1 else 0.0
    print(f"| {label} | {len(acc)} | {100*st.mean(acc):.1f} ± {100*sd:.1f} % | {100*(st.mean(acc)-base):+.1f} | "
          f"{st.mean(s for _, s in rows[m]):.0f} s |")
EOF
