#!/usr/bin/env bash
# Runs a test binary against its own Redis Cluster: 6 redis-server processes (cluster-enabled, no
# persistence) on free loopback ports in a temp dir, made 3 masters + 3 replicas by
# `redis-cli --cluster create --cluster-replicas 1`. The test gets
#   KPREC_REDIS_CLUSTER     the six nodes, host:port,...
#   KPREC_TEST_CLUSTER_DIR  the temp dir: node PORT runs in DIR/PORT (redis.pid, redis.log)
# cluster-node-timeout is 1500 ms, so a killed master's replica takes over within seconds.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
"$ROOT/ops/install-deps.sh"
T=$(mktemp -d "${TMPDIR:-/tmp}/kprec-cluster.XXXXXX")
stop_all() {
  for p in "$T"/*/redis.pid; do [ -f "$p" ] && kill -9 "$(cat "$p")" 2>/dev/null || true; done
  rm -rf "$T"
}
trap stop_all EXIT
# six ports whose cluster bus port (+10000) is free too
mapfile -t PORTS < <(python3 - <<'PY'
import random, socket
def free(p):
    s = socket.socket()
    try:
        s.bind(("127.0.0.1", p)); return True
    except OSError:
        return False
    finally:
        s.close()
got = []
while len(got) < 6:
    p = random.randint(20000, 45000)
    if p not in got and free(p) and free(p + 10000):
        got.append(p)
print("\n".join(map(str, got)))
PY
)
nodes=()
for port in "${PORTS[@]}"; do
  d=$T/$port; mkdir -p "$d"
  redis-server --port "$port" --bind 127.0.0.1 --dir "$d" --save "" --appendonly no \
    --cluster-enabled yes --cluster-config-file "$d/nodes.conf" --cluster-node-timeout 1500 \
    --daemonize yes --pidfile "$d/redis.pid" --logfile "$d/redis.log"
  nodes+=("127.0.0.1:$port")
done
for port in "${PORTS[@]}"; do
  for _ in $(seq 1 100); do
    [ "$(redis-cli -p "$port" ping 2>/dev/null)" = PONG ] && break
    sleep 0.1
  done
done
redis-cli --cluster create "${nodes[@]}" --cluster-replicas 1 --cluster-yes >"$T/create.log" 2>&1 ||
  { cat "$T/create.log" >&2; exit 1; }
# every node agrees the cluster is up and sees 6 nodes
for port in "${PORTS[@]}"; do
  for i in $(seq 1 200); do
    info=$(redis-cli -p "$port" cluster info 2>/dev/null || true)
    [[ "$info" == *cluster_state:ok* && "$info" == *cluster_known_nodes:6* ]] && break
    [ "$i" = 200 ] && { echo "with_cluster.sh: node $port: cluster not ok" >&2; echo "$info" >&2; exit 1; }
    sleep 0.1
  done
done
# and every replica has finished its first sync
for port in "${PORTS[@]}"; do
  for i in $(seq 1 200); do
    repl=$(redis-cli -p "$port" info replication 2>/dev/null || true)
    [[ "$repl" == *role:master* || "$repl" == *master_link_status:up* ]] && break
    [ "$i" = 200 ] && { echo "with_cluster.sh: replica $port never synced" >&2; exit 1; }
    sleep 0.1
  done
done
KPREC_REDIS_CLUSTER=$(IFS=,; echo "${nodes[*]}") KPREC_TEST_CLUSTER_DIR=$T "$@"
