#!/usr/bin/env bash
# Runs a test binary against its own redis-server (temp dir, free loopback port), like hiredis'
# test.sh: KPREC_REDIS_PORT tells the test where it is. The server has ACL users (ops/redis.sh
# REDIS_ACLFILE): the default user (no password, all rights, as before) and an ACL user whose name
# and password are in KPREC_TEST_REDIS_ACL_USER / _PASS, allowed kprec:* keys only.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
"$ROOT/ops/install-deps.sh"
T=$(mktemp -d "${TMPDIR:-/tmp}/kprec-redis.XXXXXX")
trap '"$ROOT/ops/redis.sh" stop "$T" >/dev/null 2>&1; rm -rf "$T"' EXIT
export KPREC_TEST_REDIS_ACL_USER=kprec-acl KPREC_TEST_REDIS_ACL_PASS="acl-pw-$$-$RANDOM"
printf 'user default on nopass ~* &* +@all\nuser %s on >%s ~kprec:* &* +@all\n' \
  "$KPREC_TEST_REDIS_ACL_USER" "$KPREC_TEST_REDIS_ACL_PASS" >"$T/users.acl"
KPREC_REDIS_PORT=$(REDIS_ACLFILE=$T/users.acl "$ROOT/ops/redis.sh" start "$T") KPREC_TEST_REDIS_DIR=$T "$@"
