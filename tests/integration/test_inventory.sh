#!/usr/bin/env bash
# The keyphrase inventory on its compacted topic, on a real Kafka broker and Redis: `kprec replay
# --keyphrases` publishes it; a worker with NO keyphrases file serves from it; keyphrases added
# and removed on the topic change the suggestions live (no rebuild: the log says how many were
# applied); a removed keyphrase is never suggested after its removal is applied; a worker started
# on an empty disk bootstraps from the topic.
source "$(dirname "$0")/lib.sh"
"$ROOT/ops/esci-prepare.sh" "$T/data"
"$ROOT/ops/stack.sh" up "$T/stack" "$KPREC" # no keyphrases file
CONF=$T/stack/kprec.ini
RPORT=$(cat "$T/stack/redis/port")
printf '\n[topics]\ninventory = keyphrases.inventory\n' >>"$CONF"
sed -i 's/^\[model\]$/[model]\nhybrid = 5/' "$CONF" # BM25 candidates too: rebuilt after changes
# (outputs go through variables: a `grep -q` that exits early would break a pipe under pipefail)
out=$("$KPREC" topics -c "$CONF")
grep -q "keyphrases.inventory: created" <<<"$out" || fail "inventory topic not created: $out"
out=$("$KPREC" config -c "$CONF" 2>/dev/null)
grep -q '^keyphrases *= *$' <<<"$out" || fail "the config has a keyphrases file"
N0=$(($(wc -l <"$T/data/keyphrases.tsv") - 1))
"$KPREC" replay -c "$CONF" --keyphrases "$T/data/keyphrases.tsv" --quiet
ok "published $N0 keyphrases"

MPORT=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
start_worker worker KPREC_WORKER_METRICS_PORT="$MPORT"
wait_for 90 "worker metrics" curl -sf "http://127.0.0.1:$MPORT/healthz" -o /dev/null
grep -q "inventory: read keyphrases.inventory to its end: $N0 keyphrases" "$T/worker.log" ||
  fail "the worker did not read $N0 keyphrases from the topic"
grep -q ": $N0 keyphrases indexed" "$T/worker.log" || fail "the worker does not serve $N0 keyphrases"
ok "worker serves the $N0 keyphrases of the topic"

# suggestions_of ITEM: the keyphrase texts suggested for ITEM (one a line), from Redis
suggestions_of() { "$KPREC" get -c "$CONF" --json "$1" 2>/dev/null |
  python3 -c 'import json,sys; [print(s["keyphrase"]) for s in json.loads(sys.stdin.read())["suggestions"]]'; }
ids_of() { "$KPREC" get -c "$CONF" --json "$1" 2>/dev/null |
  python3 -c 'import json,sys; [print(s["id"]) for s in json.loads(sys.stdin.read())["suggestions"]]'; }
# publish_item ID TITLE, then wait until it is cached
publish_item() {
  printf 'item_id\ttitle\n%s\t%s\n' "$1" "$2" >"$T/item.tsv"
  "$KPREC" replay -c "$CONF" --items "$T/item.tsv" --quiet
  wait_for 60 "item $1 cached" "$KPREC" get -c "$CONF" "$1" >/dev/null 2>&1
}
# applied N: the worker's log has N inventory changes applied in total since the mark
mark() { MARK=$(wc -l <"$T/worker.log"); }
applied() {
  local got
  got=$(tail -n +"$((MARK + 1))" "$T/worker.log" | sed -n 's/.*inventory: \([0-9]*\) keyphrases added, changed or removed.*/\1/p' |
    awk '{s+=$1} END {print s+0}')
  [ "$got" -ge "$1" ]
}

# 1. an addition: a keyphrase nothing else resembles becomes the first suggestion of its item
title="zyxwv quantum widget deluxe edition"
publish_item before-add "$title"
out=$(suggestions_of before-add)
[ -n "$out" ] || fail "no suggestions for before-add"
grep -qx "zyxwv quantum widget" <<<"$out" && fail "suggested before it was added"
printf 'keyphrase_id\tkeyphrase\nq-new-1\tzyxwv quantum widget\n' >"$T/add.tsv"
mark
"$KPREC" replay -c "$CONF" --keyphrases "$T/add.tsv" --quiet
wait_for 60 "the addition applied" applied 1
publish_item after-add "$title"
ids_of after-add >"$T/top.txt"
grep -qx "q-new-1" "$T/top.txt" || fail "the added keyphrase is not suggested: $(cat "$T/top.txt")"
out=$(tail -n +"$((MARK + 1))" "$T/worker.log")
grep -q "re-embedding\|keyphrases re-embedded" <<<"$out" && fail "the addition rebuilt the whole index"
ok "added keyphrase suggested (applied live, no rebuild)"

# 2. removals: the added one and the 10 keyphrases of an item's list
{ echo "keyphrase_id	keyphrase"; while read -r id; do printf '%s\tx\n' "$id"; done <"$T/top.txt"; } >"$T/rm.tsv"
nrm=$(($(wc -l <"$T/rm.tsv") - 1))
[ "$nrm" -eq 10 ] || fail "expected 10 suggestions to remove, got $nrm"
mark
"$KPREC" replay -c "$CONF" --keyphrases "$T/rm.tsv" --remove --quiet
wait_for 60 "the removals applied" applied "$nrm"
publish_item after-rm "$title"
ids_of after-rm >"$T/after.txt"
[ -s "$T/after.txt" ] || fail "no suggestions after the removal"
if grep -Fxf "$T/top.txt" "$T/after.txt"; then fail "a removed keyphrase was suggested"; fi
ok "none of the $nrm removed keyphrases suggested after the removal"
N1=$((N0 + 1 - nrm))

# 3. a bad record on the inventory topic (an ItemListed) is dead-lettered; the set stays as it was
printf 'item_id\ttitle\nnot-a-keyphrase\tsome title\n' >"$T/bad.tsv"
"$KPREC" replay -c "$CONF" --items "$T/bad.tsv" --topic keyphrases.inventory --quiet
bad_dead_lettered() {
  "$KPREC" dump -c "$CONF" --topic dlq >"$T/dlq.jsonl" 2>/dev/null
  grep -q '"topic":"keyphrases.inventory"' "$T/dlq.jsonl"
}
wait_for 60 "the bad inventory record in the DLQ" bad_dead_lettered
grep -q 'expected Keyphrase' "$T/dlq.jsonl" || fail "no reason in the DLQ record: $(cat "$T/dlq.jsonl")"
ok "a bad inventory record is dead-lettered"

# 4. a worker on an empty disk (new temp dir, no file, no cache) bootstraps from the topic
kill "$WPID"
wait "$WPID" 2>/dev/null || true
mark
start_worker worker2 KPREC_WORKER_METRICS_PORT="$MPORT" # nothing on disk: no file, no cache
wait_for 90 "second worker metrics" curl -sf "http://127.0.0.1:$MPORT/healthz" -o /dev/null
grep -q "inventory: read keyphrases.inventory to its end: $N1 keyphrases" "$T/worker2.log" ||
  fail "the second worker did not bootstrap $N1 keyphrases: $(grep inventory "$T/worker2.log" | head -3)"
publish_item boot "$title"
ids_of boot >"$T/boot.txt"
[ -s "$T/boot.txt" ] || fail "no suggestions from the bootstrapped worker"
if grep -Fxf "$T/top.txt" "$T/boot.txt"; then fail "the bootstrapped worker suggests a removed keyphrase"; fi
ok "a worker on an empty disk bootstraps $N1 keyphrases from the topic"
