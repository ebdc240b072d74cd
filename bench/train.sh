#!/usr/bin/env bash
# bench/train.sh -- training and embedding of the bi-encoder, kprec against PyTorch running the
# SAME model (bench/train_peer.py) on the same batches from the same initial weights (issue 11).
#
#   bench/train.sh --data DIR [--out OUT] [--build BUILD] [--rounds R] [--steps N] [--threads "1 2"]
#                  [--smoke]
#
#  1. builds kpmodel in BUILD and bench/bench_train.c against it; `bench_train prep` writes the
#     batches (feature ids), the initial weights and the titles' ids to OUT.
#  2. R rounds (default 5), the order of the two sides alternating round by round, for every
#     thread count T: `bench_train train` / `train_peer.py train` (N steps of batch 256, default
#     60; the first 5 are warm-up, not timed), then `bench_train embed` / `train_peer.py embed`
#     (item tower, batch 1 over 1024 titles and batch 256 over 4096).
#  3. prints a markdown table (with a row of kprec embedding from precomputed feature ids, the
#     peer's exact work, beside the peer's batch-256 figure): medians over the rounds of pairs/s (training: the loss pairs of a
#     step, softmax rows + SR pairs + distillation pairs) and items/s (embedding), by wall time
#     and by process CPU time (on a shared machine CPU time is the steadier figure), the ratios
#     kprec / PyTorch, the two loss curves' agreement (mean and max relative difference of the
#     per-step total loss, and the mean of the last 10 steps of each) and the largest absolute
#     difference of the two sides' embeddings (also in OUT/table.md).
# --smoke: 1 round, 8 steps, 1 thread (for CI: bench/run-all --smoke), and checks that both sides
# ran and agree: the rows present, the first step's loss equal to 4 digits, the curves within 5%
# on average, the embeddings within 1e-4 (exit 1 otherwise; speed is not checked).
# kprec featurizes the texts inside its timed steps; the peer is handed the feature ids.
# Needs: cmake, cc, pkg-config openblas zlib, Debian python3-torch python3-numpy (/usr/bin/python3).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
src="$(cd "$here/.." && pwd)"
data="" out="/tmp/kprec-bench-train" build="/tmp/build-bench-train" rounds=5 steps=60
threads="1 2" smoke=0
while [ $# -gt 0 ]; do
    case "$1" in
    --data) data="${2:?}"; shift 2 ;;
    --out) out="${2:?}"; shift 2 ;;
    --build) build="${2:?}"; shift 2 ;;
    --rounds) rounds="${2:?}"; shift 2 ;;
    --steps) steps="${2:?}"; shift 2 ;;
    --threads) threads="${2:?}"; shift 2 ;;
    --smoke) smoke=1; shift ;;
    -h | --help) awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "train.sh: unknown argument '$1' (--help)" >&2; exit 2 ;;
    esac
done
[ -n "$data" ] || { echo "train.sh: --data DIR is required" >&2; exit 2; }
for f in items.tsv keyphrases.tsv judgments.tsv; do
    [ -r "$data/$f" ] || { echo "train.sh: cannot read $data/$f" >&2; exit 2; }
done
if [ "$smoke" = 1 ]; then rounds=1 steps=8 threads=1; fi
py=/usr/bin/python3
"$py" -c 'import torch, numpy' 2>/dev/null || {
    echo "train.sh: $py cannot import torch/numpy (apt-get install -y python3-torch python3-numpy)" >&2
    exit 1
}
mkdir -p "$out"
log() { echo "[train] $*" >&2; }
if [ ! -f "$build/CMakeCache.txt" ]; then
    cmake -S "$src" -B "$build" -DCMAKE_BUILD_TYPE=Release >"$out/cmake.log" 2>&1 || { cat "$out/cmake.log" >&2; exit 1; }
fi
cmake --build "$build" --target kpmodel -j2 >>"$out/cmake.log" 2>&1 || { tail -30 "$out/cmake.log" >&2; exit 1; }
bin="$out/bench_train"
# shellcheck disable=SC2046
cc -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -O2 -g -Wall -Wextra -Wpedantic \
    "$src/bench/bench_train.c" -I"$src" $(pkg-config --cflags openblas) "$build/libkpmodel.a" \
    "$build/libkputil.a" $(pkg-config --libs openblas zlib) -lm -lpthread -o "$bin"
log "prep: $steps batches of 256 from $data"
"$bin" prep --data "$data" --out "$out" --steps "$steps" >"$out/prep.txt"

