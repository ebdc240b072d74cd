#!/usr/bin/env bash
# The serve worker on real Kafka and a real Redis Cluster (run inside with_cluster.sh, which exports
# KPREC_REDIS_CLUSTER: the worker inherits it and writes to the cluster, not to the stack's Redis).
# 3,000 items are replayed (200/s); once a third is cached a master is killed (kill -9); its replica is
# promoted, the worker resumes, and at the end every item has exactly one entry, with its title.
#   tests/cluster/with_cluster.sh bash tests/cluster/test_cluster_worker.sh PATH_TO_KPREC
source "$(dirname "$0")/../integration/lib.sh"
: "${KPREC_REDIS_CLUSTER:?run me through tests/cluster/with_cluster.sh}"
IFS=, read -ra NODES <<<"$KPREC_REDIS_CLUSTER"
DEAD=

# the live masters' ports
masters() {
  for n in "${NODES[@]}"; do
    p=${n##*:}
    [ "$p" = "$DEAD" ] && continue
    if [ "$(redis-cli -p "$p" role 2>/dev/null | sed -n 1p)" = master ]; then echo "$p"; fi
  done
  return 0
}
cluster_count() { # keys matching $1 on all live masters
  local t=0
  for p in $(masters); do t=$((t + $(redis-cli -p "$p" --scan --pattern "$1" | wc -l))); done
  echo "$t"
}

stack_up
start_worker worker
# at 200 events/s, so that the kill lands mid-run
"$KPREC" replay -c "$CONF" --items "$T/data/items.tsv" --count 3000 --rate 200 --quiet &
REPLAY=$!
at_exit 'kill "$REPLAY" 2>/dev/null'
third() { [ "$(cluster_count 'kprec:rec:*')" -ge 1000 ]; }
wait_for 300 "1000 entries in the cluster" third
DEAD=$(masters | sed -n 1p)
kill -9 "$(cat "$KPREC_TEST_CLUSTER_DIR/$DEAD/redis.pid")"
ok "killed master $DEAD at $(cluster_count 'kprec:rec:*') entries"
promoted() { [ "$(masters | wc -l)" -eq 3 ]; }
wait_for 60 "a replica promoted" promoted
wait "$REPLAY" || fail "kprec replay failed"
all_cached() { [ "$(cluster_count 'kprec:rec:*')" -ge 3000 ]; }
wait_for 300 "3000 entries in the cluster" all_cached
n=$(cluster_count 'kprec:rec:*') t=$(cluster_count 'kprec:item:*')
[ "$n" -eq 3000 ] || fail "expected exactly 3000 entries, got $n"
[ "$t" -eq 3000 ] || fail "expected 3000 titles, got $t"
grep -q 'pausing consumption' "$T/worker.log" || fail "the worker never saw the master go"
grep -qE '(redis is|sinks are) back' "$T/worker.log" || fail "the worker did not say it resumed"
ok "3000 entries and titles after the failover"
first=$(sed -n 2p "$T/data/items.tsv" | cut -f1)
"$KPREC" get -c "$CONF" "$first" >"$T/get.txt" || fail "kprec get $first through the cluster"
ok "kprec get through the cluster: $(cut -c1-120 "$T/get.txt" | sed -n 1p)"
