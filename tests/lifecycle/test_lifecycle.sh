#!/usr/bin/env bash
# The model lifecycle on a real Kafka broker and Redis (started here): a serve worker and a trainer;
# 300 items cached by the trainer's first checkpoint C1 (snapshot S1); clicks train it to version
# N; `kprec model list` shows the versions; `kprec rescore` moves every cached item to N (S2 != S1);
# an A/B split (candidate = C1's file, 50%) and a shadow (C1's file) on a restarted worker: arms by
# the hash of item_id in Redis and in the records, candidate items scored as S1, live ones as S2,
# shadow lists on the shadow topic only; `kprec model rollback C1` while the trainer runs publishes
# N+1 with C1's weights: the replica serves N+1, the trainer is fenced (its final publish fails and
# the topic stays at N+1), a rescore brings every item back to S1's lists at version N+1, and a
# restarted trainer continues from N+1.
source "$(dirname "$0")/../integration/lib.sh"
stack_up
N_ITEMS=300
head -n $((N_ITEMS + 1)) "$T/data/items.tsv" >"$T/items300.tsv"
"$KPREC" simulate-clicks --items "$T/items300.tsv" --keyphrases "$T/data/keyphrases.tsv" \
  --judgments "$T/data/judgments.tsv" --out "$T/clicks.tsv" --sessions 8 >/dev/null
mkdir -p "$T/ckpt"
printf '\n[model]\nhmac_key = lifecycle-key\n' >>"$CONF"
fast_trainer_conf
# trainers: their own checkpoint cache; one checkpoint per lineage (the first) and at a clean stop,
# so the topic keeps every version from C1 on (no DeleteRecords in between)
TRAINER_ENV=(KPREC_WORKER_ROLE=train KPREC_TRAIN_CHECKPOINT_DIR="$T/ckpt" KPREC_TRAIN_CHECKPOINT_EVERY=100000)
port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
metric() { curl -sf "http://127.0.0.1:$1/metrics" | awk -v k="$2" '$1 == k { print $2 }'; }

TP=$(port)
start_worker trainer1 "${TRAINER_ENV[@]}" KPREC_WORKER_METRICS_PORT="$TP"
TR=$WPID
c1_published() { grep -q "trainer: published checkpoint version" "$T/trainer1.log"; }
wait_for 120 "the trainer's first checkpoint" c1_published
C1=$(sed -n 's/.*trainer: published checkpoint version \([0-9]*\).*/\1/p' "$T/trainer1.log" | head -1)
cp "$T"/ckpt/be-v"$C1"-l*.kpm "$T/c1.kpm"
ok "trainer published its first checkpoint, version $C1"

MP=$(port)
start_worker serve1 KPREC_WORKER_METRICS_PORT="$MP"
SV=$WPID
at_version() { [ "$(metric "$MP" kprec_model_version)" = "$1" ]; }
wait_for 120 "serve1 at version $C1" at_version "$C1"
"$KPREC" replay -c "$CONF" --items "$T/data/items.tsv" --count $N_ITEMS --quiet
all_cached() { [ "$(rec_keys)" -ge $N_ITEMS ]; }
wait_for 120 "$N_ITEMS items cached" all_cached

# snapshot FILE: item_id<TAB>model_version<TAB>suggestions JSON of every cached item
snapshot() {
  rcli --scan --pattern 'kprec:rec:*' | sort | while read -r k; do
    printf '%s\t%s\t%s\n' "${k#kprec:rec:}" "$(rcli hget "$k" model_version)" "$(rcli hget "$k" suggestions)"
  done >"$1"
}
snapshot "$T/s1.tsv"
cut -f2 "$T/s1.tsv" | sort -u | grep -qx "$C1" || fail "S1 is not at version $C1"

