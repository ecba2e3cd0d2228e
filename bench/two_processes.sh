#!/usr/bin/env bash
# Two decodes sharing the machine (issue 15, item 7): tg t/s of one `bench` alone and of two started
# together, each with every core (-t N) and each with half of them (-t N/2), for distill and — when
# the llama.cpp peer is there — for llama-bench on the same file, alternating, in one run.
#
#   two at once ÷ alone: what each of the two gets (0.5 is a fair half of a machine; a parallel
#   region that waits for a descheduled thread gives far less)
#
# usage: bench/two_processes.sh MODEL.gguf [-n 128] [-r 3] [-t N]     (prints a markdown table)
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
distill=${DISTILL:-$root/build/distill}
peer=${PEER:-$root/../shared/peers/llama.cpp/peer}
[ $# -ge 1 ] || { echo "usage: $0 MODEL.gguf [-n 128] [-r 3] [-t N]" >&2; exit 2; }
model=$1; shift
tg=128 reps=3 threads=$(nproc)
while [ $# -gt 0 ]; do
  case $1 in
    -n) tg=$2; shift 2 ;;
    -r) reps=$2; shift 2 ;;
    -t) threads=$2; shift 2 ;;
    *) echo "usage: $0 MODEL.gguf [-n 128] [-r 3] [-t N]" >&2; exit 2 ;;
  esac
done
[ -f "$model" ] || { echo "two_processes: no file $model" >&2; exit 2; }
half=$(( threads / 2 > 0 ? threads / 2 : 1 ))
uptime >&2

tg_rate() { awk -F'|' '/tg[0-9]+/ { split($(NF-1), a, "±"); gsub(/ /, "", a[1]); print a[1] }'; }
bench_cmd() {  # engine, threads
  if [ "$1" = distill ]; then "$distill" bench "$model" -p 0 -n "$tg" -r "$reps" -t "$2" 2>/dev/null
  else "$peer" llama-bench -m "$model" -p 0 -n "$tg" -r "$reps" -t "$2" 2>/dev/null; fi
}
alone() { bench_cmd "$1" "$2" | tg_rate; }
together() {  # both rates, "a / b"
  local a b
  a=$(mktemp) b=$(mktemp)
  bench_cmd "$1" "$2" | tg_rate > "$a" &
  bench_cmd "$1" "$2" | tg_rate > "$b" &
  wait
  echo "$(cat "$a") $(cat "$b")"
  rm -f "$a" "$b"
}

engines=(distill)
[ -x "$peer" ] && engines+=(llama.cpp) || echo "two_processes: no llama.cpp peer at $peer; distill only" >&2
printf '\n| %-9s | %-10s | %10s | %-19s | %-19s |\n' engine threads alone "two at once (t/s)" "each ÷ alone"
printf '| %s | %s | %s | %s | %s |\n' --------- ---------- ---------- ------------------- -------------------
for engine in "${engines[@]}"; do
  for t in "$threads" "$half"; do
    one=$(alone "$engine" "$t")
    read -r a b < <(together "$engine" "$t")
    awk -v e="$engine" -v t="$t" -v one="$one" -v a="$a" -v b="$b" 'BEGIN {
      printf "| %-9s | %-10s | %10.1f | %8.1f / %8.1f | %7.2f / %7.2f   |\n", e, "-t " t " each", one, a, b, a / one, b / one }'
    [ "$t" = "$half" ] && break || true
  done
done
