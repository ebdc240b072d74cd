#!/usr/bin/env bash
# The docs cannot drift from the code: runs every ```sh block of README.md and docs/OPERATIONS.md
# in order, as written, in a fresh copy of the repository (the files git tracks), against the local
# stack those blocks start themselves.
#
#   tests/docs/test_docs.sh [DOC.md ...]
#
# A block is skipped, with its reason printed, when the line before its fence is
#   <!-- docs-test: skip: REASON -->
# (for blocks that need ../shared data, take long, or are this test's own command). Paths under
# /tmp/kp in the blocks are moved to this run's own temporary directory, so a developer's /tmp/kp
# is never touched. Each block runs in one `bash -euo pipefail` process (a worker started with `&`
# in a block is that block's to stop). The run fails at the first block that exits non-zero.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
docs=("$@")
[ ${#docs[@]} -gt 0 ] || { docs=(README.md); [ -f "$ROOT/docs/OPERATIONS.md" ] && docs+=(docs/OPERATIONS.md); }

WORK=$(mktemp -d /tmp/kprec-docs.XXXXXX)
TMPKP=$WORK/kp
cleanup() {
  # whatever a failed block left running: its stack
  [ -d "$TMPKP" ] && "$WORK/repo/ops/stack.sh" down "$TMPKP" >/dev/null 2>&1 || true
  pkill -f "$WORK/repo/build/kprec" 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# A fresh copy: what a clone has (tracked files, as they are in the working tree).
mkdir -p "$WORK/repo"
(cd "$ROOT" && git ls-files -z | xargs -0 tar -cf - 2>/dev/null) | tar -xf - -C "$WORK/repo"
# ../shared is beside the repository in a clone too, when it exists.
[ -d "$ROOT/../shared" ] && ln -s "$(cd "$ROOT/../shared" && pwd)" "$WORK/shared"

# extract DOC: prints blocks separated by NUL, each prefixed "RUN\n" or "SKIP reason\n"
extract() {
  awk '
    /^<!-- docs-test: skip: .* -->$/ { skip = $0; sub(/^<!-- docs-test: skip: /, "", skip); sub(/ -->$/, "", skip); pending = NR; next }
    !inblk && /^```sh[[:space:]]*$/ { inblk = 1; body = ""; mark = (pending == NR - 1) ? "SKIP " skip : "RUN"; next }
    inblk && /^```[[:space:]]*$/ { inblk = 0; printf "%s\n%s%c", mark, body, 0; next }
    inblk { body = body $0 "\n" }
  ' "$1"
}

ran=0 skipped=0 n=0
for doc in "${docs[@]}"; do
  [ -f "$WORK/repo/$doc" ] || { echo "FAIL: $doc not found" >&2; exit 1; }
  while IFS= read -r -d '' blk; do
    n=$((n + 1))
    head=${blk%%$'\n'*}
    body=${blk#*$'\n'}
    first=$(printf '%s' "$body" | sed -n 1p)
    if [ "${head%% *}" = SKIP ]; then
      echo "docs: $doc block $n ($first ...): skipped: ${head#SKIP }"
      skipped=$((skipped + 1))
      continue
    fi
    body=${body//\/tmp\/kp/$TMPKP}
    echo "docs: $doc block $n: running"
    printf '%s' "$body" | sed 's/^/    $ /'
    if ! (cd "$WORK/repo" && bash -euo pipefail -c "$body") >"$WORK/block$n.log" 2>&1; then
      echo "FAIL: $doc block $n exited non-zero; its output:" >&2
      tail -40 "$WORK/block$n.log" >&2
      exit 1
    fi
    tail -5 "$WORK/block$n.log" | sed 's/^/    | /'
    ran=$((ran + 1))
  done < <(extract "$WORK/repo/$doc")
done
[ "$ran" -gt 0 ] || { echo "FAIL: no block ran" >&2; exit 1; }
echo "docs: $ran blocks ran, $skipped skipped"
echo "$ran passed, 0 failed, $skipped skipped"
