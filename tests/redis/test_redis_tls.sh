#!/usr/bin/env bash
# Redis over TLS through a sidecar (hiredis 0.14 has no TLS): redis-server behind a server-side
# stunnel (TLS in, plain to Redis on loopback), a client-side stunnel next to kprec (plain in from
# kprec on loopback, TLS out, verifying the server's certificate against the test's CA). The ACL
# cache test (test_cache_acl: AUTH user password, writes, reads) runs through the tunnel; the TLS
# port refuses plain Redis; a client tunnel that does not trust the server's certificate gives a
# connection error, not a hang. Certificates are made here with openssl.
#   tests/redis/test_redis_tls.sh PATH_TO_test_cache_acl
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
ACL_TEST=${1:?usage: $0 PATH_TO_test_cache_acl}
"$ROOT/ops/install-deps.sh"
command -v stunnel4 >/dev/null || command -v stunnel >/dev/null || { echo "stunnel not found" >&2; exit 1; }
STUNNEL=$(command -v stunnel4 || command -v stunnel)
T=$(mktemp -d "${TMPDIR:-/tmp}/kprec-rtls.XXXXXX")
cleanup() {
  local rc=$?
  for p in "$T"/*.pid; do [ -f "$p" ] && kill "$(cat "$p")" 2>/dev/null; done
  "$ROOT/ops/redis.sh" stop "$T/redis" >/dev/null 2>&1 || true
  [ "$rc" -ne 0 ] && for f in "$T"/*.log; do echo "== $f" >&2; tail -20 "$f" >&2; done
  rm -rf "$T"
  exit "$rc"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*" >&2; }
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

(
  cd "$T"
  openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=kprec-test-ca
  openssl req -x509 -newkey rsa:2048 -nodes -keyout rogue.key -out rogue.pem -days 2 -subj /CN=rogue-ca
  openssl req -newkey rsa:2048 -nodes -keyout server.key -out server.csr -subj /CN=redis.kprec.test
  printf 'subjectAltName=DNS:redis.kprec.test,IP:127.0.0.1\n' >san.ext
  openssl x509 -req -in server.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out server.pem -days 2 -extfile san.ext
) >"$T/certs.log" 2>&1 || fail "certificates"

export KPREC_TEST_REDIS_ACL_USER=kprec-acl KPREC_TEST_REDIS_ACL_PASS="acl-pw-$$-$RANDOM"
printf 'user default on nopass ~* &* +@all\nuser %s on >%s ~kprec:* &* +@all\n' \
  "$KPREC_TEST_REDIS_ACL_USER" "$KPREC_TEST_REDIS_ACL_PASS" >"$T/users.acl"
RPORT=$(REDIS_ACLFILE=$T/users.acl "$ROOT/ops/redis.sh" start "$T/redis")
SPORT=$(free_port)
# server side: TLS on SPORT -> Redis
cat >"$T/server.conf" <<CONF
pid = $T/server.pid
output = $T/server.log
foreground = no
[redis-tls]
accept = 127.0.0.1:$SPORT
connect = 127.0.0.1:$RPORT
cert = $T/server.pem
key = $T/server.key
CONF
"$STUNNEL" "$T/server.conf" || fail "server-side stunnel did not start"

# client_tunnel NAME CAFILE: a client-side stunnel on a free port (printed) -> TLS to SPORT
client_tunnel() {
  local port; port=$(free_port)
  cat >"$T/$1.conf" <<CONF
pid = $T/$1.pid
output = $T/$1.log
foreground = no
[redis-client]
client = yes
accept = 127.0.0.1:$port
connect = 127.0.0.1:$SPORT
verifyChain = yes
CAfile = $2
checkHost = redis.kprec.test
CONF
  "$STUNNEL" "$T/$1.conf" || fail "client-side stunnel $1 did not start"
  echo "$port"
}
CPORT=$(client_tunnel client "$T/ca.pem")
for _ in $(seq 50); do [ -f "$T/client.pid" ] && [ -f "$T/server.pid" ] && break; sleep 0.1; done

# the TLS port speaks TLS only
out=$(printf 'PING\r\n' | timeout 5 redis-cli -p "$SPORT" ping 2>&1 || true)
[ "$out" != PONG ] || fail "the TLS port answered plain Redis"
echo | timeout 10 openssl s_client -connect "127.0.0.1:$SPORT" -CAfile "$T/ca.pem" \
  -verify_hostname redis.kprec.test -verify_return_error >"$T/s_client.log" 2>&1 ||
  fail "openssl s_client could not verify the server side"
grep -q "Verify return code: 0 (ok)" "$T/s_client.log" || fail "server certificate not verified"
ok "the TLS port refuses plain Redis and presents a certificate the CA verifies"

# the ACL cache test through the tunnel
KPREC_REDIS_PORT=$CPORT "$ACL_TEST" >"$T/acl-test.log" 2>&1 || fail "test_cache_acl through the tunnel: $(tail -5 "$T/acl-test.log")"
grep -q "PASSED.*3 test" "$T/acl-test.log" || fail "test_cache_acl: $(tail -3 "$T/acl-test.log")"
[ "$(redis-cli -p "$RPORT" exists kprec:rec:acl-item)" = 1 ] || fail "the entry written through the tunnel is not in Redis"
ok "test_cache_acl (AUTH user password, put, get) through stunnel"

# a client tunnel that trusts another CA: kprec's connection fails at once, it does not hang
BPORT=$(client_tunnel rogue "$T/rogue.pem")
for _ in $(seq 50); do [ -f "$T/rogue.pid" ] && break; sleep 0.1; done
t0=$SECONDS
rc=0
KPREC_REDIS_PORT=$BPORT timeout 60 "$ACL_TEST" >"$T/rogue-test.log" 2>&1 || rc=$?
[ "$rc" -ne 0 ] || fail "the cache test passed through a tunnel that does not trust the server"
[ "$rc" -ne 124 ] || fail "the cache test hung behind an untrusting tunnel"
grep -qiE "connection (lost|reset)|server closed|cannot connect" "$T/rogue-test.log" ||
  fail "no connection error: $(grep -i redis "$T/rogue-test.log" | head -3)"
grep -qi "certificate verify failed" "$T/rogue.log" || fail "stunnel does not log the cause"
ok "untrusted server certificate: the cache fails in $((SECONDS - t0)) s (stunnel: certificate verify failed)"
