#!/usr/bin/env bash
# End to end on a real Kafka broker and a real Redis: 5,000 items (plus 50 malformed records) are
# replayed; every item gets exactly one Redis entry and a suggestion record with K keyphrases; the
# 50 bad records land in the dead-letter topic with their reason; nothing is lost.
source "$(dirname "$0")/lib.sh"
stack_up
MPORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
start_worker worker KPREC_WORKER_METRICS_PORT="$MPORT"
W=$WPID
wait_for 60 "worker metrics" curl -sf "http://127.0.0.1:$MPORT/healthz" -o /dev/null

t0=$(date +%s.%N)
"$KPREC" replay -c "$CONF" --items "$T/data/items.tsv" --count 5000 --bad 50 --v0-every 7 --quiet
all_cached() { [ "$(rec_keys)" -ge 5000 ]; }
wait_for 300 "5000 Redis entries" all_cached
t1=$(date +%s.%N)
dead_lettered() {
  curl -sf "http://127.0.0.1:$MPORT/metrics" | grep -q '^kprec_events_dead_lettered_total{topic="items"} 50$'
}
wait_for 60 "50 dead-lettered events" dead_lettered

n=$(rec_keys)
[ "$n" -eq 5000 ] || fail "expected exactly 5000 Redis entries, got $n"
ok "5000 distinct Redis entries"

"$KPREC" dump -c "$CONF" --topic suggestions >"$T/sugg.jsonl"
python3 - "$T/sugg.jsonl" 10 <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
k = int(sys.argv[2])
bad = [r for r in recs if "error" in r]
assert not bad, f"undecodable suggestion records: {bad[:3]}"
ids = {r["item_id"] for r in recs}
assert len(recs) >= 5000, f"only {len(recs)} suggestion records"
assert len(ids) == 5000, f"{len(ids)} distinct items in suggestions, expected 5000"
short = [r["item_id"] for r in recs if len(r["suggestions"]) != k]
assert not short, f"{len(short)} records without {k} keyphrases, e.g. {short[:3]}"
assert all(r["key"] == r["item_id"] for r in recs), "record key differs from item_id"
for r in recs:
    s = [x["score"] for x in r["suggestions"]]
    assert s == sorted(s, reverse=True), f"unsorted suggestions for {r['item_id']}"
print(f"ok: {len(recs)} suggestion records, {len(ids)} items, {k} keyphrases each", file=sys.stderr)
PY

"$KPREC" dump -c "$CONF" --topic dlq >"$T/dlq.jsonl"
python3 - "$T/dlq.jsonl" <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
assert len(recs) == 50, f"{len(recs)} DLQ records, expected 50"
for r in recs:
    h = r["headers"]
    assert h["topic"] == "items.listed" and h["error"] and int(h["offset"]) >= 0 and "partition" in h, r
    assert r["key"].startswith("bad-"), r
reasons = sorted({r["headers"]["error"].split(":")[0] for r in recs})
print(f"ok: 50 DLQ records with topic/partition/offset/error headers; reasons: {reasons}", file=sys.stderr)
PY

# one item through the CLI
first=$(sed -n 2p "$T/data/items.tsv" | cut -f1)
"$KPREC" get -c "$CONF" "$first" | tee "$T/get.txt" >&2
[ "$(grep -c '^ *[0-9]*\. ' "$T/get.txt")" -eq 10 ] || fail "kprec get did not print 10 suggestions"

# processed is counted after the suggestion's delivery report, which can trail the Redis entry
processed5000() {
  curl -sf "http://127.0.0.1:$MPORT/metrics" | grep -q '^kprec_events_processed_total{topic="items"} 5000$'
}
wait_for 60 "5000 events processed" processed5000
curl -sf "http://127.0.0.1:$MPORT/metrics" >"$T/metrics.txt"
grep -q '^kprec_events_consumed_total{topic="items"} 5050$' "$T/metrics.txt" || fail "consumed != 5050: $(grep consumed "$T/metrics.txt")"
grep -q '^kprec_events_processed_total{topic="items"} 5000$' "$T/metrics.txt" || fail "processed != 5000"
grep -q '^kprec_suggestions_delivered_total 5000$' "$T/metrics.txt" || fail "delivered != 5000"
ok "metrics: 5050 consumed, 5000 processed, 50 dead-lettered, 5000 delivered"
grep -Eq '^kprec_build_info\{version="[0-9]+\.[0-9]+\.[0-9]+",revision="[^"]+",librdkafka="[0-9.]+",.*openblas_core="[^"]+".*\} 1$' "$T/metrics.txt" ||
  fail "no kprec_build_info gauge: $(grep build_info "$T/metrics.txt")"
grep -q 'INFO kprec [0-9.]* (git [^)]*);librdkafka 2' "$T/worker.log" || fail "no build line at worker start-up"
ok "metrics: kprec_build_info $(grep -o 'version="[^"]*",revision="[^"]*"' "$T/metrics.txt")"

# inventory update without a restart: a new keyphrase in the file becomes searchable
printf 'q-new-1\tzyxwv quantum widget\n' >>"$T/data/keyphrases.tsv"
reloaded() { grep -q "follower: model version .* ready (2618 keyphrases" "$T/worker.log"; }
wait_for 60 "the inventory reload" reloaded
printf 'item_id\ttitle\nnew-item-1\tzyxwv quantum widget deluxe edition\n' >"$T/new.tsv"
"$KPREC" replay -c "$CONF" --items "$T/new.tsv" --quiet
new_cached() { "$KPREC" get -c "$CONF" new-item-1 >"$T/new.txt" 2>/dev/null; }
wait_for 60 "the new item cached" new_cached
grep -q "zyxwv quantum widget" "$T/new.txt" || fail "new keyphrase not suggested: $(cat "$T/new.txt")"
ok "inventory reloaded while running: the new keyphrase is suggested"

kill -TERM "$W"
for _ in $(seq 1 100); do kill -0 "$W" 2>/dev/null || break; sleep 0.2; done
kill -0 "$W" 2>/dev/null && fail "worker did not stop within 20 s of SIGTERM"
wait "$W" || fail "worker exited with $?"
grep -q "worker: stopping" "$T/worker.log" || fail "no clean stop in the log"
ok "SIGTERM: clean exit 0"
python3 -c "print(f'THROUGHPUT: 5050 events end to end in {$t1-$t0:.2f} s = {5050/($t1-$t0):.0f} events/s')" | tee -a "$T/throughput" >&2