# training: clicks until the trainer has published a few versions past C1
"$KPREC" replay -c "$CONF" --clicks "$T/clicks.tsv" --keyphrases "$T/data/keyphrases.tsv" --rate 4000 --quiet
trained() { [ "$(metric "$TP" kprec_model_version)" -ge $((C1 + 4)) ]; }
wait_for 180 "the trainer 4 versions past $C1" trained
quiet_trainer() {
  local a b
  a=$(metric "$TP" kprec_model_version); sleep 5; b=$(metric "$TP" kprec_model_version)
  [ "$a" = "$b" ]
}
wait_for 180 "the trainer to go quiet" quiet_trainer
N=$(metric "$TP" kprec_model_version)
wait_for 120 "serve1 at version $N" at_version "$N"
ok "trained to version $N; serve1 serves it"

# model list: every version from C1 to N, the checkpoint C1, the newest N
"$KPREC" model list -c "$CONF" >"$T/list.txt"
"$KPREC" model list -c "$CONF" --json >"$T/list.jsonl"
python3 - "$T/list.jsonl" "$C1" "$N" <<'PY' || fail "model list"
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1])]
c1, n = int(sys.argv[2]), int(sys.argv[3])
vs = {r["version"] for r in rows}
assert set(range(c1, n + 1)) <= vs, (sorted(vs), c1, n)
assert any(r["version"] == c1 and r["type"] == "checkpoint" for r in rows), "no checkpoint C1"
assert max(vs) == n, (max(vs), n)
assert all(r["chunks"] == r["count"] for r in rows), "incomplete versions listed"
for r in rows:
    if r["type"] == "delta":
        assert r["base"] == r["version"] - 1, r
PY
grep -q "newest version $N," "$T/list.txt" || fail "model list: no 'newest version $N' line"
ok "model list: versions $C1..$N ($(grep -c checkpoint "$T/list.txt") checkpoint line(s))"

# rescore: every item cached at C1 moves to N
"$KPREC" rescore -c "$CONF" --rate 1000/s >"$T/rescore1.out" 2>"$T/rescore1.err" || fail "rescore failed: $(tail -3 "$T/rescore1.err")"
cat "$T/rescore1.out" >&2
grep -q "^rescore: $N_ITEMS/$N_ITEMS (100.0%)" "$T/rescore1.err" || fail "no final progress line"
grep -q "re-scored $N_ITEMS," "$T/rescore1.out" || fail "rescore did not re-score $N_ITEMS items"
snapshot "$T/s2.tsv"
[ "$(cut -f2 "$T/s2.tsv" | sort -u)" = "$N" ] || fail "after rescore not every item is at $N"
"$KPREC" rescore -c "$CONF" --quiet >"$T/rescore2.out" 2>/dev/null || fail "second rescore failed"
grep -q "re-scored 0, current $N_ITEMS," "$T/rescore2.out" || fail "a second rescore was not a no-op: $(cat "$T/rescore2.out")"
ok "rescore: $N_ITEMS items from $C1 to $N; a second run re-scores nothing"

# compare A B [KEYS]: suggestions lists equal (same ids, scores within 1e-4), for the items of KEYS
compare() {
  python3 - "$@" <<'PY'
import json, sys
def load(p):
    return {l.split("\t")[0]: json.loads(l.rstrip("\n").split("\t", 2)[2]) for l in open(p)}
a, b = load(sys.argv[1]), load(sys.argv[2])
keys = [l.strip() for l in open(sys.argv[3])] if len(sys.argv) > 3 else list(a)
def same(x, y):
    return len(x) == len(y) and all(
        p["id"] == q["id"] and abs(p["score"] - q["score"]) < 1e-4 for p, q in zip(x, y))
diff = [k for k in keys if not same(a[k], b[k])]
print(len(keys) - len(diff), len(keys))
PY
}
read -r same total < <(compare "$T/s1.tsv" "$T/s2.tsv")
[ "$same" -lt "$total" ] || fail "training changed no item's suggestions ($same/$total equal)"
ok "training changed the suggestions of $((total - same))/$total items"

