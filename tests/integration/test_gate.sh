#!/usr/bin/env bash
# The serving pipeline in a real worker (Kafka + Redis): BE top-30 + BM25 top-10 -> CE re-rank ->
# calibrated p -> gate. 500 items are replayed; every item gets a Redis entry and a suggestion
# record (possibly with an empty list); every published score is a probability >= the threshold,
# at most top_k per item, ranked; items left with none are counted in /metrics.
source "$(dirname "$0")/lib.sh"
stack_up
D=$T/data
"$KPREC" split --items "$D/items.tsv" --judgments "$D/judgments.tsv" --out "$T/h" --valid-frac 0.3 \
  --seed 3 >/dev/null 2>&1
TR=(--items "$T/h/train_items.tsv" --keyphrases "$D/keyphrases.tsv" --judgments "$T/h/train_judgments.tsv")
"$KPREC" train-ce "${TR[@]}" --out "$T/ce.kpm" --epochs 1 --quiet >/dev/null 2>&1 || fail "train-ce"
"$KPREC" train "${TR[@]}" --out "$T/be.kpm" --epochs 1 --quiet >/dev/null 2>&1 || fail "train"
thr=$("$KPREC" calibrate --model "$T/be.kpm" --ce "$T/ce.kpm" --items "$T/h/valid_items.tsv" \
  --keyphrases "$D/keyphrases.tsv" --judgments "$T/h/valid_judgments.tsv" --out "$T/cal.kpm" 2>"$T/cal.log") ||
  fail "calibrate: $(cat "$T/cal.log")"
ok "models trained, calibration fitted (suggested threshold $thr)"

# a broken pipeline setting stops the worker at start-up with a clear message
if KPREC_MODEL_PATH="$T/be.kpm" KPREC_MODEL_CALIBRATION="$T/cal.kpm" KPREC_MODEL_FOLLOW=0 \
  timeout 60 "$KPREC" worker -c "$CONF" >"$T/bad.log" 2>&1; then fail "a CE calibration without a CE started"; fi
grep -q "cross-encoder" "$T/bad.log" || fail "no clear start-up error: $(tail -3 "$T/bad.log")"
ok "calibration of CE scores without [model] ce: start-up error"

MPORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
start_worker worker KPREC_WORKER_METRICS_PORT="$MPORT" KPREC_WORKER_TOP_K=10 \
  KPREC_MODEL_PATH="$T/be.kpm" KPREC_MODEL_CE="$T/ce.kpm" KPREC_MODEL_CANDIDATES=30 \
  KPREC_MODEL_HYBRID=10 KPREC_MODEL_CALIBRATION="$T/cal.kpm" KPREC_MODEL_THRESHOLD="$thr"
W=$WPID
wait_for 120 "worker metrics" curl -sf "http://127.0.0.1:$MPORT/healthz" -o /dev/null
grep -q "pipeline: re-ranking with cross-encoder" "$T/worker.log" || fail "no re-rank line in the log"

"$KPREC" replay -c "$CONF" --items "$D/items.tsv" --count 500 --quiet
cached() { [ "$(rec_keys)" -ge 500 ]; }
wait_for 300 "500 Redis entries" cached
delivered() { curl -sf "http://127.0.0.1:$MPORT/metrics" | grep -q '^kprec_suggestions_delivered_total 500$'; }
wait_for 60 "500 deliveries" delivered
ok "500 Redis entries, 500 suggestion records"

"$KPREC" dump -c "$CONF" --topic suggestions >"$T/sugg.jsonl"
none=$(python3 - "$T/sugg.jsonl" 10 "$thr" <<'PY'
import json, sys
recs = [json.loads(l) for l in open(sys.argv[1])]
k, t = int(sys.argv[2]), float(sys.argv[3])
assert len({r["item_id"] for r in recs}) == 500, "not 500 items"
lens = [len(r["suggestions"]) for r in recs]
assert max(lens) <= k, f"more than {k} suggestions"
for r in recs:
    s = [x["score"] for x in r["suggestions"]]
    assert all(t - 1e-6 <= x <= 1 for x in s), f"score below the threshold {t} or not a probability: {r}"
    assert s == sorted(s, reverse=True), f"unsorted: {r}"
assert min(lens) < k, "the gate never shortened a list"
print(sum(1 for n in lens if n == 0))
print(f"ok: {len(recs)} records, mean {sum(lens)/len(lens):.2f} suggestions, all p >= {t}", file=sys.stderr)
PY
) || fail "suggestion records"
ok "every published p >= $thr, at most 10 per item; $none items with none"
curl -sf "http://127.0.0.1:$MPORT/metrics" >"$T/metrics.txt"
grep -q "^kprec_items_without_suggestions_total $none$" "$T/metrics.txt" ||
  fail "metric: $(grep items_without "$T/metrics.txt") (want $none)"
ok "kprec_items_without_suggestions_total $none"
first=$(sed -n 2p "$D/items.tsv" | cut -f1)
"$KPREC" get -c "$CONF" "$first" >&2 || fail "kprec get"
rcli hget "kprec:rec:$first" suggestions | grep -Eq '^\[\]$|"raw":' || fail "no raw score beside the calibrated one"
ok "the cached JSON carries the raw score beside p"

kill -TERM "$W"
wait "$W" || fail "worker exited with $?"
ok "SIGTERM: clean exit 0"
