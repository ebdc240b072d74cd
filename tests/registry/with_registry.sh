#!/usr/bin/env bash
# Runs a test binary against its own Apicurio Registries (ops/registry.sh, temp dir, free loopback
# ports): KPREC_TEST_REGISTRY is the Confluent API URL of a plain-http one,
# KPREC_TEST_REGISTRY_TLS of an https-only one whose certificate KPREC_TEST_REGISTRY_CA signed
# (made here with openssl), KPREC_TEST_REGISTRY_DOWN the URL of a loopback port where nothing
# listens.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
T=$(mktemp -d "${TMPDIR:-/tmp}/kprec-registry.XXXXXX")
trap '"$ROOT/ops/registry.sh" stop "$T/plain" >/dev/null 2>&1; "$ROOT/ops/registry.sh" stop "$T/tls" >/dev/null 2>&1; rm -rf "$T"' EXIT
"$ROOT/ops/registry.sh" fetch
C=$T/certs; mkdir -p "$C"
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$C/ca.key" -out "$C/ca.pem" -days 2 \
  -subj /CN=kprec-test-registry-ca 2>/dev/null
openssl req -newkey rsa:2048 -nodes -keyout "$C/srv.key" -out "$C/srv.csr" -subj /CN=127.0.0.1 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >"$C/ext"
openssl x509 -req -in "$C/srv.csr" -CA "$C/ca.pem" -CAkey "$C/ca.key" -CAcreateserial \
  -out "$C/srv.pem" -days 2 -extfile "$C/ext" 2>/dev/null
# one after the other: two JVMs starting at once on a loaded machine time out
plain=$("$ROOT/ops/registry.sh" start "$T/plain")
tls=$(REGISTRY_TLS_CERT=$C/srv.pem REGISTRY_TLS_KEY=$C/srv.key REGISTRY_TLS_CA=$C/ca.pem \
  "$ROOT/ops/registry.sh" start "$T/tls")
down=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
KPREC_TEST_REGISTRY=$plain KPREC_TEST_REGISTRY_TLS=$tls KPREC_TEST_REGISTRY_CA=$C/ca.pem \
  KPREC_TEST_REGISTRY_DOWN="http://127.0.0.1:$down/apis/ccompat/v7" "$@"
