#!/usr/bin/env bash
# Runs a test binary against its own redis-server (temp dir, free loopback port), like hiredis'
# test.sh: KPREC_REDIS_PORT tells the test where it is.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
"$ROOT/ops/install-deps.sh"
T=$(mktemp -d "${TMPDIR:-/tmp}/kprec-redis.XXXXXX")
trap '"$ROOT/ops/redis.sh" stop "$T" >/dev/null 2>&1; rm -rf "$T"' EXIT
KPREC_REDIS_PORT=$("$ROOT/ops/redis.sh" start "$T") KPREC_TEST_REDIS_DIR=$T "$@"
