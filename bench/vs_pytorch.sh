#!/usr/bin/env bash
# distill against PyTorch, side by side: one full training step (forward, cross-entropy, backward,
# AdamW) on the same model shapes, the same thread count, in the same run, engines alternating.
# No figure is copied from anywhere: every number is measured here, now.
#
#   bench/vs_pytorch.sh [-r ROUNDS] [-s STEPS] [-t THREADS]
#
# The peer is ../shared/peers/torch_train_bench.py on Debian's python3-torch (apt-get install
# python3-torch); distill's side is build/bench_train with the same shapes (stories15m: Llama 15M,
# batch 8 × 256; gqa30m: 8 layers of 512, 4 KV heads, batch 4 × 512). Best of ROUNDS turns each.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bench=${BENCH_TRAIN:-$root/build/bench_train}
peer=${PEER_TORCH:-$root/../shared/peers/torch_train_bench.py}
python=${PYTHON:-/usr/bin/python3}
rounds=2 steps=5 threads=2
while [ $# -gt 0 ]; do
  case $1 in
    -r) rounds=$2; shift ;;
    -s) steps=$2; shift ;;
    -t) threads=$2; shift ;;
    *) echo "vs_pytorch: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
[ -x "$bench" ] || { echo "vs_pytorch: $bench not built (make build)" >&2; exit 2; }
[ -f "$peer" ] || { echo "vs_pytorch: no PyTorch peer at $peer" >&2; exit 2; }
"$python" -c 'import torch' 2>/dev/null || { echo "vs_pytorch: $python has no torch (apt-get install python3-torch)" >&2; exit 2; }
command -v jq >/dev/null || { echo "vs_pytorch: needs jq" >&2; exit 2; }

load=$(cut -d' ' -f1 /proc/loadavg)
echo "# distill vs PyTorch $("$python" -c 'import torch; print(torch.__version__)') — training step, $(date -u '+%Y-%m-%d %H:%M UTC'), load average $load before the run"
echo "# CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ *//'), $threads threads, $steps timed steps per turn, best of $rounds turns"
echo
printf '| %-10s | %-7s | %14s | %14s | %13s |\n' shape batch "PyTorch tok/s" "distill tok/s" "distill÷torch"
printf '| %s | %s | %s | %s | %s |\n' ---------- ------- -------------- -------------- -------------
for config in stories15m gqa30m; do
  best_ours=0 best_torch=0 batch=
  for _ in $(seq "$rounds"); do
    t=$("$python" "$peer" --config "$config" --threads "$threads" --steps "$steps" | tail -1)
    o=$("$bench" --only "$config" --threads "$threads" --steps "$steps" --json | tail -1)
    best_torch=$(jq -n --argjson a "$best_torch" --argjson b "$(jq .tokens_per_s <<<"$t")" '[$a, $b] | max')
    best_ours=$(jq -n --argjson a "$best_ours" --argjson b "$(jq .tokens_per_s <<<"$o")" '[$a, $b] | max')
    batch="$(jq -r '"\(.batch)x\(.seq)"' <<<"$o")"
  done
  printf '| %-10s | %-7s | %14.0f | %14.0f | %12.2f× |\n' "$config" "$batch" "$best_torch" "$best_ours" \
    "$(jq -n --argjson a "$best_ours" --argjson b "$best_torch" '$a / $b')"
done
