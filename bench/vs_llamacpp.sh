#!/usr/bin/env bash
# distill against llama.cpp, side by side: the same GGUF files, the same run, alternating engines,
# llama-bench's pp/tg tests on both sides. Prints one table with the ratios, the CPU, the ISA of
# each side and the measured read bandwidth. No figure is copied from anywhere: every number is
# measured here, now.
#
#   bench/vs_llamacpp.sh [--quick] [--big] [--moe] [-r N] [-p N] [-n N] [-d DEPTH]
#     --quick   15M and 134M models only, 2 repetitions
#     --big     also the Qwen2 shape of DeepSeek-R1-Distill-Qwen-1.5B (random weights; ~12 GB of
#               temporary files, several minutes)
#     --moe     also a GPT-OSS-20b shape cut to MOE_LAYERS layers (default 8 of 24: hidden 2880, 64
#               heads / 8 KV, 32 experts of width 2880 of which 4 active, window 128 on alternate
#               layers, YaRN, vocabulary 201 088; MXFP4 experts, the rest q8_0; ~4.9 GB, ~7 minutes
#               to write)
#     -d N      prefill and decode after N tokens of context (llama-bench's -d; KV caches in f16 on both sides)
#     --only RE     only the files whose name matches the (grep -E) pattern RE, e.g. --only '134m-q4_k_m'
#     --turns N     alternations per file (default 2; the best mean of the turns counts)
#   DISTILL_ISA=avx2 PEER_ISA=avx2 bench/vs_llamacpp.sh   compares AVX2 kernels with AVX2 kernels
#   BENCH_DIR=...   where the model files are kept between runs (default: $TMPDIR/distill-vs-llamacpp)
#
# Models: random weights over a byte-level vocabulary padded to the real size (distill init
# --tokenizer bytes --vocab N), written by `distill convert --type f32|q8_0|q4_0|q4_k_m` (Q4_K_M
# with the same tensor types as llama-quantize gives it: the K-quant mix people download).
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
distill=${DISTILL:-$root/build/distill}
peer=${PEER:-$root/../shared/peers/llama.cpp/peer}
dir=${BENCH_DIR:-${TMPDIR:-/tmp}/distill-vs-llamacpp}
reps=3 pp=512 tg=128 depth=0 big=0 quick=0 moe=0 moe_layers=${MOE_LAYERS:-8} only= turns=2
while [ $# -gt 0 ]; do
  case $1 in
    --quick) quick=1; reps=2 ;;
    --big) big=1 ;;
    --moe) moe=1 ;;
    -r) reps=$2; shift ;;
    -p) pp=$2; shift ;;
    -n) tg=$2; shift ;;
    -d) depth=$2; shift ;;
    --only) only=$2; shift ;;
    --turns) turns=$2; shift ;;
    *) echo "vs_llamacpp: unknown option $1" >&2; exit 2 ;;
  esac
  shift
done
[ -x "$distill" ] || { echo "vs_llamacpp: $distill not built (make build)" >&2; exit 2; }
[ -x "$peer" ] || { echo "vs_llamacpp: no llama.cpp peer at $peer" >&2; exit 2; }
mkdir -p "$dir"

# ---- models (kept between runs)
make_dir() {  # name, then distill init options
  local name=$1; shift
  [ -f "$dir/$name/config.json" ] || "$distill" init "$@" --tokenizer bytes -o "$dir/$name" >&2
}
wanted() { [ -z "$only" ] || basename "$1" | grep -qE -- "$only"; }  # a file --only keeps
add_gguf() {  # model dir name, type: a file --only keeps joins the run, written unless an earlier run left it
  local f="$dir/$1-$2.gguf"
  wanted "$f" || return 0
  [ -f "$f" ] || "$distill" convert "$dir/$1" -o "$f" --type "$2" >&2
  files+=("$f")
}
files=()
make_dir llama-15m --preset 15m --vocab 32000
make_dir llama-134m --preset 110m --vocab 32000
add_gguf llama-15m f32; add_gguf llama-134m f32; add_gguf llama-134m q8_0; add_gguf llama-134m q4_0
[ $quick = 1 ] || add_gguf llama-134m q4_k_m
qwen_wanted=0
for t in q8_0 q4_0 q4_k_m; do wanted "$dir/qwen2-1.5b-$t.gguf" && qwen_wanted=1; done
if [ $big = 1 ] && [ $qwen_wanted = 1 ]; then
  cat > "$dir/qwen2-1.5b.json" <<'EOF'
{"model_type": "qwen2", "hidden_size": 1536, "num_hidden_layers": 28, "num_attention_heads": 12,
 "num_key_value_heads": 2, "intermediate_size": 8960, "vocab_size": 151936, "tie_word_embeddings": true,
 "rms_norm_eps": 1e-6, "rope_theta": 10000.0, "max_position_embeddings": 4096}
EOF
  make_dir qwen2-1.5b --config "$dir/qwen2-1.5b.json" --vocab 151936 --dtype f16
  for t in q8_0 q4_0 q4_k_m; do add_gguf qwen2-1.5b $t; done
