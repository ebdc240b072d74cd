#!/usr/bin/env bash
# bench/ce_speed.sh -- kp_ce_score speed (pairs/s, one thread) of CE checkpoints.
#
#   bench/ce_speed.sh --data DIR [--build BUILD] [--items N] [--cands C] [--rounds R] MODEL...
#
# Builds the kpmodel library in BUILD (default ./build, configured already) and bench/bench_ce.c
# next to it, then re-ranks C (default 100) keyphrases for each of the first N (default 200)
# titles of DIR/items.tsv with every MODEL (one kp_ce_score call per item).
set -euo pipefail
data="" build=./build items=200 cands=100 rounds=5
while [ $# -gt 0 ]; do
    case "$1" in
    --data) data="$2"; shift 2 ;;
    --build) build="$2"; shift 2 ;;
    --items) items="$2"; shift 2 ;;
    --cands) cands="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    -h | --help) awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    --*) echo "ce_speed.sh: unknown argument '$1'" >&2; exit 2 ;;
    *) break ;;
    esac
done
[ -n "$data" ] && [ $# -gt 0 ] || { echo "ce_speed.sh: --data DIR and at least one MODEL" >&2; exit 2; }
src=$(cd "$(dirname "$0")/.." && pwd)
cmake --build "$build" --target kpmodel kputil -j2 >/dev/null
cc -std=c11 -D_POSIX_C_SOURCE=200809L -O2 -Wall -Wextra -Wpedantic "$src/bench/bench_ce.c" -I"$src" \
    "$build/libkpmodel.a" "$build/libkputil.a" $(pkg-config --libs openblas zlib) -lm -lpthread -o "$build/bench_ce"
echo "# $(lscpu | grep 'Model name' | sed 's/  */ /g'), nproc $(nproc), load $(cut -d' ' -f1-3 /proc/loadavg)"
for m in "$@"; do
    OPENBLAS_NUM_THREADS=1 "$build/bench_ce" "$m" "$data/items.tsv" "$data/keyphrases.tsv" "$items" "$cands" "$rounds"
done