# A/B split + shadow on a restarted worker (C1's file as candidate and shadow)
kill -TERM "$SV"; wait "$SV" || fail "serve1 exited with $?"
MP=$(port)
start_worker serve2 KPREC_WORKER_METRICS_PORT="$MP" KPREC_MODEL_AB_CANDIDATE="$T/c1.kpm" \
  KPREC_MODEL_AB_WEIGHT=50 KPREC_MODEL_SHADOW="$T/c1.kpm"
SV=$WPID
wait_for 120 "serve2 at version $N" at_version "$N"
grep -q "arms: A/B split: 50%" "$T/serve2.log" || fail "serve2 did not start the split"
T_AB=$(date +%s%3N)
"$KPREC" replay -c "$CONF" --items "$T/data/items.tsv" --count $N_ITEMS --quiet
armed() { [ "$(rcli --scan --pattern 'kprec:rec:*' | while read -r k; do rcli hget "$k" suggestions; done | grep -c '"arm"')" -ge $N_ITEMS ]; }
wait_for 120 "$N_ITEMS items re-cached with an arm" armed
snapshot "$T/s_ab.tsv"
"$KPREC" dump -c "$CONF" --topic suggestions >"$T/sugg.jsonl"
shadow_all() { "$KPREC" dump -c "$CONF" --topic shadow >"$T/shadow.jsonl"; [ "$(wc -l <"$T/shadow.jsonl")" -ge $N_ITEMS ]; }
wait_for 60 "$N_ITEMS shadow records" shadow_all
python3 - "$T/s_ab.tsv" "$T/sugg.jsonl" "$T/shadow.jsonl" "$T/cand.txt" "$T/live.txt" "$C1" "$N" <<'PY' || fail "A/B split or shadow"
import json, sys
ab, sugg, shadow, cand_out, live_out, c1, n = sys.argv[1:8]
def fnv1a(s):
    h = 0xcbf29ce484222325
    for b in s.encode():
        h = ((h ^ b) * 0x100000001b3) & 0xFFFFFFFFFFFFFFFF
    return h
want = lambda i: "candidate" if fnv1a(i) % 100 < 50 else "live"
rows = [l.rstrip("\n").split("\t", 2) for l in open(ab)]
cand, live = [], []
for item, ver, js in rows:
    lst = json.loads(js)
    arms = {s.get("arm") for s in lst}
    assert ver == n, (item, ver)
    if lst:
        assert arms == {want(item)}, (item, arms, want(item))
    (cand if want(item) == "candidate" else live).append(item)
assert len(cand) > 0.3 * len(rows) and len(live) > 0.3 * len(rows), (len(cand), len(live))
assert "shadow" not in open(ab).read(), "a shadow list reached Redis"
recs = [json.loads(l) for l in open(sugg)]
armed = {r["item_id"]: r.get("arm") for r in recs if r.get("arm")}
assert len(armed) == len(rows), (len(armed), len(rows))
assert all(a == want(i) for i, a in armed.items()), "record arm != hash arm"
sh = [json.loads(l) for l in open(shadow)]
assert all(r.get("arm") == "shadow" and r["model_version"] == int(c1) for r in sh), sh[:1]
assert {r["item_id"] for r in sh} >= {r[0] for r in rows}, "items without a shadow list"
open(cand_out, "w").write("\n".join(cand) + "\n")
open(live_out, "w").write("\n".join(live) + "\n")
print(f"ok: arms by hash: {len(cand)} candidate, {len(live)} live; {len(sh)} shadow records", file=sys.stderr)
PY
read -r same total < <(compare "$T/s_ab.tsv" "$T/s1.tsv" "$T/cand.txt")
[ "$same" -eq "$total" ] || fail "candidate-arm items not scored by the candidate ($same/$total)"
read -r same total < <(compare "$T/s_ab.tsv" "$T/s2.tsv" "$T/live.txt")
[ "$same" -eq "$total" ] || fail "live-arm items not scored by the live model ($same/$total)"
ok "A/B: candidate items scored as C1 ($total live items as version $N); shadow on its topic only"

