#!/usr/bin/env bash
# R1-Zero on the demo's task: reinforcement from a student that was never shown a worked solution.
#
# The base student (the demo's student shape, random init) learns only the answer's form from as
# many problems as the demo's CE student has worked solutions for: the prompt ends with "<think>",
# the completion is "</think> #### 14" — nothing inside the think block. GRPO then rewards the right
# final answer and a closed think block (answer:1, format:0.2), and measures, without rewarding
# them (weight 0), how many completions write an "a op b = c" step and how many of those steps are
# right. Does reasoning emerge inside <think>, and does accuracy follow?
#
#   DEMO_DIR      a `distill demo` directory (its data/, tokenizer/ and student-ce/ config)
#   --steps N     GRPO steps (default 1000)
#   --seeds N     seeds (default 1): each trains its own base student and runs its own GRPO
#   --sft-steps N steps of the answer-only training (default 3000, the demo's student steps)
#   --equations N also N lines of unrelated arithmetic ("37 + 45 = 82. 90 - 12 = 78. …") in that
#                 training, shuffled in: a base that can write right steps, but was never shown
#                 one used to solve a problem (default 0)
#   -- ARGS       the GRPO options instead of the defaults (--lr 5e-5 --epochs 2 --clip 0.2,0.28)
#
# usage: bench/r1_zero.sh DEMO_DIR [--steps 1000] [--seeds 1] [--sft-steps 3000] [-- rl args]
# Prints the per-seed curve (held-out accuracy, share of completions with steps, right steps,
# completion length) and a summary table. Runs use both cores (-t 2), one after the other.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
distill=${DISTILL:-$root/build/distill}
[ $# -ge 1 ] || { echo "usage: $0 DEMO_DIR [--steps N] [--seeds N] [--sft-steps N] [-- rl args]" >&2; exit 2; }
demo=$(cd "$1" && pwd); shift
steps=1000 seeds=1 sft_steps=3000 equations=0 rl_args=(--lr 5e-5 --epochs 2 --clip 0.2,0.28)
while [ $# -gt 0 ]; do
  case $1 in
    --steps) steps=$2; shift 2 ;;
    --seeds) seeds=$2; shift 2 ;;
    --sft-steps) sft_steps=$2; shift 2 ;;
    --equations) equations=$2; shift 2 ;;
    --) shift; rl_args=("$@"); break ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done
for f in data/train_tasks.jsonl data/heldout_tasks.jsonl data/train_ground_truth.jsonl tokenizer/tokenizer.json student-ce/config.json; do
  [ -f "$demo/$f" ] || { echo "$demo/$f is missing: run distill demo -o $demo first" >&2; exit 1; }
done
work=$demo/r1-zero
[ "$equations" -gt 0 ] && work=$demo/r1-zero-eq$equations
mkdir -p "$work"
uptime >&2
# The answer-only data (as many problems as the CE student's worked solutions), the RL tasks and
# the held-out tasks, each prompt ending in "<think>".
python3 - "$demo" "$work" "$equations" <<'EOF'
import json, random, sys
demo, work, n_eq = sys.argv[1], sys.argv[2], int(sys.argv[3])
n_sft = sum(1 for _ in open(f"{demo}/data/train_ground_truth.jsonl"))
tasks = [json.loads(l) for l in open(f"{demo}/data/train_tasks.jsonl")]
rng = random.Random(5)
def equation():
    a = rng.randint(10, 150)
    op = rng.choice("+-*")
    b = rng.randint(5, 49) if op == "+" else rng.randint(1, a - 1) if op == "-" else 2
    return f"{a} {op} {b} = {a + b if op == '+' else a - b if op == '-' else a * b}."
sft_lines = [json.dumps({"text": " ".join(equation() for _ in range(3))}) for _ in range(n_eq)]
with open(f"{work}/tasks.jsonl", "w") as rl:
    for i, t in enumerate(tasks):
        p = t["prompt"] + " <think>"
        if i < n_sft:
            sft_lines.append(json.dumps({"prompt": p, "completion": "</think> #### " + t["answer"]}))
        rl.write(json.dumps({"prompt": p, "answer": t["answer"]}) + "\n")
