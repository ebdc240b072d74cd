#!/usr/bin/env bash
# Does online learning help? And how fast is it? (issue 4)
#   bench/online.sh [--data DIR] [--out OUT] [--kprec BIN] [--sessions N]
# 1. split the items 80/20 (valid = held out), simulate a biased click log on the train items and
#    cut it in two halves by item (A, B);
# 2. train a bi-encoder offline on the clicks of A (kprec train) -> be0.kpm;
# 3. on a real Kafka + Redis: a serve worker and a trainer (role = train) start from be0.kpm; the
#    B items are replayed (so the trainer can join clicks to titles), then the B clicks;
# 4. the trainer's final checkpoint and be0.kpm are evaluated on the held-out items (kprec eval).
# Prints recall@50 before/after, the clicks/s the trainer sustained, delta size, publish-to-applied
# latency and re-embedding time.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
DATA=$ROOT/../shared/data/homedepot OUT=$ROOT/bench/out/online KPREC=$ROOT/build/kprec SESSIONS=4
while [ $# -gt 0 ]; do
  case "$1" in
    --data) DATA=$2; shift 2 ;; --out) OUT=$2; shift 2 ;;
    --kprec) KPREC=$2; shift 2 ;; --sessions) SESSIONS=$2; shift 2 ;;
    *) sed -n '2,12p' "$0" >&2; exit 2 ;;
  esac
done
rm -rf "$OUT"; mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
log() { echo "online: $*" >&2; }
"$KPREC" split --items "$DATA/items.tsv" --judgments "$DATA/judgments.tsv" --valid-frac 0.2 \
  --seed 0 --out "$OUT/split" >&2
"$KPREC" simulate-clicks --items "$DATA/items.tsv" --keyphrases "$DATA/keyphrases.tsv" \
  --judgments "$OUT/split/train_judgments.tsv" --out "$OUT/clicks.tsv" --sessions "$SESSIONS" --seed 1 >&2
# halves by item: every other train item (in file order) goes to B
awk -F'\t' 'NR > 1 { h[$1] = (n++ % 2) } END { for (i in h) print i "\t" h[i] }' \
  "$OUT/split/train_items.tsv" >"$OUT/half.tsv"
awk -F'\t' -v OFS='\t' 'FNR == NR { h[$1] = $2; next }
  FNR == 1 { print > a; print > b; next }
  h[$1] == 0 { print > a } h[$1] == 1 { print > b }' a="$OUT/clicksA.tsv" b="$OUT/clicksB.tsv" \
  "$OUT/half.tsv" "$OUT/clicks.tsv"
awk -F'\t' -v OFS='\t' 'FNR == NR { h[$1] = $2; next } FNR == 1 || h[$1] == 1' \
  "$OUT/half.tsv" "$OUT/split/train_items.tsv" >"$OUT/itemsB.tsv"
nA=$(($(wc -l <"$OUT/clicksA.tsv") - 1)); nB=$(($(wc -l <"$OUT/clicksB.tsv") - 1))
log "click log: $nA events on half A, $nB on half B"

t0=$(date +%s.%N)
"$KPREC" train --items "$DATA/items.tsv" --keyphrases "$DATA/keyphrases.tsv" --clicks "$OUT/clicksA.tsv" \
  --out "$OUT/be0.kpm" --epochs 2 --quiet
log "offline training on A: $(python3 -c "print(f'{$(date +%s.%N)-$t0:.0f}')") s"
evaluate() {
  "$KPREC" eval --model "$1" --items "$DATA/items.tsv" --keyphrases "$DATA/keyphrases.tsv" \
    --judgments "$OUT/split/valid_judgments.tsv" --json --threads 2 2>/dev/null
}
evaluate "$OUT/be0.kpm" >"$OUT/eval0.json"

