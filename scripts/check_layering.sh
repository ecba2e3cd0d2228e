#!/usr/bin/env bash
# Checks that every `#include "LIB/..."` in SRC/<folder>/ stays within what docs/architecture.md's
# dependency table allows that folder (its own files, the libraries it lists, and everything those
# list in turn). Prints each crossing as FILE:LINE and exits 1 if there is any.
#   scripts/check_layering.sh [SRC_DIR] [ARCHITECTURE_MD]
set -euo pipefail
src=${1:-"$(dirname "$0")/../src"}
doc=${2:-"$(dirname "$0")/../docs/architecture.md"}

declare -A direct
# Rows of the table between the markers: | folder | dep, dep, ... |
while IFS='|' read -r _ lib deps _; do
  lib=$(echo "$lib" | tr -d ' `')
  deps=$(echo "$deps" | tr -d '`' | tr ',' ' ')
  [[ -z "$lib" || "$lib" == folder || "$lib" =~ ^-+$ ]] && continue
  direct[$lib]="$deps"
done < <(sed -n '/<!-- layering:begin -->/,/<!-- layering:end -->/p' "$doc" | grep '^|')

if [ ${#direct[@]} -eq 0 ]; then
  echo "check_layering: no dependency table between <!-- layering:begin/end --> in $doc" >&2
  exit 2
fi

# allowed[lib] = transitive closure of direct[lib]
declare -A allowed
closure() {
  local lib=$1 seen=" $1 " queue=(${direct[$1]:-}) out=""
  while [ ${#queue[@]} -gt 0 ]; do
    local d=${queue[0]}; queue=("${queue[@]:1}")
    [[ "$d" == "(none)" || "$d" == "-" ]] && continue
    [[ "$seen" == *" $d "* ]] && continue
    seen+="$d "; out+="$d "
    queue+=(${direct[$d]:-})
  done
  echo "$out"
}
for lib in "${!direct[@]}"; do allowed[$lib]=$(closure "$lib"); done

status=0
for dir in "$src"/*/; do
  lib=$(basename "$dir")
  if [ -z "${direct[$lib]+x}" ]; then
    echo "$dir: folder '$lib' is not in the dependency table of $doc"
    status=1
    continue
  fi
  while IFS=: read -r file line text; do
    inc=$(echo "$text" | sed -E 's/.*#include "([a-z_0-9]+)\/.*/\1/')
    [[ "$inc" == "$lib" ]] && continue
    [[ " ${allowed[$lib]} " == *" $inc "* ]] && continue
    echo "$file:$line: '$lib' may not include '$inc' ($text); allowed: ${allowed[$lib]:-(none)}"
    status=1
  done < <(grep -rnE '^[[:space:]]*#include "[a-z_0-9]+/' "$dir" || true)
done
if [ $status -eq 0 ]; then echo "check_layering: every include of $src follows $doc"; fi
exit $status
