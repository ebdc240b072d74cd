#!/usr/bin/env bash
# Builds and runs the libFuzzer targets of tests/fuzz (ctest label `fuzz`).
#
#   tests/fuzz/run_fuzz.sh --build              configure + build build-fuzz (clang, -DKPREC_FUZZ=ON)
#   tests/fuzz/run_fuzz.sh TARGET [SECONDS]     run fuzz_TARGET for SECONDS (30) on its committed
#                                               corpus tests/fuzz/corpus/TARGET (read only: new
#                                               inputs go to a temp dir); a crash fails the test
#                                               and its input is kept in build-fuzz/artifacts/
#   tests/fuzz/run_fuzz.sh TARGET -runs=N ...   any libFuzzer options instead of SECONDS
# KPREC_FUZZ_BUILD overrides the build dir (default: build-fuzz in the source tree).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
B=${KPREC_FUZZ_BUILD:-$ROOT/build-fuzz}

build() {
  command -v clang >/dev/null || { echo "run_fuzz: clang not found: run ops/install-deps.sh" >&2; exit 1; }
  if [ ! -f "$B/CMakeCache.txt" ]; then
    cmake -S "$ROOT" -B "$B" -DCMAKE_C_COMPILER=clang -DKPREC_FUZZ=ON \
          -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
  fi
  cmake --build "$B" --target fuzz -j"$(nproc)" >"$B/build.log" 2>&1 ||
    { tail -50 "$B/build.log" >&2; exit 1; }
}

[ "${1:-}" = --build ] && { build; exit 0; }
t=${1:?usage: run_fuzz.sh --build | TARGET [SECONDS | libFuzzer options...]}; shift
t=${t#fuzz_}
[ -x "$B/tests/fuzz_$t" ] || build
seeds=$ROOT/tests/fuzz/corpus/$t
[ -d "$seeds" ] || { echo "run_fuzz: no corpus $seeds" >&2; exit 1; }
if [ $# -eq 0 ] || [[ "$1" =~ ^[0-9]+$ ]]; then set -- -max_total_time="${1:-30}"; fi
work=$(mktemp -d "${TMPDIR:-/tmp}/kprec-fuzz-$t.XXXXXX")
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/corpus" "$B/artifacts"
# detect_leaks: a leak is a finding too; -rss_limit_mb/-malloc_limit_mb: a small input must not
# make a parser allocate gigabytes.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-halt_on_error=1:print_stacktrace=1}
# Targets that keep a codec across inputs (Avro C holds blocks through pointers LeakSanitizer
# does not follow): no per-input leak check; the check at exit, after the codec is freed, stays.
extra=()
case "$t" in schema | registry) extra=(-detect_leaks=0) ;; esac
set +e
"$B/tests/fuzz_$t" -rss_limit_mb=2048 -malloc_limit_mb=1024 -timeout=10 -print_final_stats=1 \
    -artifact_prefix="$B/artifacts/$t-" "${extra[@]}" "$@" "$work/corpus" "$seeds" >"$work/log" 2>&1
rc=$?
set -e
grep -E '^(#[0-9]+.*(DONE|pulse)|stat::number_of_executed_units|stat::average_exec_per_sec|Done)' \
     "$work/log" | tail -4 >&2
if [ "$rc" -ne 0 ]; then
  echo "run_fuzz: fuzz_$t FAILED (rc $rc):" >&2
  grep -vE '^#[0-9]+' "$work/log" | tail -60 >&2
  exit 1
fi
echo "run_fuzz: fuzz_$t ok" >&2
