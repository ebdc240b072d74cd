#!/usr/bin/env bash
# bench/retrieval.sh -- retrieval speed/memory of kp_index_topk against faiss IndexFlatIP.
#
#   bench/retrieval.sh --data DIR [--out OUT] [--build BUILD] [--rounds N] [--items N]
#                      [--extra-coretype NAME]
#
# DIR holds items.tsv and keyphrases.tsv (e.g. /work/shared/data/homedepot).
#  1. builds the kpmodel static library in BUILD (cmake --build BUILD --target kpmodel; configured
#     first if BUILD has no CMakeCache.txt) and bench/bench_index.c against it with cc.
#  2. bench_index embed: the first N (8192) titles and all keyphrases through a seeded bi-encoder
#     (D=128) -> OUT/items.f32, OUT/keys.f32, so both sides search exactly the same vectors.
#  3. for each pass (the environment as is; OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset; and with
#     --extra-coretype NAME, OPENBLAS_CORETYPE=NAME), N rounds (default 5), alternating which side
#     goes first: one process `bench_index search` (kprec: k=50, batches 256 and 8192, 1 and 2
#     BLAS threads, prefix 32/64, de-dup, GEMM-only diagnostic) and one process
#     `retrieval_peer.py search` (faiss, same k/batches/threads), each under /usr/bin/time -v for
#     its peak RSS. Every timing is one full pass over the 8192 queries; the table gives the median
#     over rounds, so background load shifts both sides alike.
#  4. prints one markdown table per pass (retrieval_peer.py report), also kept in OUT/report.md.
# Needs: cmake, cc, pkg-config openblas zlib, /usr/bin/time, Debian python3-faiss python3-numpy
# (run by /usr/bin/python3).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
src="$(cd "$here/.." && pwd)"
data="" out="/tmp/kprec-bench-retrieval" build="/tmp/build-bench-retrieval" rounds=5 items=8192
extra_core=""
usage() {
    sed -n '2,5p' "$0" | sed 's/^# \{0,1\}//' >&2
}
while [ $# -gt 0 ]; do
    case "$1" in
    --data) data="${2:?}"; shift 2 ;;
    --out) out="${2:?}"; shift 2 ;;
    --build) build="${2:?}"; shift 2 ;;
    --rounds) rounds="${2:?}"; shift 2 ;;
    --items) items="${2:?}"; shift 2 ;;
    --extra-coretype) extra_core="${2:?}"; shift 2 ;;
    -h | --help) usage; exit 0 ;;
    *) echo "retrieval.sh: unknown argument '$1'" >&2; usage; exit 2 ;;
    esac
done
if [ -z "$data" ]; then
    echo "retrieval.sh: --data DIR is required" >&2
    usage
    exit 2
fi
for f in items.tsv keyphrases.tsv; do
    [ -r "$data/$f" ] || { echo "retrieval.sh: cannot read $data/$f" >&2; exit 2; }
done
case "$rounds" in '' | *[!0-9]* | 0) echo "retrieval.sh: --rounds must be >= 1" >&2; exit 2 ;; esac
py=/usr/bin/python3
"$py" -c 'import faiss, numpy' 2>/dev/null || {
    echo "retrieval.sh: $py cannot import faiss/numpy (apt-get install -y python3-faiss python3-numpy)" >&2
    exit 1
}
[ -x /usr/bin/time ] || { echo "retrieval.sh: /usr/bin/time is missing (apt-get install time)" >&2; exit 1; }

mkdir -p "$out"
log() { echo "[retrieval] $*" >&2; }

# 1. build
if [ ! -f "$build/CMakeCache.txt" ]; then
    log "configuring $build"
    cmake -S "$src" -B "$build" >"$out/cmake.log" 2>&1 || { cat "$out/cmake.log" >&2; exit 1; }
fi
log "building kpmodel in $build"
cmake --build "$build" --target kpmodel -j2 >>"$out/cmake.log" 2>&1 || { tail -30 "$out/cmake.log" >&2; exit 1; }
bin="$out/bench_index"
# shellcheck disable=SC2046
cc -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE -O2 -g -Wall -Wextra -Wpedantic \
    "$src/bench/bench_index.c" -I"$src" $(pkg-config --cflags openblas) "$build/libkpmodel.a" "$build/libkputil.a" \
    $(pkg-config --libs openblas zlib) -lm -lpthread -o "$bin"

# 2. embed
log "embedding $items items and all keyphrases"
"$bin" embed --data "$data" --out "$out" --items "$items" >&2

peak_kb() { sed -n 's/^[[:space:]]*Maximum resident set size (kbytes): //p' "$1"; }

# 3. one pass: run_pass NAME LABEL ENV-COMMAND...
run_pass() {
    local name="$1" label="$2"
    shift 2
    local d="$out/$name"
    rm -rf "$d"
    mkdir -p "$d"
    for f in items.f32 keys.f32 keys.dedup.u64 dims.txt; do ln -s "$out/$f" "$d/$f"; done
    : >"$d/kprec.tsv"
    : >"$d/faiss.tsv"
    : >"$d/rss.tsv"
    echo "$*" >"$d/env.txt"
    for r in $(seq 1 "$rounds"); do
        log "$name: round $r/$rounds (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
        local order="kprec faiss"
        [ $((r % 2)) -eq 0 ] && order="faiss kprec"
        for side in $order; do
            if [ "$side" = kprec ]; then
                "$@" /usr/bin/time -v -o "$d/time.txt" "$bin" search --out "$d" >>"$d/kprec.tsv"
            else
                "$@" /usr/bin/time -v -o "$d/time.txt" "$py" "$here/retrieval_peer.py" search \
                    --out "$d" >>"$d/faiss.tsv"
            fi
            printf '%s\t%s\n' "$side" "$(peak_kb "$d/time.txt")" >>"$d/rss.tsv"
        done
    done
    "$py" "$here/retrieval_peer.py" report --out "$d" --label "$label" | tee "$d/report.md"
    echo
}

{
    echo "### Retrieval speed run $(date -u +%Y-%m-%dT%H:%MZ)"
    echo
    echo "- command: \`bench/retrieval.sh --data $data --out $out --rounds $rounds${extra_core:+ --extra-coretype $extra_core}\`"
    echo "- machine: nproc=$(nproc), CPU: $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)" \
        "(family $(sed -n 's/^cpu family[[:space:]]*: //p' /proc/cpuinfo | head -1)," \
        "model $(sed -n 's/^model[[:space:]]*: //p' /proc/cpuinfo | head -1))," \
        "load average at start: $(cut -d' ' -f1-3 /proc/loadavg)"
    echo "- data: $items queries (titles), $(($(wc -l <"$data/keyphrases.tsv") - 1)) keyphrases, D=128, k=50; rounds=$rounds (median)"
    echo
} | tee "$out/report.md"

run_pass pass1-as-is "Pass 1: environment as is" env | tee -a "$out/report.md"
run_pass pass2-unset "Pass 2: OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset" \
    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE | tee -a "$out/report.md"
if [ -n "$extra_core" ]; then
    run_pass pass3-"$extra_core" "Pass 3: OPENBLAS_CORETYPE=$extra_core (L2 size unset)" \
        env -u OPENBLAS_L2_SIZE OPENBLAS_CORETYPE="$extra_core" | tee -a "$out/report.md"
fi
echo "load average at end: $(cut -d' ' -f1-3 /proc/loadavg)" | tee -a "$out/report.md"
log "report: $out/report.md"
