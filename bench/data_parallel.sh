#!/usr/bin/env bash
# Data-parallel training on this machine: one process with all the threads against N ranks of
# mpirun with threads / N each, the same global batch, model and data; prints tokens/s of each and
# the gradient bytes every rank exchanges per step (an all-reduce of the f32 gradient), with the
# layers' sums overlapping the backward and without.
#
# usage: bench/data_parallel.sh [--preset 15m] [--steps 20] [--batch 8] [--seq-len 256] [--ranks 2]
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
distill=${DISTILL:-$root/build/distill}
preset=15m steps=20 batch=8 seq=256 ranks=2
while [ $# -gt 0 ]; do
  case $1 in
    --preset) preset=$2; shift 2 ;;
    --steps) steps=$2; shift 2 ;;
    --batch) batch=$2; shift 2 ;;
    --seq-len) seq=$2; shift 2 ;;
    --ranks) ranks=$2; shift 2 ;;
    *) echo "usage: $0 [--preset 15m] [--steps N] [--batch N] [--seq-len N] [--ranks N]" >&2; exit 2 ;;
  esac
done
command -v mpirun > /dev/null || { echo "mpirun is not installed (apt-get install openmpi-bin libopenmpi-dev)"; exit 1; }
threads=$(nproc)
work=$(mktemp -d /tmp/distill-dp-XXXXXX)
trap 'rm -rf "$work"' EXIT
"$distill" init --preset "$preset" --tokenizer bytes --seed 1 -o "$work/student" > /dev/null 2>&1
# Text: the C headers of this machine, as (prompt, completion) pairs of bytes. (`head` closes the
# pipe early on purpose: not a failure.)
set +o pipefail
find /usr/include -name '*.h' | head -400 | xargs cat 2> /dev/null | head -c 4000000 |
  jq -R -s -c 'split("\n\n")[] | select(length > 200) | {prompt: .[0:64], completion: .[64:224]}' > "$work/data.jsonl"
set -o pipefail
args="train --student $work/student --data $work/data.jsonl --steps $steps --batch $batch --seq-len $seq --eval-fraction 0 --save-every 0 --seed 1"
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
uptime
one=$("$distill" -t "$threads" $args -o "$work/one" 2>&1 | grep -o '([0-9.]* tokens/s)' | tr -dc '0-9.')
rank_threads=$((threads / ranks > 0 ? threads / ranks : 1))
rate() { grep -o '([0-9.]* tokens/s)' | tr -dc '0-9.'; }
best() { awk -v a="$1" -v b="$2" 'BEGIN { print (a > b ? a : b) }'; }
# the layers' gradient sums started during the backward (default) and one sum after it, alternating
# twice, the better of each
many=0 after=0
for round in 1 2; do
  many=$(best "$many" "$(mpirun -np "$ranks" "$distill" -t $rank_threads $args -o "$work/many" 2>&1 | rate)")
  after=$(best "$after" "$(mpirun -np "$ranks" "$distill" -t $rank_threads $args --no-overlap-comm -o "$work/after" 2>&1 | rate)")
done
params=$(jq -r '[.hidden_size, .num_hidden_layers] | @tsv' "$work/student/config.json" > /dev/null; "$distill" info "$work/student" | grep -o 'parameters *[0-9.]* M' | grep -o '[0-9.]*')
echo
echo "| setup | tokens/s |"
echo "| --- | --- |"
echo "| 1 process × $threads threads | $one |"
echo "| $ranks ranks × $rank_threads threads (mpirun), gradient sums during the backward | $many |"
echo "| $ranks ranks × $rank_threads threads (mpirun), one gradient sum after the backward (--no-overlap-comm) | $after |"
echo
awk -v p="$params" -v n="$ranks" 'BEGIN { b = p * 1e6 * 4; printf "gradient all-reduce per step: %.1f MB of f32 gradients per rank (a ring all-reduce sends and receives about 2 × (N-1)/N of it: %.1f MB)\n", b / 1e6, 2 * (n - 1) / n * b / 1e6 }'
