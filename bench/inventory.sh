#!/usr/bin/env bash
# bench/inventory.sh [BUILD] - the cost of live inventory additions: M keyphrases added to a
# recommender of N (kp_rec_upsert, in chunks of 512 as the serve loop applies them) against a full
# rebuild over N + M (kp_rec_new: what a reload re-embeds), plus one BM25 build over N + M (done
# once per applied chunk when [model] hybrid is on). Defaults: N = 12000, M = 1000, 3 runs
# (median). Seeded untrained bi-encoder, synthetic keyphrases: the cost is the tower's, not the
# weights'. Usage: bench/inventory.sh [BUILD] [bench_inventory options]
set -euo pipefail
src=$(cd "$(dirname "$0")/.." && pwd)
build=${1:-$src/build}
shift || true
out=$(mktemp -d "${TMPDIR:-/tmp}/kprec-bench-inv.XXXXXX")
trap 'rm -rf "$out"' EXIT
[ -f "$build/CMakeCache.txt" ] || cmake -S "$src" -B "$build" >"$out/cmake.log"
cmake --build "$build" --target kpmodel -j2 >>"$out/cmake.log" 2>&1 || { tail -30 "$out/cmake.log" >&2; exit 1; }
# shellcheck disable=SC2046
cc -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -O2 -g -Wall -Wextra -Wpedantic \
    "$src/bench/bench_inventory.c" -I"$src" $(pkg-config --cflags openblas) "$build/libkpmodel.a" \
    "$build/libkputil.a" $(pkg-config --libs openblas zlib) -lm -lpthread -o "$out/bench_inventory"
OPENBLAS_NUM_THREADS=${OPENBLAS_NUM_THREADS:-1} "$out/bench_inventory" "$@"
