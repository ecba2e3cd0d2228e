#!/usr/bin/env bash
# Runs every libFuzzer target for SECONDS each, from its committed seed corpus (fuzz/corpus/T)
# into a working corpus in the build directory, and prints per target: executions, corpus size
# (seeds -> now) and findings. A finding leaves its input in BUILD/fuzz-findings/ and the run
# exits 1; once fixed, it goes to fuzz/regressions/T (replayed by every run) and gets a ctest.
#   fuzz/run.sh BUILD_DIR SECONDS
# FUZZ_RUNS=N instead: N executions per target from seed 1 — deterministic, for CI's smoke run.
# FUZZ_TARGETS="a b": only those targets (all built ones by default).
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
build=${1:?usage: fuzz/run.sh BUILD_DIR SECONDS}
seconds=${2:-60}
findings=$build/fuzz-findings
mkdir -p "$findings"
status=0
printf '%-16s %12s %10s %10s %9s\n' target executions seeds corpus findings
total_runs=0 total_new=0 passed=0 failed=0
for bin in "$build"/fuzz_*; do
  t=${bin##*/fuzz_}
  if [ -n "${FUZZ_TARGETS:-}" ] && [[ " $FUZZ_TARGETS " != *" $t "* ]]; then continue; fi
  work=$build/fuzz-corpus/$t
  mkdir -p "$work"
  seeds=$(ls "$root/fuzz/corpus/$t" 2>/dev/null | wc -l)
  before=$(ls "$work" | wc -l)
  dict=()
  case $t in tokenizer_json|chat_template|config_json|jsonl_dataset|openai_request) dict=(-dict="$root/fuzz/json.dict") ;; esac
  log=$build/fuzz-$t.log
  # detect_leaks=0: a refused input may leave a cached object behind by design (e.g. static buffers)
  ASAN_OPTIONS=detect_leaks=0:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
    "$bin" $([ -n "${FUZZ_RUNS:-}" ] && echo "-runs=$FUZZ_RUNS -seed=1" || echo "-max_total_time=$seconds") -timeout=10 -rss_limit_mb=2048 -max_len=65536 -print_final_stats=1 \
    -artifact_prefix="$findings/$t-" "${dict[@]}" "$work" "$root/fuzz/corpus/$t" $(ls -d "$root/fuzz/regressions/$t" 2>/dev/null) > "$log" 2>&1
  rc=$?
  runs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' | tail -1)
  after=$(ls "$work" | wc -l)
  found=$(ls "$findings" | grep -c "^$t-" || true)
  printf '%-16s %12s %10s %10s %9s\n' "$t" "${runs:-?}" "$seeds" "$after" "$found"
  total_runs=$((total_runs + ${runs:-0})); total_new=$((total_new + after - before))
  if [ $rc -ne 0 ] || [ "$found" != 0 ]; then
    status=1 failed=$((failed + 1))
    echo "  finding: see $log" >&2
    tail -30 "$log" >&2
  else
    passed=$((passed + 1))
  fi
done
echo "total: $total_runs executions, $total_new new corpus inputs this run"
echo "fuzz: $passed passed, $failed failed"
exit $status
