#!/usr/bin/env bash
# Sets up everything and runs every test: installs the system packages, builds kprec twice (a
# normal build and an ASan+UBSan build), runs the unit tests under the sanitizers, then all tests
# (unit, fault, integration) on the normal build. Real Kafka and Redis are started by the tests.
#   ops/test.sh            everything
#   ops/test.sh -L unit    only some labels (passed to ctest)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
./ops/install-deps.sh
./ops/kafka.sh fetch
JOBS=$(nproc)

echo "== clang-format (the style of .clang-format)" >&2
git ls-files '*.c' '*.h' | xargs clang-format --dry-run --Werror


cmake -S . -B build -DCMAKE_BUILD_TYPE=RelWithDebInfo -DKPREC_WERROR=ON >/dev/null
cmake --build build -j"$JOBS"
cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=Debug -DKPREC_SANITIZE=ON -DKPREC_WERROR=ON >/dev/null
cmake --build build-asan -j"$JOBS"

echo "== unit tests under ASan+UBSan" >&2
ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
  ctest --test-dir build-asan -L unit --output-on-failure -j"$JOBS"

echo "== all tests" >&2
# Without arguments: every test but the chaos run, then the short chaos run (6,000 items, ~5 min;
# CHAOS_SCALE=long for the 50,000-item one, docs/RELIABILITY.md "Chaos run").
if [ $# -gt 0 ]; then
  ctest --test-dir build --output-on-failure "$@"
  exit
fi
ctest --test-dir build --output-on-failure -LE chaos
echo "== chaos run (CHAOS_SCALE=${CHAOS_SCALE:-short})" >&2
CHAOS_SCALE=${CHAOS_SCALE:-short} ctest --test-dir build --output-on-failure -L chaos
