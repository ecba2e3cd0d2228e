#!/usr/bin/env bash
# The layering check itself: on a copy of docs/architecture.md, a tree with an allowed include
# passes, and a planted include that crosses the table (kernels -> model) or a folder missing from
# the table fails, naming the file and line.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/src/kernels" "$tmp/src/model" "$tmp/src/core"
printf '#include "core/error.h"\n' > "$tmp/src/kernels/ok.cpp"
printf '#include "kernels/kernels.h"\n#include "formats/gguf.h"\n' > "$tmp/src/model/ok.cpp"

"$root/scripts/check_layering.sh" "$tmp/src" "$root/docs/architecture.md" > "$tmp/out" || {
  echo "FAIL: a tree with allowed includes was refused:"; cat "$tmp/out"; exit 1; }

printf '// a planted crossing\n#include "model/model.h"\n' > "$tmp/src/kernels/bad.cpp"
if "$root/scripts/check_layering.sh" "$tmp/src" "$root/docs/architecture.md" > "$tmp/out"; then
  echo "FAIL: kernels including model/ was accepted"; exit 1
fi
grep -q "kernels/bad.cpp:2: 'kernels' may not include 'model'" "$tmp/out" || { echo "FAIL: message:"; cat "$tmp/out"; exit 1; }
rm "$tmp/src/kernels/bad.cpp"

mkdir -p "$tmp/src/newlib"
printf '#include "core/error.h"\n' > "$tmp/src/newlib/x.cpp"
if "$root/scripts/check_layering.sh" "$tmp/src" "$root/docs/architecture.md" > "$tmp/out"; then
  echo "FAIL: a folder missing from the table was accepted"; exit 1
fi
grep -q "folder 'newlib' is not in the dependency table" "$tmp/out" || { echo "FAIL: message:"; cat "$tmp/out"; exit 1; }
echo "layering check: planted crossings refused"
