#!/usr/bin/env bash
# Runs a test binary against its own Apicurio Registry (ops/registry.sh, temp dir, free loopback
# port): KPREC_TEST_REGISTRY is its Confluent API URL, KPREC_TEST_REGISTRY_DOWN the URL of a
# loopback port where nothing listens.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
T=$(mktemp -d "${TMPDIR:-/tmp}/kprec-registry.XXXXXX")
trap '"$ROOT/ops/registry.sh" stop "$T" >/dev/null 2>&1; rm -rf "$T"' EXIT
KPREC_TEST_REGISTRY=$("$ROOT/ops/registry.sh" start "$T")
down=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
KPREC_TEST_REGISTRY=$KPREC_TEST_REGISTRY KPREC_TEST_REGISTRY_DIR=$T \
  KPREC_TEST_REGISTRY_DOWN="http://127.0.0.1:$down/apis/ccompat/v7" "$@"
