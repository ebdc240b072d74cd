#!/usr/bin/env bash
# bench/train.sh --smoke on the ESCI sample: kprec and the PyTorch peer train the same model on the
# same batches from the same weights (8 steps) and embed the same titles. Checks that both sides
# ran and that they agree: the first step's loss equal to 4 digits, the curves within 5% on
# average, the embeddings within 1e-4. (Speed is the benchmark's business, not this test's.)
set -uo pipefail
BUILD=${1:?usage: test_train_smoke.sh BUILD_DIR}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
T=$(mktemp -d)
trap 'rm -rf "$T"' EXIT
bash "$ROOT/ops/esci-prepare.sh" "$T/d" 2>/dev/null || { echo "esci-prepare failed" >&2; exit 1; }
bash "$ROOT/bench/train.sh" --data "$T/d" --out "$T/o" --build "$BUILD" --smoke >"$T/out" 2>"$T/err" ||
  { cat "$T/err" "$T/out" >&2; exit 1; }
cat "$T/out"
fails=0
for row in "training (pairs/s) | 1" "embedding, batch 1 (items/s) | 1" "embedding, batch 256 (items/s) | 1"; do
  grep -qF "| $row |" "$T/out" || { echo "FAIL: no row '$row'" >&2; fails=$((fails + 1)); }
done
line=$(grep '^threads 1: loss curves' "$T/out")
python3 - "$line" <<'PY' || fails=$((fails + 1))
import re, sys
s = sys.argv[1]
mean = float(re.search(r"mean relative difference ([0-9.]+)", s).group(1))
a, b = map(float, re.search(r"first step ([0-9.]+) / ([0-9.]+)", s).groups())
diff = float(re.search(r"max \|kprec - PyTorch\| ([0-9.eE+-]+)", s).group(1))
ok = mean < 0.05 and abs(a - b) <= 1e-4 * abs(b) and diff < 1e-4
print("loss curves mean rel. diff %g, first step %g / %g, embeddings max diff %g: %s"
      % (mean, a, b, diff, "ok" if ok else "FAIL"), file=sys.stderr)
sys.exit(0 if ok else 1)
PY
[ "$fails" -eq 0 ]
