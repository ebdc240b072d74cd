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
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
VERSION=2.6.13.Final
APP=${KPREC_REGISTRY_HOME:-${XDG_CACHE_HOME:-$HOME/.cache}/kprec/apicurio-registry-$VERSION}
JAR=apicurio-registry-app-$VERSION-runner.jar

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

fetch() {
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

# launch DIR: the app in the background on DIR/port, its store in DIR/db, its pid in DIR/registry.pid
launch() {
  local dir=$1 port
  port=$(cat "$dir/port")
  REGISTRY_DATASOURCE_URL="jdbc:h2:file:$dir/db/registry" \
    nohup java -Xms64m -Xmx384m -Djava.awt.headless=true \
      -Dquarkus.http.host=127.0.0.1 -Dquarkus.http.port="$port" \
      -jar "$APP/$JAR" >>"$dir/registry.log" 2>&1 </dev/null &
  echo $! >"$dir/registry.pid"
  for _ in $(seq 1 600); do
    if curl -sf "http://127.0.0.1:$port/apis/ccompat/v7/subjects" -o /dev/null; then
      echo "http://127.0.0.1:$port/apis/ccompat/v7"; return 0
    fi
    kill -0 "$(cat "$dir/registry.pid")" 2>/dev/null ||
      { echo "registry.sh: registry died:" >&2; tail -30 "$dir/registry.log" >&2; exit 1; }
    sleep 0.2
  done
  echo "registry.sh: registry did not answer within 120 s" >&2; tail -30 "$dir/registry.log" >&2; exit 1
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
  rm -rf "$dir/db"; mkdir -p "$dir/db"
  echo "$port" >"$dir/port"
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
*) sed -n '2,13p' "$0" >&2; exit 2 ;;
esac