fi
moe_file="$dir/gpt-oss-${moe_layers}l-mxfp4.gguf"
if [ $moe = 1 ] && wanted "$moe_file"; then
  cat > "$dir/gpt-oss.json" <<EOF
{"model_type": "gpt_oss", "vocab_size": 201088, "hidden_size": 2880, "intermediate_size": 2880,
 "num_hidden_layers": $moe_layers, "num_attention_heads": 64, "num_key_value_heads": 8, "head_dim": 64,
 "num_local_experts": 32, "num_experts_per_tok": 4, "sliding_window": 128, "tie_word_embeddings": false,
 "max_position_embeddings": 131072, "rms_norm_eps": 1e-5, "rope_theta": 150000.0,
 "rope_scaling": {"rope_type": "yarn", "factor": 32.0, "beta_fast": 32.0, "beta_slow": 1.0, "truncate": true,
                  "original_max_position_embeddings": 4096}}
EOF
  [ -f "$moe_file" ] || "$distill" init --config "$dir/gpt-oss.json" --arch gpt_oss --tokenizer bytes --vocab 201088 \
    --dtype q8_0 --expert-type mxfp4 -o "$moe_file" >&2
  files+=("$moe_file")
fi

[ ${#files[@]} -gt 0 ] || { echo "vs_llamacpp: no model file matches --only '$only' (add --big / --moe for those)" >&2; exit 2; }

# ---- the machine: let the load of making the models settle (up to 3 minutes)
for _ in $(seq 36); do
  awk '{ exit !($1 > 0.5) }' /proc/loadavg || break
  sleep 5
done
load=$(cut -d' ' -f1 /proc/loadavg)
echo "# distill vs llama.cpp — $(date -u '+%Y-%m-%d %H:%M UTC'), load average $load before the run"
sysinfo=$("$distill" -t 2 info --system --bandwidth)
sed 's/^/# /' <<< "$sysinfo"
# the machine's memory speed can move by ±10 % within minutes: each row's shares are of the
# bandwidth measured again just before it (the header's figure is the first)
read_bw() { "$distill" -t 2 info --system --bandwidth | awk '/read bw/ { print $3 }'; }
echo "# llama.cpp build: ${PEER_ISA:-$(grep -qw avx512_vnni /proc/cpuinfo && echo avx512 || echo avx2)} (PEER_ISA); distill kernels: ${DISTILL_ISA:-best} (DISTILL_ISA)"
echo "# each engine runs pp$pp and tg$tg, $reps repetitions, 2 threads, alternately, $turns times; the best mean of the turns counts"
awk -v l="$load" 'BEGIN { if (l > 0.5) print "# warning: the machine was not quiet (load " l "): ratios are unreliable" }'

# t/s of each test from a markdown table (llama-bench and distill bench print the same shape).
rates() { awk -F'|' '/^\|.*(pp|tg)[0-9]+/ { gsub(/ /, "", $(NF-2)); split($(NF-1), a, "±"); gsub(/ /, "", a[1]); print $(NF-2), a[1] }'; }

printf '\n| %-24s | %-12s | %14s | %14s | %8s | %-30s |\n' "model file" "test" "llama.cpp t/s" "distill t/s" "distill÷l.cpp" "decode GB/s l.cpp / distill (of bw)"
printf '| %s | %s | %s | %s | %s | %s |\n' "------------------------" "------------" "--------------" "--------------" "--------" "------------------------------"
for f in "${files[@]}"; do
  bw=$(read_bw)
  declare -A best_l=() best_d=()
  for turn in $(seq "$turns"); do
    while read -r test r; do
      awk -v a="$r" -v b="${best_l[$test]:-0}" 'BEGIN { exit !(a > b) }' && best_l[$test]=$r
    done < <("$peer" llama-bench -m "$f" -p "$pp" -n "$tg" -d "$depth" -t 2 -r "$reps" 2>/dev/null | rates)
    out=$("$distill" bench "$f" -p "$pp" -n "$tg" -d "$depth" -t 2 -r "$reps")
    while read -r test r; do
      awk -v a="$r" -v b="${best_d[$test]:-0}" 'BEGIN { exit !(a > b) }' && best_d[$test]=$r
    done < <(rates <<< "$out")
  done
  # the weight bytes a decoded token reads (distill bench counts them: a mixture's active experts only)
  mb=$(awk '/^decode reads/ { print $3 }' <<< "$out")
  at=; [ "$depth" = 0 ] || at="@d$depth"
  for test in "pp$pp$at" "tg$tg$at"; do
    l=${best_l[$test]:-0} d=${best_d[$test]:-0}
    awk -v f="$(basename "$f")" -v t="$test" -v l="$l" -v d="$d" -v mb="${mb:-0}" -v bw="${bw:-0}" 'BEGIN {
      gbs = ""
      if (t ~ /^tg/ && mb > 0) {
        gbs = sprintf("%.1f / %.1f", l * mb / 1e3, d * mb / 1e3)
        if (bw > 0) gbs = gbs sprintf(" (%.0f %% / %.0f %% of %.1f)", 100 * l * mb / 1e3 / bw, 100 * d * mb / 1e3 / bw, bw)
      }
      printf "| %-24s | %-12s | %14.1f | %14.1f | %7.2f× | %-30s |\n", f, t, l, d, (l > 0 ? d / l : 0), gbs }'
  done
  unset best_l best_d
done
echo "# decode GB/s: the weight bytes one token reads (distill bench: every layer, a mixture's experts at n_used / n_experts, the head) × t/s; the share is of the read bandwidth measured just before that file's runs"