rng.shuffle(sft_lines)
with open(f"{work}/sft.jsonl", "w") as sft:
    sft.write("\n".join(sft_lines) + "\n")
with open(f"{work}/heldout.jsonl", "w") as h:
    for l in open(f"{demo}/data/heldout_tasks.jsonl"):
        t = json.loads(l)
        h.write(json.dumps({"prompt": t["prompt"] + " <think>", "answer": t["answer"]}) + "\n")
EOF
reward='answer:1,format:0.2,regex:[0-9]+ [-+*] [0-9]+ = [0-9]+:0,steps:0'
accuracy() {  # greedy held-out accuracy of a model directory, as a fraction
  "$distill" eval "$1" --tasks "$work/heldout.jsonl" --reward answer --max-new-tokens 64 --no-speed --json |
    python3 -c 'import json,sys; t=sys.stdin.read(); print(json.loads(t[t.index("{"):])["tasks"]["accuracy"])'
}
for s in $(seq 1 "$seeds"); do
  "$distill" init --config "$demo/student-ce/config.json" --tokenizer "$demo/tokenizer" --seed "$s" -o "$work/base-s$s" > /dev/null
  "$distill" train --student "$work/base-s$s" --data "$work/sft.jsonl" --steps "$sft_steps" --batch 16 --seq-len 96 \
    --lr 2e-3 --warmup $((sft_steps / 20)) --seed "$s" -o "$work/sft-s$s" > "$work/sft-s$s.log" 2>&1
  "$distill" rl --model "$work/sft-s$s" --tasks "$work/tasks.jsonl" --eval "$work/heldout.jsonl" --eval-every $((steps / 10)) \
    --reward "$reward" --group 8 --prompts-per-step 16 --max-new-tokens 64 --micro-batch 32 --steps "$steps" --seed "$s" \
    "${rl_args[@]}" -o "$work/rl-s$s" > "$work/rl-s$s.log" 2>&1
  echo "$s $(accuracy "$work/sft-s$s") $(accuracy "$work/rl-s$s")" >> "$work/results.txt.tmp"
done
mv "$work/results.txt.tmp" "$work/results.txt"
python3 - "$work" "$seeds" "$steps" <<'EOF'
import json, statistics as st, sys
work, seeds, steps = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rows = [l.split() for l in open(f"{work}/results.txt") if l.strip()]
for s in range(1, seeds + 1):
    print(f"\nseed {s}: GRPO from the answer-only student (rollouts at T = 1; held-out greedy)\n")
    print("| step | held-out accuracy | rollouts right | with a step shown | steps right | format | completion tokens |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    ms = [json.loads(l) for l in open(f"{work}/rl-s{s}/metrics.jsonl")]
    for m in ms:
        if "eval_accuracy" in m or m["step"] == 1:
            w = [x for x in ms if m["step"] - 10 < x["step"] <= m["step"]]  # the last 10 steps' rollouts
            avg = lambda k: sum(x[k] for x in w) / len(w)
            held = f'{100*m["eval_accuracy"]:.1f} %' if "eval_accuracy" in m else "–"
            print(f'| {m["step"]} | {held} | {100*avg("accuracy"):.1f} % | {100*avg("reward_regex"):.1f} % | '
                  f'{100*avg("reward_steps"):.1f} % | {100*avg("reward_format"):.1f} % | {avg("completion_len"):.1f} |')
sft = [float(r[1]) for r in rows]; rl = [float(r[2]) for r in rows]
sd = lambda v: st.stdev(v) if len(v) > 1 else 0.0
print(f"\n| student | seeds | held-out accuracy (mean ± sd) |\n| --- | --- | --- |")
print(f"| answer-only SFT (no worked solution seen) | {len(sft)} | {100*st.mean(sft):.1f} ± {100*sd(sft):.1f} % |")
print(f"| + GRPO {steps} steps (answer + format) | {len(rl)} | {100*st.mean(rl):.1f} ± {100*sd(rl):.1f} % |")
EOF
