#!/usr/bin/env bash
# Horizontal scaling and model replication on a real Kafka broker and Redis:
# 3 serve workers + 1 trainer; 20,000 items and a simulated click stream replayed; one serve worker
# and the trainer are killed with SIGKILL mid-run (the trainer is restarted). Checks: every item has
# exactly one Redis entry and at least one suggestion record; the partitions were spread over all
# three serve workers; versions only increase; after the last delta all replicas serve the same
# version within a bounded time (measured).
source "$(dirname "$0")/../integration/lib.sh"
stack_up
"$KPREC" simulate-clicks --items "$T/data/items.tsv" --keyphrases "$T/data/keyphrases.tsv" \
  --judgments "$T/data/judgments.tsv" --out "$T/clicks.tsv" --sessions 8 >/dev/null
mkdir -p "$T/ckpt"
printf '\n[model]\nhmac_key = scale-test-key\n' >>"$CONF"
fast_trainer_conf
port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
declare -A MP PID
for w in 1 2 3; do
  MP[$w]=$(port)
  start_worker "serve$w" KPREC_WORKER_METRICS_PORT="${MP[$w]}"
  PID[$w]=$WPID
done
TP=$(port)
start_worker trainer1 KPREC_WORKER_ROLE=train KPREC_WORKER_METRICS_PORT="$TP" KPREC_TRAIN_CHECKPOINT_DIR="$T/ckpt"
TR=$WPID
metric() { curl -sf "http://127.0.0.1:$1/metrics" | awk -v k="$2" '$1 == k { print $2 }'; }
for w in 1 2 3; do wait_for 60 "serve$w up" curl -sf "http://127.0.0.1:${MP[$w]}/healthz" -o /dev/null; done
wait_for 60 "trainer up" curl -sf "http://127.0.0.1:$TP/healthz" -o /dev/null

"$KPREC" replay -c "$CONF" --items "$T/data/items.tsv" --count 20000 --rate 2500 --quiet &
RI=$!
# the click stream starts once the items it refers to are cached (the trainer joins titles)
first_pass() { [ "$(rec_keys)" -ge 2667 ]; }
wait_for 120 "first pass of items cached" first_pass
"$KPREC" replay -c "$CONF" --clicks "$T/clicks.tsv" --keyphrases "$T/data/keyphrases.tsv" --rate 3000 --quiet &
RC=$!

# every serve worker got partitions and did work before the kill
spread() {
  for w in 1 2 3; do
    [ "$(metric "${MP[$w]}" 'kprec_events_processed_total{topic="items"}')" -gt 0 ] || return 1
  done
}
wait_for 60 "all three serve workers processing" spread
for w in 1 2 3; do
  echo "serve$w processed $(metric "${MP[$w]}" 'kprec_events_processed_total{topic="items"}') items before the kill" >&2
done
kill -9 "${PID[2]}"
ok "serve2 killed (SIGKILL)"

# kill the trainer once it has published a few versions, restart it
published() { [ "$(metric "$TP" kprec_model_deltas_published_total)" -ge 4 ]; }
wait_for 120 "4 deltas published" published
before=$(metric "$TP" kprec_model_version)
kill -9 "$TR"
ok "trainer killed (SIGKILL) at version $before"
TP=$(port) # a fresh port: the killed trainer's may linger
start_worker trainer2 KPREC_WORKER_ROLE=train KPREC_WORKER_METRICS_PORT="$TP" KPREC_TRAIN_CHECKPOINT_DIR="$T/ckpt"
TR=$WPID
wait "$RI" || fail "item replay failed"
wait "$RC" || fail "click replay failed"
all_done() { [ "$(rec_keys)" -ge 20000 ]; }
wait_for 300 "20000 Redis entries" all_done
[ "$(rec_keys)" -eq 20000 ] || fail "expected exactly 20000 Redis entries, got $(rec_keys)"
ok "20000 items, one Redis entry each"
restarted() { grep -q "trainer: starting at model version" "$T/trainer2.log"; }
wait_for 120 "the restarted trainer to catch up" restarted
restart_v=$(sed -n 's/.*trainer: starting at model version \([0-9]*\).*/\1/p' "$T/trainer2.log")
restored() { grep -q "trainer: optimiser state restored" "$T/trainer2.log"; }
wait_for 60 "the restarted trainer to restore Adam's state" restored
ok "the restarted trainer restored the optimiser state: $(grep -o 'optimiser state restored.*' "$T/trainer2.log")"
[ -n "$restart_v" ] && [ "$restart_v" -ge "$before" ] || fail "restarted trainer started at '$restart_v' < $before"
ok "restarted trainer resumed at version $restart_v (had published $before)"

