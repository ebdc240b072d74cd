#!/usr/bin/env bash
# Debian's redis-server on a loopback port, in its own directory (as hiredis' test.sh does).
#
#   ops/redis.sh start DIR [PORT [BIND]]
#                                   start in DIR (no persistence) on BIND (default 127.0.0.1),
#                                   wait for PONG, print the port
#   ops/redis.sh stop DIR           shut it down
#   ops/redis.sh restart DIR [S]    shut it down saving its data (DIR/dump.rdb), wait S seconds (0),
#                                   start it again on the same port with that data (the file is
#                                   removed once loaded)
# REDIS_ACLFILE=FILE (optional): users and their rights from an ACL file (redis-server --aclfile);
# with the default user switched off the readiness check accepts NOAUTH as an answer.
set -euo pipefail
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
cmd=${1:-}; shift || true
case "$cmd" in
start)
  dir=${1:?usage: redis.sh start DIR [PORT [BIND]]}; port=${2:-$(free_port)}; bind=${3:-127.0.0.1}
  command -v redis-server >/dev/null || { echo "redis.sh: redis-server not found: run ops/install-deps.sh" >&2; exit 1; }
  mkdir -p "$dir"; dir=$(cd "$dir" && pwd)
  acl=(); [ -n "${REDIS_ACLFILE:-}" ] && acl=(--aclfile "$(cd "$(dirname "$REDIS_ACLFILE")" && pwd)/$(basename "$REDIS_ACLFILE")")
  # off loopback (a test's private network) there is no password: protected mode would refuse
  prot=yes; [ "$bind" = 127.0.0.1 ] || prot=no
  redis-server --port "$port" --bind "$bind" --protected-mode "$prot" --dir "$dir" --save "" --appendonly no \
               --daemonize yes --pidfile "$dir/redis.pid" --logfile "$dir/redis.log" "${acl[@]}"
  for _ in $(seq 1 100); do
    if [[ "$(redis-cli -h "$bind" -p "$port" ping 2>/dev/null)" =~ ^(PONG|NOAUTH) ]]; then echo "$bind" >"$dir/bind"; echo "$port" >"$dir/port"; echo "$port"; exit 0; fi
    sleep 0.1
  done
  echo "redis.sh: redis-server did not answer on $port" >&2; cat "$dir/redis.log" >&2; exit 1 ;;
stop)
  dir=${1:?usage: redis.sh stop DIR}
  [ -f "$dir/port" ] && redis-cli -h "$(cat "$dir/bind" 2>/dev/null || echo 127.0.0.1)" -p "$(cat "$dir/port")" shutdown nosave >/dev/null 2>&1 || true
  if [ -f "$dir/redis.pid" ]; then kill "$(cat "$dir/redis.pid")" 2>/dev/null || true; fi
  rm -f "$dir/port" ;;
restart)
  dir=${1:?usage: redis.sh restart DIR [SECONDS]}; down=${2:-0}
  dir=$(cd "$dir" && pwd)
  port=$(cat "$dir/port" 2>/dev/null) || { echo "redis.sh: no redis-server started in $dir" >&2; exit 1; }
  pid=$(cat "$dir/redis.pid" 2>/dev/null || true)
  rm -f "$dir/dump.rdb"
  redis-cli -p "$port" shutdown save >/dev/null 2>&1 || true
  for _ in $(seq 1 200); do
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || break
    sleep 0.1
  done
  [ -f "$dir/dump.rdb" ] || { echo "redis.sh: shutdown did not save $dir/dump.rdb" >&2; tail -5 "$dir/redis.log" >&2; exit 1; }
  sleep "$down"
  "$0" start "$dir" "$port"
  rm -f "$dir/dump.rdb" ;;
*) sed -n '2,11p' "$0" >&2; exit 2 ;;
esac
