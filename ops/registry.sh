#!/usr/bin/env bash
# A real schema registry with a Confluent-compatible API, for local runs and tests: Apicurio
# Registry 2.6 (a Quarkus app on Java 17), fetched from Maven Central through ops/pom.xml's
# dependency plugin, storage in an H2 database file under DIR so a restart keeps every id.
#
#   ops/registry.sh fetch             download and unpack the app (once; in $KPREC_REGISTRY_HOME)
#   ops/registry.sh start DIR [PORT]  start with a fresh empty store in DIR on 127.0.0.1:PORT, wait
#                                     until it answers; prints the base URL of the Confluent API
#                                     (http://127.0.0.1:PORT/apis/ccompat/v7)
#   ops/registry.sh stop DIR          stop it (SIGTERM, then SIGKILL)
#   ops/registry.sh restart DIR       start it again on the same port with the same store
#   ops/registry.sh status DIR        exit 0 if it runs
# REGISTRY_TLS_CERT=PEM REGISTRY_TLS_KEY=PEM (optional, at start): serve https only, with that
# certificate chain and key; the URL printed is then https://127.0.0.1:PORT/... and the readiness
# check trusts REGISTRY_TLS_CA (the CA of the certificate; the caller makes them, see
# tests/registry/with_registry.sh).
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
VERSION=2.6.13.Final
APP=${KPREC_REGISTRY_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/kprec/apicurio-registry-$VERSION}
JAR=apicurio-registry-app-$VERSION-runner.jar

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

fetch() {
  if [ -f "$APP/.complete" ]; then return 0; fi
  mkdir -p "$(dirname "$APP")"
  exec 9>"$APP.lock"; flock 9 # two tests starting at once fetch it once
  if [ -f "$APP/.complete" ]; then return 0; fi
  command -v mvn >/dev/null || { echo "registry.sh: mvn not found: run ops/install-deps.sh" >&2; exit 1; }
  mkdir -p "$APP"
  echo "registry.sh: fetching Apicurio Registry $VERSION into $APP" >&2
  mvn -q -B -f "$HERE/pom.xml" dependency:copy \
      -Dartifact="io.apicurio:apicurio-registry-app:$VERSION:tar.gz:all" \
      -DoutputDirectory="$APP" >&2
  tar -xzf "$APP/apicurio-registry-app-$VERSION-all.tar.gz" -C "$APP"
  rm -f "$APP/apicurio-registry-app-$VERSION-all.tar.gz"
  [ -f "$APP/$JAR" ] || { echo "registry.sh: $JAR not in the archive" >&2; exit 1; }
  touch "$APP/.complete"
}

# launch DIR: the app in the background on DIR/port, its store in DIR/db, its pid in DIR/registry.pid.
# The connection pool is small (Apicurio opens 20 H2 connections at start by default) and waits
# long for a connection: on a loaded 2-core machine the defaults made it die at start-up.
launch() {
  local dir=$1 port scheme=http
  local http=() check=()
  port=$(cat "$dir/port")
  http=(-Dquarkus.http.port="$port")
  if [ -f "$dir/tls" ]; then # cert, key, CA: one path a line
    mapfile -t tls <"$dir/tls"
    scheme=https
    http=(-Dquarkus.http.port=0 -Dquarkus.http.ssl-port="$port" -Dquarkus.http.insecure-requests=disabled
          -Dquarkus.http.ssl.certificate.files="${tls[0]}" -Dquarkus.http.ssl.certificate.key-files="${tls[1]}")
    check=(--cacert "${tls[2]}")
  fi
  REGISTRY_DATASOURCE_URL="jdbc:h2:file:$dir/db/registry" \
    nohup java -Xms64m -Xmx384m -Djava.awt.headless=true \
      -Dquarkus.http.host=127.0.0.1 "${http[@]}" \
      -Dquarkus.datasource.jdbc.initial-size=2 -Dquarkus.datasource.jdbc.min-size=2 \
      -Dquarkus.datasource.jdbc.max-size=16 -Dquarkus.datasource.jdbc.acquisition-timeout=120S \
      -jar "$APP/$JAR" >>"$dir/registry.log" 2>&1 </dev/null &
  echo $! >"$dir/registry.pid"
  for _ in $(seq 1 1500); do
    if curl -sf "${check[@]}" "$scheme://127.0.0.1:$port/apis/ccompat/v7/subjects" -o /dev/null; then
      echo "$scheme://127.0.0.1:$port/apis/ccompat/v7"; return 0
    fi
    kill -0 "$(cat "$dir/registry.pid")" 2>/dev/null ||
      { echo "registry.sh: registry died:" >&2; tail -30 "$dir/registry.log" >&2; exit 1; }
    sleep 0.2
  done
  echo "registry.sh: registry did not answer within 300 s" >&2; tail -30 "$dir/registry.log" >&2; exit 1
}

stop_registry() {
  local dir=$1 pid
  [ -f "$dir/registry.pid" ] || return 0
  pid=$(cat "$dir/registry.pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid" 2>/dev/null || true
    for _ in $(seq 1 100); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$dir/registry.pid"
}

cmd=${1:-}; shift || true
case "$cmd" in
fetch) fetch ;;
start)
  dir=${1:?usage: registry.sh start DIR [PORT]}; port=${2:-$(free_port)}
  fetch
  mkdir -p "$dir"; dir=$(cd "$dir" && pwd)
  if [ -f "$dir/registry.pid" ] && kill -0 "$(cat "$dir/registry.pid")" 2>/dev/null; then
    echo "registry.sh: already running in $dir" >&2; echo "http://127.0.0.1:$(cat "$dir/port")/apis/ccompat/v7"; exit 0
  fi
  rm -rf "$dir/db" "$dir/tls"; mkdir -p "$dir/db"
  echo "$port" >"$dir/port"
  if [ -n "${REGISTRY_TLS_CERT:-}" ]; then
    : "${REGISTRY_TLS_KEY:?REGISTRY_TLS_CERT needs REGISTRY_TLS_KEY}" "${REGISTRY_TLS_CA:?REGISTRY_TLS_CERT needs REGISTRY_TLS_CA}"
    printf '%s\n' "$REGISTRY_TLS_CERT" "$REGISTRY_TLS_KEY" "$REGISTRY_TLS_CA" >"$dir/tls"
  fi
  launch "$dir" ;;
stop)
  dir=${1:?usage: registry.sh stop DIR}
  stop_registry "$dir" ;;
restart)
  dir=${1:?usage: registry.sh restart DIR}
  dir=$(cd "$dir" && pwd)
  [ -f "$dir/port" ] || { echo "registry.sh: no registry was started in $dir" >&2; exit 1; }
  stop_registry "$dir"
  launch "$dir" ;;
status)
  dir=${1:?usage: registry.sh status DIR}
  [ -f "$dir/registry.pid" ] && kill -0 "$(cat "$dir/registry.pid")" 2>/dev/null ;;
*) sed -n '2,17p' "$0" >&2; exit 2 ;;
esac