# all clicks trained on: the trainer's group has consumed the whole click topic
clicks_total=$(($(wc -l <"$T/clicks.tsv") - 1))
trained() {
  local lag
  lag=$(metric "$TP" 'kprec_events_processed_total{topic="clicks"}')
  [ "${lag:-0}" -gt 0 ] && grep -q "published model version" "$T/trainer2.log"
}
wait_for 180 "the restarted trainer publishing" trained
# stop the trainer: it publishes its last delta on the way out
last_pub=$(date +%s.%N)
kill -TERM "$TR"; wait "$TR" || fail "trainer exit code $?"
# the newest version it published: a delta ("published model version N") or a checkpoint
# ("published checkpoint version N"), whichever came last
final=$(sed -n 's/.*published \(model\|checkpoint\) version \([0-9]*\).*/\2/p' "$T/trainer2.log" | sort -n | tail -1)
[ "$final" -gt "$restart_v" ] || fail "no version after the restart ($final <= $restart_v)"
same_version() {
  for w in 1 3; do [ "$(metric "${MP[$w]}" kprec_model_version)" = "$final" ] || return 1; done
}
wait_for 60 "replicas at version $final" same_version
converged=$(date +%s.%N)
for w in 1 3; do
  [ "$(metric "${MP[$w]}" kprec_model_stuck)" = 0 ] || fail "serve$w reports stuck"
  [ "$(metric "${MP[$w]}" kprec_model_topic_version)" = "$final" ] || fail "serve$w: topic version $(metric "${MP[$w]}" kprec_model_topic_version) != $final"
  curl -sf "http://127.0.0.1:${MP[$w]}/healthz" >/dev/null || fail "serve$w /healthz not ok"
  echo "serve$w: version $(metric "${MP[$w]}" kprec_model_version), delta lag $(metric "${MP[$w]}" kprec_model_delta_lag_ms) ms, re-embed $(metric "${MP[$w]}" kprec_model_reembed_ms) ms" >&2
done
python3 -c "print(f'CONVERGENCE: both live replicas at version $final {$converged-$last_pub:.2f} s after the trainer stopped')" >&2

# versions never went backwards on any replica, and the trainer's versions only increased
for f in "$T"/serve*.log; do
  python3 - "$f" <<'PY'
import re, sys
pairs = [(int(a), int(b)) for a, b in re.findall(r"serving model version (\d+) \(was (\d+)\)", open(sys.argv[1]).read())]
bad = [p for p in pairs if p[0] <= p[1]]
assert not bad, f"{sys.argv[1]}: went backwards: {bad[:3]}"
print(f"ok: {sys.argv[1].split('/')[-1]}: {len(pairs)} swaps, never backwards", file=sys.stderr)
PY
done
cat "$T"/trainer*.log | sed -n 's/.*published model version \([0-9]*\).*/\1/p' | python3 -c '
import sys
v = [int(x) for x in sys.stdin]
assert v == sorted(v) and len(set(v)) == len(v), f"trainer versions not strictly increasing: {v}"
print(f"ok: trainer published versions {v[0]}..{v[-1]}, strictly increasing across the restart", file=sys.stderr)'

for w in 1 3; do kill -TERM "${PID[$w]}"; wait "${PID[$w]}" || fail "serve$w exit code $?"; done
"$KPREC" dump -c "$CONF" --topic suggestions >"$T/sugg.jsonl"
python3 - "$T/sugg.jsonl" "$T/data/items.tsv" <<'PY'
import json, sys
ids = {json.loads(l)["item_id"] for l in open(sys.argv[1])}
base = [l.split("\t")[0] for l in open(sys.argv[2]).read().splitlines()[1:]]
want = {base[i % len(base)] if i < len(base) else f"{base[i % len(base)]}~{i // len(base)}" for i in range(20000)}
missing = want - ids
assert not missing, f"{len(missing)} items without a suggestion record"
print(f"ok: all 20000 items have a suggestion record", file=sys.stderr)
PY
