#!/usr/bin/env bash
# [schemas] registry end to end: real Kafka, Redis and Apicurio Registry (ops/registry.sh).
#   1. kprec replay registers ItemListed (and its v0) under items.listed-value and writes the
#      registry's ids; the worker registers KeyphraseSuggestions under keyphrases.suggested-value
#      and fetches the writer schemas by id: 200 items served, the 5 bad records dead-lettered
#      (the unknown id among them because the registry says 404).
#   2. While the worker runs, another producer registers a newer compatible ItemListed (two more
#      fields) and writes 100 events with it: served without a restart.
#   3. The registry goes down; the producer writes 100 events under a schema id the worker has not
#      seen yet (registered just before): the worker holds them (paused, nothing dead-lettered);
#      the registry comes back with the same store: all 100 served, nothing lost.
#   4. A trainer in registry mode learns from 300 judgments that kprec replay wrote with the
#      registry's id of Judgment: none dead-lettered.
# usage: test_registry_worker.sh KPREC REGPROD
source "$(dirname "$0")/../integration/lib.sh"
REGPROD=${2:?usage: $0 KPREC REGPROD}
stack_up
BOOT=$(cat "$T/stack/kafka/bootstrap")
REG=$("$ROOT/ops/registry.sh" start "$T/registry")
at_exit '"$ROOT/ops/registry.sh" stop "$T/registry"'
printf '\n[schemas]\nregistry = %s\n' "$REG" >>"$CONF"

# register FILE SUBJECT: prints the id the registry gives the schema in FILE
register() {
  python3 -c 'import json,sys;print(json.dumps({"schema":open(sys.argv[1]).read()}))' "$1" |
    curl -sf -X POST -H 'Content-Type: application/vnd.schemaregistry.v1+json' --data-binary @- \
      "$REG/subjects/$2/versions" | python3 -c 'import json,sys;print(json.load(sys.stdin)["id"])'
}
metric() { curl -sf "http://127.0.0.1:$MPORT/metrics" | awk -v k="$1" '$1==k {print $2}'; }
dead() { metric 'kprec_events_dead_lettered_total{topic="items"}'; }

MPORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
start_worker worker KPREC_WORKER_METRICS_PORT="$MPORT"
wait_for 120 "worker metrics" curl -sf "http://127.0.0.1:$MPORT/healthz" -o /dev/null

# 1. kprec's own producers register their schemas
"$KPREC" replay -c "$CONF" --items "$T/data/items.tsv" --count 200 --bad 5 --v0-every 7 --quiet
n200() { [ "$(rec_keys)" -ge 200 ]; }
wait_for 120 "200 Redis entries" n200
d5() { [ "$(dead)" = 5 ]; }
wait_for 60 "5 dead-lettered events" d5
curl -sf "$REG/subjects" | python3 -c '
import json, sys
s = set(json.load(sys.stdin))
assert {"items.listed-value", "keyphrases.suggested-value"} <= s, s'
nv=$(curl -sf "$REG/subjects/items.listed-value/versions" | python3 -c 'import json,sys;print(len(json.load(sys.stdin)))')
[ "$nv" = 2 ] || fail "items.listed-value has $nv versions, expected 2 (ItemListed and its v0)"
SUGG_ID=$(curl -sf "$REG/subjects/keyphrases.suggested-value/versions/latest" | python3 -c 'import json,sys;print(json.load(sys.stdin)["id"])')
ok "replay and worker registered their schemas (suggestions id $SUGG_ID); 200 served, 5 dead-lettered"

# 2. a newer compatible ItemListed, registered while the worker runs
cat >"$T/v2.avsc" <<'AVSC'
{"type": "record", "name": "ItemListed", "namespace": "kprec", "fields": [
  {"name": "item_id", "type": "string"},
  {"name": "title", "type": "string"},
  {"name": "category", "type": "string", "default": ""},
  {"name": "brand", "type": "string", "default": ""},
  {"name": "price", "type": "double", "default": 0},
  {"name": "stock", "type": "long", "default": 0}
]}
AVSC
V2=$(register "$T/v2.avsc" items.listed-value)
"$REGPROD" "$BOOT" items.listed "$V2" "$T/v2.avsc" "$T/data/items.tsv" 100 v2
n300() { [ "$(rec_keys)" -ge 300 ]; }
wait_for 120 "300 Redis entries" n300
[ "$(dead)" = 5 ] || fail "dead-lettered $(dead), expected 5"
[ "$(rcli exists kprec:rec:v2-0)" = 1 ] || fail "no Redis entry for v2-0"
ok "100 events with the newer schema (registry id $V2) served without a restart"

# 3. the registry down and up again
sed 's/"name": "stock", "type": "long", "default": 0}/&,\n  {"name": "color", "type": "string", "default": ""}/' \
  "$T/v2.avsc" >"$T/v3.avsc"
