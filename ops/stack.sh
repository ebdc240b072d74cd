#!/usr/bin/env bash
# The whole local stack in one directory: a Kafka broker, a Redis server, the topics, and a
# worker config pointing at them.
#
#   ops/stack.sh up DIR KPREC_BINARY [KEYPHRASES_TSV]
#       starts Kafka and Redis on free loopback ports, writes DIR/kprec.ini, creates the topics
#   ops/stack.sh down DIR
#       stops what `up` started (workers started by the caller are the caller's to stop)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cmd=${1:-}; shift || true
case "$cmd" in
up)
  dir=${1:?usage: stack.sh up DIR KPREC [KEYPHRASES]}; kprec=${2:?usage: stack.sh up DIR KPREC [KEYPHRASES]}
  kps=${3:-}
  mkdir -p "$dir"; dir=$(cd "$dir" && pwd)
  bootstrap=$("$HERE/kafka.sh" start "$dir/kafka")
  rport=$("$HERE/redis.sh" start "$dir/redis")
  cat >"$dir/kprec.ini" <<INI
[worker]
batch_size = 256
batch_linger_ms = 20
top_k = 10

[redis]
port = $rport

[model]
keyphrases = $kps

[kafka]
bootstrap.servers = $bootstrap
INI
  "$kprec" topics -c "$dir/kprec.ini" >/dev/null
  echo "stack: kafka $bootstrap, redis 127.0.0.1:$rport, config $dir/kprec.ini" >&2 ;;
down)
  dir=${1:?usage: stack.sh down DIR}
  "$HERE/redis.sh" stop "$dir/redis" || true
  "$HERE/kafka.sh" stop "$dir/kafka" || true ;;
*) sed -n '2,10p' "$0" >&2; exit 2 ;;
esac