# rollback to C1 while the trainer runs: a new version N+1 with C1's weights
kill -0 "$TR" || fail "the trainer is not running"
"$KPREC" model rollback -c "$CONF" --dry-run "$C1" | grep -q "would publish version $((N + 1))" || fail "rollback --dry-run"
"$KPREC" model rollback -c "$CONF" "$((N + 5))" 2>/dev/null && fail "rollback to a version newer than the topic's succeeded"
"$KPREC" model rollback -c "$CONF" "$C1" >"$T/rollback.out" || fail "rollback failed"
cat "$T/rollback.out" >&2
grep -q "published version $((N + 1)) .* with the weights of version $C1" "$T/rollback.out" || fail "rollback output"
wait_for 120 "serve2 at version $((N + 1))" at_version "$((N + 1))"
kill -TERM "$TR"; wait "$TR" || true
grep -q "fenced" "$T/trainer1.log" || fail "the trainer was not fenced"
"$KPREC" model list -c "$CONF" >"$T/list2.txt"
grep -q "newest version $((N + 1))," "$T/list2.txt" || fail "a fenced trainer published after the rollback: $(tail -1 "$T/list2.txt")"
grep -q "rollback to the weights of $C1" "$T/list2.txt" || fail "model list does not mark the rollback"
ok "rollback: version $((N + 1)) published with C1's weights; the running trainer was fenced"

# the worker without the split; rescore: every item at N+1, scored as in S1
kill -TERM "$SV"; wait "$SV" || fail "serve2 exited with $?"
# --from-time: only the events of the second replay (offsets_for_times); a time after every event
"$KPREC" rescore -c "$CONF" --quiet --dry-run --from-time "$T_AB" >"$T/rescore_t.out" 2>/dev/null || fail "rescore --from-time"
grep -q "examined $N_ITEMS, would re-score $N_ITEMS," "$T/rescore_t.out" || fail "rescore --from-time: $(cat "$T/rescore_t.out")"
"$KPREC" rescore -c "$CONF" --quiet --dry-run --from-time "$(date +%s%3N)" >"$T/rescore_t2.out" 2>/dev/null || fail "rescore --from-time now"
grep -q "examined 0," "$T/rescore_t2.out" || fail "rescore --from-time now: $(cat "$T/rescore_t2.out")"
"$KPREC" rescore -c "$CONF" --rate 100/s >"$T/rescore3.out" 2>"$T/rescore3.err" || fail "rescore after rollback"
grep -q "re-scored $N_ITEMS," "$T/rescore3.out" || fail "rescore after rollback: $(cat "$T/rescore3.out")"
# the cap bounds the scan's time from below: 300 items at 100/s take at least 2 s (the final
# progress line's "elapsed", which starts after the model and the connections are set up)
el=$(sed -n 's/^rescore: .* elapsed \([0-9]*\)s .*/\1/p' "$T/rescore3.err" | tail -1)
[ -n "$el" ] && [ "$el" -ge 2 ] || fail "--rate 100/s re-scored $N_ITEMS items in ${el:-?} s: $(tail -1 "$T/rescore3.err")"
ok "rescore --rate 100/s: $N_ITEMS items re-scored in ${el} s"
snapshot "$T/s3.tsv"
[ "$(cut -f2 "$T/s3.tsv" | sort -u)" = "$((N + 1))" ] || fail "after rollback + rescore not every item is at $((N + 1))"
read -r same total < <(compare "$T/s3.tsv" "$T/s1.tsv")
[ "$same" -eq "$total" ] || fail "rolled-back suggestions differ from C1's ($same/$total equal)"
ok "after rollback + rescore: $total items at version $((N + 1)) with C1's suggestions"

# a restarted trainer continues from the rollback
TP=$(port)
start_worker trainer2 "${TRAINER_ENV[@]}" KPREC_WORKER_METRICS_PORT="$TP"
TR=$WPID
continued() { grep -q "trainer: starting at model version $((N + 1))" "$T/trainer2.log"; }
wait_for 120 "the restarted trainer at version $((N + 1))" continued
kill -TERM "$TR"; wait "$TR" || true
ok "the restarted trainer continued from version $((N + 1))"