V3=$(register "$T/v3.avsc" items.listed-value)
[ "$V3" != "$V2" ] || fail "v3 got the id of v2"
"$ROOT/ops/registry.sh" stop "$T/registry"
"$REGPROD" "$BOOT" items.listed "$V3" "$T/v3.avsc" "$T/data/items.tsv" 100 v3
paused() { grep -q "schema registry .*pausing consumption" "$T/worker.log"; }
wait_for 60 "the worker to pause on the registry" paused
sleep 5
[ "$(rec_keys)" -eq 300 ] || fail "$(rec_keys) Redis entries while the registry is down, expected 300"
[ "$(dead)" = 5 ] || fail "dead-lettered $(dead) while the registry is down, expected 5"
ok "registry down: the events of the unseen id are held (300 entries, 5 dead-lettered)"
"$ROOT/ops/registry.sh" restart "$T/registry" >/dev/null
n400() { [ "$(rec_keys)" -ge 400 ]; }
wait_for 120 "400 Redis entries" n400
grep -q "schema registry is back: resuming consumption" "$T/worker.log" || fail "no resume line"
# an event counts as processed once its Redis write and its suggestion's delivery report are
# both in, so the counter can trail the Redis entries by a batch: wait for it, then check it
processed400() { local n; n=$(metric 'kprec_events_processed_total{topic="items"}'); [ "${n:-0}" -ge 400 ]; }
wait_for 60 "400 events processed" processed400
[ "$(dead)" = 5 ] || fail "dead-lettered $(dead), expected 5"
[ "$(metric 'kprec_events_processed_total{topic="items"}')" = 400 ] ||
  fail "processed $(metric 'kprec_events_processed_total{topic="items"}'), expected 400"
ok "registry back: all 100 held events served, still 5 dead-lettered"

# the suggestion records carry the registry's id and decode through the registry
"$KPREC" dump -c "$CONF" --topic suggestions >"$T/sugg.jsonl"
"$KPREC" dump -c "$CONF" --topic dlq >"$T/dlq.jsonl"
python3 - "$T/sugg.jsonl" "$T/dlq.jsonl" "$SUGG_ID" <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
bad = [r for r in recs if "error" in r]
assert not bad, f"undecodable suggestion records: {bad[:3]}"
ids = {r["item_id"] for r in recs}
assert len(ids) == 400, f"{len(ids)} distinct items in suggestions, expected 400"
sids = {r["schema_id"] for r in recs}
assert sids == {int(sys.argv[3])}, f"suggestion schema ids {sids}, expected {{{sys.argv[3]}}}"
for p in ("v2-", "v3-"):
    n = sum(1 for i in ids if i.startswith(p))
    assert n == 100, f"{n} items {p}*, expected 100"
dlq = [json.loads(l) for l in open(sys.argv[2])]
assert len(dlq) == 5, f"{len(dlq)} DLQ records, expected 5"
unknown = [r for r in dlq if r["headers"]["error"].startswith("unknown schema id")]
assert len(unknown) == 1, [r["headers"]["error"] for r in dlq]
print(f"ok: {len(recs)} suggestion records of {len(ids)} items, schema id {sys.argv[3]}; "
      f"DLQ reasons {sorted(r['headers']['error'][:30] for r in dlq)}", file=sys.stderr)
PY

# 4. the trainer decodes through the registry too
fast_trainer_conf
TPORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
mkdir -p "$T/ckpt"
start_worker trainer KPREC_WORKER_ROLE=train KPREC_WORKER_METRICS_PORT="$TPORT" KPREC_TRAIN_CHECKPOINT_DIR="$T/ckpt"
wait_for 120 "trainer metrics" curl -sf "http://127.0.0.1:$TPORT/healthz" -o /dev/null
"$KPREC" replay -c "$CONF" --judgments "$T/data/judgments.tsv" --keyphrases "$T/data/keyphrases.tsv" \
  --items "$T/data/items.tsv" --count 300 --quiet
tmetric() { curl -sf "http://127.0.0.1:$TPORT/metrics" | awk -v k="$1" '$1==k {print $2}'; }
learned() { [ "$(tmetric 'kprec_events_processed_total{topic="judgments"}')" = 300 ]; }
wait_for 120 "the trainer to learn from 300 judgments" learned
td=$(tmetric 'kprec_events_dead_lettered_total{topic="judgments"}')
[ "${td:-0}" = 0 ] || fail "the trainer dead-lettered $td judgments"
JID=$(curl -sf "$REG/subjects/relevance.judgments-value/versions/latest" | python3 -c 'import json,sys;print(json.load(sys.stdin)["id"])')
ok "trainer: 300 judgments with registry id $JID learned from, none dead-lettered"