: >"$out/times.tsv" # side kind threads round seconds cpu count
for t in $threads; do
    for r in $(seq 1 "$rounds"); do
        log "threads $t, round $r/$rounds (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
        order="kprec torch"
        [ $((r % 2)) -eq 0 ] && order="torch kprec"
        for side in $order; do
            if [ "$side" = kprec ]; then
                fan=() # above one thread kprec trains and embeds on its own split (kp_par_threads, model/blas.h)
                [ "$t" -gt 1 ] && fan=(--fanout)
                tr=$("$bin" train --data "$data" --out "$out" --steps "$steps" --threads "$t" "${fan[@]}")
                em=$("$bin" embed --data "$data" --out "$out" --threads "$t" "${fan[@]}")
                cp "$out/loss_kprec.tsv" "$out/loss_kprec_t$t.tsv"
            else
                tr=$("$py" "$here/train_peer.py" train "$out" --threads "$t")
                em=$("$py" "$here/train_peer.py" embed "$out" --threads "$t")
                cp "$out/loss_torch.tsv" "$out/loss_torch_t$t.tsv"
                echo "$em" | awk '$1 == "check" { print $3 }' >"$out/embed_diff_t$t.txt"
            fi
            echo "$tr" | awk -v s="$side" -v t="$t" -v r="$r" '$1 == "time" { print s "\ttrain\t" t "\t" r "\t" $3 "\t" $4 "\t" $6 }' >>"$out/times.tsv"
            echo "$em" | awk -v s="$side" -v t="$t" -v r="$r" '$1 == "time" { print s "\t" $2 "\t" t "\t" r "\t" $3 "\t" $4 "\t" $5 }' >>"$out/times.tsv"
        done
    done
done

"$py" - "$out" "$threads" <<'PY' | tee "$out/table.md"
import os, statistics, sys
out, threads = sys.argv[1], sys.argv[2].split()
rows = [l.rstrip("\n").split("\t") for l in open(os.path.join(out, "times.tsv"))]
def med(side, kind, t, col):
    v = [float(r[5 if col == "cpu" else 4]) for r in rows if r[0] == side and r[1] == kind and r[2] == t]
    n = [float(r[6]) for r in rows if r[0] == side and r[1] == kind and r[2] == t]
    return statistics.median(x / y for x, y in zip(n, v)) if v else float("nan")
names = {"train": "training (pairs/s)", "embed1": "embedding, batch 1 (items/s)",
         "embed256": "embedding, batch 256 (items/s)",
         "embed256ids": "embedding, batch 256, kprec from feature ids (items/s)"}
peer = {"embed256ids": "embed256"}  # the peer is always handed ids
print("| what | threads | kprec (wall) | PyTorch (wall) | ratio (wall) | kprec (CPU) | PyTorch (CPU) | ratio (CPU) |")
print("|---|---|---|---|---|---|---|---|")
for kind in ("train", "embed1", "embed256", "embed256ids"):
    for t in threads:
        pk = peer.get(kind, kind)
        kw, pw = med("kprec", kind, t, "wall"), med("torch", pk, t, "wall")
        kc, pc = med("kprec", kind, t, "cpu"), med("torch", pk, t, "cpu")
        print("| %s | %s | %.0f | %.0f | %.2fx | %.0f | %.0f | %.2fx |" % (names[kind], t, kw, pw, kw / pw, kc, pc, kc / pc))
for t in threads:
    def load(n):
        p = os.path.join(out, "loss_%s_t%s.tsv" % (n, t))
        return [float(l.split("\t")[1]) for l in list(open(p))[1:]]
    a, b = load("kprec"), load("torch")
    rel = [abs(x - y) / abs(y) for x, y in zip(a, b)]
    tail = min(10, len(a))
    diff = open(os.path.join(out, "embed_diff_t%s.txt" % t)).read().strip()
    print("\nthreads %s: loss curves over %d steps: mean relative difference %.4f, max %.4f; "
          "first step %.6f / %.6f; mean of the last %d steps kprec %.4f, PyTorch %.4f; "
          "embeddings max |kprec - PyTorch| %s" % (t, len(a), sum(rel) / len(rel), max(rel), a[0], b[0],
          tail, sum(a[-tail:]) / tail, sum(b[-tail:]) / tail, diff))
PY
[ "$smoke" = 1 ] || exit 0
fails=0
for row in "training (pairs/s) | 1" "embedding, batch 1 (items/s) | 1" "embedding, batch 256 (items/s) | 1"; do
    grep -qF "| $row |" "$out/table.md" || { echo "train.sh: smoke: no row '$row'" >&2; fails=$((fails + 1)); }
done
"$py" - "$(grep '^threads 1: loss curves' "$out/table.md")" <<'PY' || fails=$((fails + 1))
import re, sys
s = sys.argv[1]
mean = float(re.search(r"mean relative difference ([0-9.]+)", s).group(1))
a, b = map(float, re.search(r"first step ([0-9.]+) / ([0-9.]+)", s).groups())
diff = float(re.search(r"max \|kprec - PyTorch\| ([0-9.eE+-]+)", s).group(1))
ok = mean < 0.05 and abs(a - b) <= 1e-4 * abs(b) and diff < 1e-4
print("train.sh: smoke: loss curves mean rel. diff %g, first step %g / %g, embeddings max diff %g: %s"
      % (mean, a, b, diff, "ok" if ok else "FAIL"), file=sys.stderr)
sys.exit(0 if ok else 1)
PY
[ "$fails" -eq 0 ]