"$ROOT/ops/stack.sh" up "$OUT/stack" "$KPREC" "$DATA/keyphrases.tsv"
CONF=$OUT/stack/kprec.ini
trap '"$ROOT/ops/stack.sh" down "$OUT/stack"' EXIT
sed -i "s|^\[model\]|[model]\npath = $OUT/be0.kpm|" "$CONF"
cat >>"$CONF" <<INI

[train]
checkpoint_dir = $OUT/ckpt
delta_steps = 20
delta_ms = 5000
checkpoint_every = 1000000
INI
port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
SP=$(port) TP=$(port)
KPREC_WORKER_METRICS_PORT=$SP "$KPREC" worker -c "$CONF" >"$OUT/serve.log" 2>&1 &
SW=$!
KPREC_WORKER_ROLE=train KPREC_WORKER_METRICS_PORT=$TP "$KPREC" worker -c "$CONF" >"$OUT/trainer.log" 2>&1 &
TW=$!
metric() { curl -sf "http://127.0.0.1:$1/metrics" | awk -v k="$2" '$1 == k { print $2 }'; }
until curl -sf "http://127.0.0.1:$SP/healthz" >/dev/null && curl -sf "http://127.0.0.1:$TP/healthz" >/dev/null; do sleep 0.5; done
nItems=$(($(wc -l <"$OUT/itemsB.tsv") - 1))
"$KPREC" replay -c "$CONF" --items "$OUT/itemsB.tsv" --quiet
until [ "$(metric "$SP" 'kprec_events_processed_total{topic="items"}')" -ge "$nItems" ]; do sleep 0.5; done
log "$nItems B items cached; streaming $nB clicks"
"$KPREC" replay -c "$CONF" --clicks "$OUT/clicksB.tsv" --keyphrases "$DATA/keyphrases.tsv" --quiet
t0=$(date +%s.%N)
until [ "$(metric "$TP" 'kprec_events_processed_total{topic="clicks"}')" -ge "$nB" ]; do sleep 1; done
t1=$(date +%s.%N)
kill -TERM "$TW"; wait "$TW"
final=$(ls "$OUT"/ckpt/be-v*.kpm | sort -V | tail -1)
sleep 3
delta_bytes=$(grep -o 'published model version [0-9]*: [0-9+]* rows, [0-9]* bytes' "$OUT/trainer.log" | awk '{s += $(NF-1); n++} END {printf "%.0f", s / n}')
deltas=$(grep -c 'published model version' "$OUT/trainer.log")
lag=$(metric "$SP" kprec_model_delta_lag_ms) reembed=$(metric "$SP" kprec_model_reembed_ms)
kill -TERM "$SW"; wait "$SW" || true
evaluate "$final" >"$OUT/eval1.json"
python3 - "$OUT/eval0.json" "$OUT/eval1.json" "$nB" "$t0" "$t1" "$deltas" "$delta_bytes" "$lag" "$reembed" "$final" <<'PY'
import json, sys
e0, e1 = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
nB, t0, t1 = int(sys.argv[3]), float(sys.argv[4]), float(sys.argv[5])
print("| model (held-out items) | recall@10 | recall@50 | recall@100 | spearman | auc |")
print("|---|---|---|---|---|---|")
for name, e in (("be0: offline on clicks A", e0), (f"after streaming clicks B ({sys.argv[10].split('/')[-1]})", e1)):
    print(f"| {name} | {e['recall@10']:.4f} | {e['recall@50']:.4f} | {e['recall@100']:.4f} | {e['spearman']:.4f} | {e['auc']:.4f} |")
print()
print(f"- recall@50: {e0['recall@50']:.4f} -> {e1['recall@50']:.4f} ({(e1['recall@50']/e0['recall@50']-1)*100:+.1f}%)")
print(f"- trainer: {nB} click events in {t1-t0:.1f} s = {nB/(t1-t0):.0f} events/s sustained (replay to trained)")
print(f"- deltas: {sys.argv[6]}, mean {int(sys.argv[7])/1e6:.2f} MB; last publish-to-applied latency {sys.argv[8]} ms; re-embedding the inventory {sys.argv[9]} ms")
PY
