#!/usr/bin/env bash
# Permanent produce errors on a real broker (issue 10):
#   - a missing output topic ([topics] dlq names none) stops the serve worker at start-up with a
#     clear error and exit code 2, instead of a batch retried for ever later; so does the
#     trainer (role = train), before it loads the model or joins its group;
#   - an invalid record of ~1 MB (as a Java producer may write: over librdkafka's
#     message.max.bytes of 1,000,000) is dead-lettered as a prefix with header "truncated" = its
#     length and the usual topic/partition/offset/error headers, and the worker goes on: the
#     items after it are served, and the dead-letter count says 1.
#   bash tests/sink/test_sink_errors.sh PATH_TO_KPREC PATH_TO_PRODUCE_RAW
RAW=${2:?usage: $0 PATH_TO_KPREC PATH_TO_PRODUCE_RAW}
source "$(dirname "$0")/../integration/lib.sh"
stack_up
BOOT=$(cat "$T/stack/kafka/bootstrap")

# ---- a missing topic: fatal at start-up ----
rc=0
KPREC_TOPICS_DLQ=kprec.no-such-topic timeout 150 "$KPREC" worker -c "$CONF" >"$T/missing.log" 2>&1 || rc=$?
[ "$rc" -eq 2 ] || fail "missing dead-letter topic: exit code $rc, expected 2 (124 = still running after 150 s)"
grep -q "topic kprec.no-such-topic does not exist" "$T/missing.log" ||
  fail "missing dead-letter topic: no clear error in the log: $(tail -3 "$T/missing.log")"
ok "a missing output topic: exit 2, '$(grep -o 'topic kprec.no-such-topic does not exist' "$T/missing.log" | head -1)'"

# ---- the trainer: a missing dead-letter topic is fatal at start-up too ----
mkdir -p "$T/ckpt-missing"
rc=0
KPREC_WORKER_ROLE=train KPREC_TRAIN_CHECKPOINT_DIR="$T/ckpt-missing" KPREC_TOPICS_DLQ=kprec.no-such-topic \
  timeout 120 "$KPREC" worker -c "$CONF" >"$T/train-missing.log" 2>&1 || rc=$?
[ "$rc" -eq 2 ] || fail "trainer, missing dead-letter topic: exit code $rc, expected 2 (124 = still running after 120 s): $(tail -3 "$T/train-missing.log")"
grep -q "trainer: topic kprec.no-such-topic does not exist" "$T/train-missing.log" ||
  fail "trainer, missing dead-letter topic: no clear error in the log: $(tail -3 "$T/train-missing.log")"
grep -q "trainer: consuming" "$T/train-missing.log" &&
  fail "trainer, missing dead-letter topic: it joined its group before failing"
ok "trainer, a missing dead-letter topic: exit 2 before consuming, '$(grep -o 'trainer: topic kprec.no-such-topic does not exist' "$T/train-missing.log" | head -1)'"

# ---- a ~1 MB invalid record: dead-lettered as a prefix, the worker goes on ----
MPORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
start_worker worker KPREC_WORKER_METRICS_PORT="$MPORT"
wait_for 150 "worker metrics" curl -sf "http://127.0.0.1:$MPORT/healthz" -o /dev/null
BIG=1040000
"$RAW" "$BOOT" items.listed big-one "$BIG" >&2 || fail "could not write the ~1 MB record"
"$KPREC" replay -c "$CONF" --items "$T/data/items.tsv" --count 20 --quiet
twenty() { [ "$(rec_keys)" -ge 20 ]; }
wait_for 120 "the 20 items after the ~1 MB record cached" twenty
dead_lettered() {
  curl -sf "http://127.0.0.1:$MPORT/metrics" | grep -q '^kprec_events_dead_lettered_total{topic="items"} 1$'
}
wait_for 60 "1 dead-lettered event" dead_lettered
"$KPREC" dump -c "$CONF" --topic dlq --idle-ms 3000 >"$T/dlq.jsonl"
python3 - "$T/dlq.jsonl" "$BIG" <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
big = int(sys.argv[2])
assert len(recs) == 1, f"{len(recs)} DLQ records, expected 1: {recs}"
r = recs[0]
h = r["headers"]
assert r["key"] == "big-one", r
assert h.get("truncated") == str(big), f"header truncated: {h}"
assert 0 < r["bytes"] < 1000000, f"the copy has {r['bytes']} bytes"
assert h["topic"] == "items.listed" and h["error"] and int(h["offset"]) >= 0 and "partition" in h, h
print(f"ok: the {big}-byte record dead-lettered as {r['bytes']} bytes, headers {sorted(h)}", file=sys.stderr)
PY
grep -q "records failed; retrying\|deliveries failed; retrying" "$T/worker.log" && fail "the worker retried a permanent error: $(grep -m1 'retrying' "$T/worker.log")"
ok "no retry of the permanent error"
