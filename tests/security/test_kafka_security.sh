#!/usr/bin/env bash
# kprec against a real broker on each secured listener (ops/kafka.sh KAFKA_SECURITY=...), configured
# only through [kafka] keys: SSL, mutual TLS, SASL_SSL with PLAIN, SASL OAUTHBEARER (unsecured
# JWT). On each: `kprec topics`, a small replay and a worker round trip (listings in, suggestions
# in Redis); then the failure cases (untrusted certificate, no client certificate, wrong
# password) must make `kprec topics` exit non-zero by itself with a message naming the cause.
# Secrets never appear in `kprec config` or the logs. Certificates are made here (openssl,
# keytool) in the test's temp dir. One broker per listener mode.
#   tests/security/test_kafka_security.sh PATH_TO_KPREC [MODE...]   (default: every mode)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
KPREC=${1:?usage: $0 PATH_TO_KPREC [MODE...]}; shift
KPREC=$(cd "$(dirname "$KPREC")" && pwd)/$(basename "$KPREC")
MODES=("$@"); [ ${#MODES[@]} -gt 0 ] || MODES=(ssl mtls sasl_ssl_plain sasl_oauthbearer)
T=$(mktemp -d "${TMPDIR:-/tmp}/kprec-sec.XXXXXX")
WPID=""
"$ROOT/ops/install-deps.sh"
"$ROOT/ops/kafka.sh" fetch

cleanup() {
  local rc=$?
  [ -n "$WPID" ] && kill -9 "$WPID" 2>/dev/null || true
  [ -n "${KDIR:-}" ] && "$ROOT/ops/kafka.sh" stop "$KDIR" >/dev/null 2>&1 || true
  "$ROOT/ops/redis.sh" stop "$T/redis" >/dev/null 2>&1 || true
  if [ "$rc" -ne 0 ]; then
    for f in "$T"/*.log "${KDIR:-/nonexistent}/kafka.log"; do [ -f "$f" ] && { echo "== $f" >&2; tail -25 "$f" >&2; }; done
  fi
  [ -n "${KEEP_TMP:-}" ] || rm -rf "$T"
  exit "$rc"
}
trap cleanup EXIT
fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*" >&2; }

# ---- certificates: a CA, the broker's certificate (SAN 127.0.0.1), a client certificate with
# an encrypted key (mTLS), and a second CA nobody trusts
PW="kprec-store-$$"
C=$T/certs; mkdir -p "$C"
(
  cd "$C"
  q() { "$@" >/dev/null 2>&1 || { echo "cert step failed: $*" >&2; "$@"; exit 1; }; }
  q openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.pem -days 2 -subj /CN=kprec-test-ca
  q openssl req -x509 -newkey rsa:2048 -nodes -keyout rogue.key -out rogue.pem -days 2 -subj /CN=kprec-rogue-ca
  printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\n' >san.ext
  q openssl req -newkey rsa:2048 -nodes -keyout broker.key -out broker.csr -subj /CN=127.0.0.1
  q openssl x509 -req -in broker.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out broker.pem -days 2 -extfile san.ext
  q openssl pkcs12 -export -in broker.pem -inkey broker.key -certfile ca.pem -name broker -out broker.p12 -passout "pass:$PW"
  q keytool -importcert -noprompt -alias ca -file ca.pem -keystore trust.p12 -storetype PKCS12 -storepass "$PW"
  q openssl req -newkey rsa:2048 -keyout client.key -passout "pass:$PW" -out client.csr -subj /CN=kprec-client
  q openssl x509 -req -in client.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out client.pem -days 2
  q openssl req -newkey rsa:2048 -nodes -keyout rclient.key -out rclient.csr -subj /CN=kprec-rogue-client
  q openssl x509 -req -in rclient.csr -CA rogue.pem -CAkey rogue.key -CAcreateserial -out rclient.pem -days 2
)
ok "certificates in $C"

"$ROOT/ops/esci-prepare.sh" "$T/data" 2>/dev/null
head -21 "$T/data/items.tsv" >"$T/items20.tsv"
RPORT=$("$ROOT/ops/redis.sh" start "$T/redis")
SASL_PW="plain-pw-$$"

# conf MODE VARIANT: writes $T/MODE-VARIANT.ini (VARIANT good, or a failure case) and prints it
conf() {
  local mode=$1 var=$2 f="$T/$1-$2.ini" ca="$C/ca.pem"
  [ "$var" = untrusted ] && ca="$C/rogue.pem"
  {
    printf '[worker]\nbatch_linger_ms = 20\ntop_k = 5\n\n[redis]\nport = %s\n\n' "$RPORT"
    printf '[model]\nkeyphrases = %s\n\n[kafka]\nbootstrap.servers = %s\n' "$T/data/keyphrases.tsv" "$BOOT"
    printf 'ssl.ca.location = %s\n' "$ca"
    case "$mode" in
    ssl) printf 'security.protocol = SSL\n' ;;
    mtls)
      printf 'security.protocol = SSL\n'
      case "$var" in
      good | untrusted)
        printf 'ssl.certificate.location = %s\nssl.key.location = %s\nssl.key.password = %s\n' \
          "$C/client.pem" "$C/client.key" "$PW" ;;
      rogue_client)
        printf 'ssl.certificate.location = %s\nssl.key.location = %s\n' "$C/rclient.pem" "$C/rclient.key" ;;
      esac ;;
    sasl_ssl_plain)
      local pw=$SASL_PW; [ "$var" = wrong_password ] && pw="not-the-password"
      printf 'security.protocol = SASL_SSL\nsasl.mechanism = PLAIN\nsasl.username = kprec\nsasl.password = %s\n' "$pw" ;;
    sasl_oauthbearer)
      printf 'security.protocol = SASL_SSL\nsasl.mechanism = OAUTHBEARER\n'
      printf 'enable.sasl.oauthbearer.unsecure.jwt = true\nsasl.oauthbearer.config = principal=kprec-oauth-principal\n' ;;
    esac
  } >"$f"
  echo "$f"
}

# expect_failure MODE VARIANT PATTERN: kprec topics exits non-zero on its own (no hang), naming
# the cause (PATTERN, a grep -E regex)
expect_failure() {
  local f rc=0 t0=$SECONDS
  f=$(conf "$1" "$2")
  timeout 90 "$KPREC" topics -c "$f" >"$T/$1-$2.log" 2>&1 || rc=$?
  [ "$rc" -ne 0 ] || fail "$1/$2: kprec topics succeeded"
  [ "$rc" -ne 124 ] || fail "$1/$2: kprec topics hung (killed after 90 s)"
  grep -qiE "$3" "$T/$1-$2.log" || fail "$1/$2: no message matching '$3' in: $(tail -5 "$T/$1-$2.log")"
  ok "$1/$2: kprec topics exits $rc after $((SECONDS - t0)) s: $(grep -iE "$3" "$T/$1-$2.log" | head -1 | cut -c1-220)"
}

no_secrets() { # no_secrets FILE...: none of the secrets of the test in them
  if grep -F -e "$PW" -e "$SASL_PW" -e "kprec-oauth-principal" "$@"; then fail "a secret is printed in $*"; fi
}

rec_count() { redis-cli -p "$RPORT" --scan --pattern 'kprec:rec:*' | wc -l; }

# SCRAM with librdkafka < 2.6.1: one clear line at start-up (no broker needed: it comes first)
printf '[redis]\nport = %s\n[kafka]\nbootstrap.servers = 127.0.0.1:1\nsecurity.protocol = SASL_SSL\nsasl.mechanism = SCRAM-SHA-512\nsasl.username = u\nsasl.password = %s\n' \
  "$RPORT" "$SASL_PW" >"$T/scram.ini"
timeout 30 "$KPREC" worker -c "$T/scram.ini" >"$T/scram-worker.log" 2>&1 || true
RDV=$("$KPREC" version 2>&1 | sed -n 's/^librdkafka \([0-9.]*\).*/\1/p' | head -1)
if [ "$RDV" != 2.6.1 ] && [ "$(printf '%s\n' 2.6.1 "$RDV" | sort -V | head -1)" = "$RDV" ]; then
  [ "$(grep -c 'sasl.mechanism = SCRAM-SHA-512: librdkafka .* Kafka 4.x brokers reject (fixed in librdkafka 2.6.1)' "$T/scram-worker.log")" -eq 1 ] ||
    fail "no SCRAM line at start-up: $(head -3 "$T/scram-worker.log")"
  ok "SCRAM with $(grep -o 'librdkafka [0-9.]*' "$T/scram-worker.log" | head -1): one line at start-up"
fi
no_secrets "$T/scram-worker.log"

for mode in "${MODES[@]}"; do
  echo "== $mode" >&2
  [ -n "${KDIR:-}" ] && "$ROOT/ops/kafka.sh" stop "$KDIR" >/dev/null 2>&1 || true
  KDIR=$T/kafka-$mode # a fresh directory per broker: its kafka.log tells when it is up
  BOOT=$(KAFKA_SECURITY=$mode KAFKA_SSL_KEYSTORE=$C/broker.p12 KAFKA_SSL_TRUSTSTORE=$C/trust.p12 \
         KAFKA_SSL_PASSWORD=$PW KAFKA_SASL_USERS="kprec:$SASL_PW" "$ROOT/ops/kafka.sh" start "$KDIR")
  grep -q "SECURE://127.0.0.1" "$KDIR/server.properties" || fail "$mode: no secure listener"
  f=$(conf "$mode" good)
  "$KPREC" config -c "$f" >"$T/$mode-config.log"
  no_secrets "$T/$mode-config.log"
  timeout 90 "$KPREC" topics -c "$f" >"$T/$mode-topics.log" 2>&1 || fail "$mode: kprec topics failed"
  ok "$mode: kprec topics"
  redis-cli -p "$RPORT" flushall >/dev/null
  "$KPREC" worker -c "$f" >"$T/$mode-worker.log" 2>&1 &
  WPID=$!
  timeout 60 "$KPREC" replay -c "$f" --items "$T/items20.tsv" --count 20 --quiet >"$T/$mode-replay.log" 2>&1 ||
    fail "$mode: replay failed"
  ok "$mode: replayed 20 listings"
  end=$((SECONDS + 90))
  until [ "$(rec_count)" -ge 20 ]; do
    kill -0 "$WPID" 2>/dev/null || fail "$mode: the worker died"
    [ $SECONDS -lt $end ] || fail "$mode: only $(rec_count) of 20 items cached after 90 s"
    sleep 0.5
  done
  timeout 60 "$KPREC" dump -c "$f" --topic suggestions --max 20 >"$T/$mode-sugg.jsonl" 2>"$T/$mode-dump.log" ||
    fail "$mode: dump failed"
  [ "$(wc -l <"$T/$mode-sugg.jsonl")" -eq 20 ] || fail "$mode: $(wc -l <"$T/$mode-sugg.jsonl") suggestion records"
  kill -TERM "$WPID"; wait "$WPID" || fail "$mode: the worker exited non-zero on SIGTERM"
  WPID=""
  no_secrets "$T/$mode-worker.log" "$T/$mode-topics.log" "$T/$mode-replay.log"
  ok "$mode: worker round trip (20 items cached, 20 suggestion records)"
  case "$mode" in
  ssl) expect_failure ssl untrusted 'certificate verify failed|unable to get local issuer' ;;
  mtls)
    expect_failure mtls rogue_client 'handshake|certificate|SSL' ;;
  sasl_ssl_plain)
    expect_failure sasl_ssl_plain wrong_password 'authentication failed|invalid username or password'
    no_secrets "$T/sasl_ssl_plain-wrong_password.log"
    grep -qF "not-the-password" "$T/sasl_ssl_plain-wrong_password.log" && fail "the wrong password is printed"
    ;;
  sasl_oauthbearer) expect_failure sasl_oauthbearer untrusted 'certificate verify failed|unable to get local issuer' ;;
  esac
done
ok "all modes: ${MODES[*]}"
