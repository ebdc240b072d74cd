#!/usr/bin/env bash
# bench/e2e.sh -- the end-to-end rows of issue 11: serve workers on a real Kafka broker and Redis.
#
#   bench/e2e.sh [--smoke] [--kprec BIN] [--out DIR] [--items N] [--keyphrases N]
#                [--rate-s S] [--rate R] [--perf S] [--no-scale] [--model-threads W] [--batch N]
#                [--kafka K=V] [--drain-rounds R]
#
# In a temp dir: Kafka + Redis (ops/stack.sh), a keyphrase inventory of --keyphrases (default
# 100,000: the Home Depot keyphrases, then the ESCI sample's queries (ops/esci-prepare.sh), topped up
# with the most frequent 2-4 word n-grams of both sets' titles), a bi-encoder trained for one epoch
# on 2,000 judged Home Depot items (the speed does not depend on the weights), --items (default
# 200,000) ItemListed records pre-loaded with `kprec replay` (the Home Depot titles, cycled).
#  1. drain: one worker from the first processed item to the last (its /metrics), items/s;
#  2. the scoring rate of the same titles and inventory: kprec eval --speed (one thread, the workers'
#     top_k), the ratio;
#     --drain-rounds R (default 1): R rounds of 1 + 2, alternating (rounds before the last drain the
#     whole topic in fresh groups); the rates and the ratio are the medians over the rounds (the
#     ratio: of the per-round ratios), each round in OUT/e2e.json's drain_rounds;
#  3. offered rate: a producer at 50% of the drain rate (or --rate R items/s) for --rate-s s
#     (default 20) on fresh ids;
#     latency = the Redis write (keyspace notification, local clock) - the record's timestamp;
#  4. scale: 1, 2, 3 workers in fresh groups draining the whole topic (--no-scale skips);
#  5. limits: kcat consuming the whole topic, redis-benchmark's pipelined HSET (-P 256).
# --model-threads W: the workers' [model] threads (the model's own fan-out, 1 or 2; default 1) and
# the same for the scoring rate's kprec eval (--model-threads W). --batch N: [worker] batch_size
# (default 256) and the scoring rate's --batch. --kafka K=V (repeatable): a librdkafka property in
# the serve workers' [kafka] (e.g. linger.ms=1; not the load generator's), recorded in e2e.json.
# --perf S: perf record (DWARF call graphs) on the drain worker for S s (OUT/perf.data, top of the report printed).
# --smoke: 20,000 items, 5,000 keyphrases, 3 s offered rate, no scale, the ESCI sample only (titles,
# keyphrases, training judgments: no data outside the repo; ctest label bench).
# Prints the machine line and a table; writes OUT/e2e.json (default bench/out/e2e).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
KPREC=$ROOT/build/kprec OUT=$ROOT/bench/out/e2e NITEMS=200000 NKP=100000 RATE_S=20 PERF_S=0 SCALE=1
RATE_FIXED="" MTHREADS=1 BATCH=256 KAFKA_SET=() DROUNDS=1
HD=${KPREC_HOMEDEPOT:-/work/shared/data/homedepot} SMOKE=0
while [ $# -gt 0 ]; do
  case "$1" in
  # smoke: 20,000 items, so the drain spans many of e2e_tools.py's 50 ms polls (3,000 were once
  # drained between two of them: 0 s, no rate)
  --smoke) SMOKE=1 NITEMS=20000 NKP=5000 RATE_S=3 SCALE=0; shift ;;
  --kprec) KPREC=$2; shift 2 ;;
  --out) OUT=$2; shift 2 ;;
  --items) NITEMS=$2; shift 2 ;;
  --keyphrases) NKP=$2; shift 2 ;;
  --rate-s) RATE_S=$2; shift 2 ;;
  --rate) RATE_FIXED=$2; shift 2 ;;
  --perf) PERF_S=$2; shift 2 ;;
  --no-scale) SCALE=0; shift ;;
  --model-threads) MTHREADS=$2; shift 2 ;;
  --batch) BATCH=$2; shift 2 ;;
  --kafka) KAFKA_SET+=("$2"); shift 2 ;;
  --drain-rounds) DROUNDS=$2; shift 2 ;;
  -h | --help) sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
  *) echo "e2e.sh: unknown argument '$1' (--help)" >&2; exit 2 ;;
  esac
done
case "$MTHREADS" in 1 | 2) ;; *) echo "e2e.sh: --model-threads: 1 or 2" >&2; exit 2 ;; esac
case "$BATCH" in '' | *[!0-9]* | 0) echo "e2e.sh: --batch: an integer >= 1" >&2; exit 2 ;; esac
case "$DROUNDS" in '' | *[!0-9]* | 0*) echo "e2e.sh: --drain-rounds: an integer >= 1 (no leading 0)" >&2; exit 2 ;; esac
for kv in "${KAFKA_SET[@]}"; do
  case "$kv" in [a-z]*=?*) ;; *) echo "e2e.sh: --kafka '$kv': KEY=VALUE" >&2; exit 2 ;; esac
done
KPREC=$(cd "$(dirname "$KPREC")" && pwd)/$(basename "$KPREC")
TOOLS="python3 $ROOT/bench/e2e_tools.py"
mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
T=$(mktemp -d "${TMPDIR:-/tmp}/kprec-e2e.XXXXXX")
PIDS=()
cleanup() {
  local rc=$?
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  "$ROOT/ops/stack.sh" down "$T/stack" >/dev/null 2>&1 || true
  if [ "$rc" -ne 0 ]; then for f in "$T"/*.log; do [ -f "$f" ] && { echo "== $f" >&2; tail -20 "$f" >&2; }; done; fi
  [ -n "${KEEP_TMP:-}" ] || rm -rf "$T"
  exit "$rc"
}
trap cleanup EXIT
log() { echo "e2e: $(date +%T) $*" >&2; }
die() { echo "e2e: FAIL: $*" >&2; exit 1; }
for c in kcat redis-benchmark jq curl; do command -v "$c" >/dev/null || die "$c is required (ops/install-deps.sh)"; done
[ "$SMOKE" = 1 ] || [ -r "$HD/items.tsv" ] || die "$HD/items.tsv is missing (KPREC_HOMEDEPOT=DIR)"
MACHINE="$(lscpu | sed -n 's/^Model name: *//p'); nproc $(nproc); $("$KPREC" version | grep -i openblas | sed 's/^ *//')"
log "machine: $MACHINE; load average $(cut -d' ' -f1-3 /proc/loadavg)"

# ---- data: inventory, titles, model ----
"$ROOT/ops/esci-prepare.sh" "$T/esci" 2>/dev/null
if [ "$SMOKE" = 1 ]; then DATA=$T/esci KPS=("$T/esci/keyphrases.tsv") ITEMS=("$T/esci/items.tsv")
else DATA=$HD KPS=("$HD/keyphrases.tsv" "$T/esci/keyphrases.tsv") ITEMS=("$HD/items.tsv" "$T/esci/items.tsv"); fi
$TOOLS inventory "$NKP" "$T/kp.tsv" "${KPS[@]}" -- "${ITEMS[@]}" 2>"$T/inventory.txt"
INVENTORY=$(cat "$T/inventory.txt"); log "$INVENTORY"
cp "$DATA/items.tsv" "$T/items.tsv"
head -2001 "$DATA/items.tsv" >"$T/train_items.tsv"
"$KPREC" train --items "$T/train_items.tsv" --keyphrases "$DATA/keyphrases.tsv" --judgments "$DATA/judgments.tsv" \
  --epochs 1 --out "$T/be.kpm" --quiet 2>"$T/train.log"
# the offered-rate run's items: fresh ids (r-...), so each one's first Redis write is its own
awk -F'\t' -v OFS='\t' 'NR == 1 { print; next } { $1 = "r-" $1; print }' "$T/items.tsv" >"$T/items_rate.tsv"

# ---- stack ----
"$ROOT/ops/stack.sh" up "$T/stack" "$KPREC" "$T/kp.tsv" 2>"$T/stack.log"
CONF=$T/stack/kprec.ini
RPORT=$(cat "$T/stack/redis/port")
BOOT=$(sed -n 's/^bootstrap.servers = //p' "$CONF")
sed -i "s|^\[model\]|[model]\npath = $T/be.kpm\nthreads = $MTHREADS|; s|^batch_size = 256$|batch_size = $BATCH|" "$CONF"
# the workers' [worker] top_k (ops/stack.sh's config: 10): the scoring rate selects as many
TOPK=$("$KPREC" config -c "$CONF" | sed -n 's/^top_k = \([0-9]*\)$/\1/p' | head -1)
[ -n "$TOPK" ] || die "no [worker] top_k in $("$KPREC" config -c "$CONF" | head -3)"
port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
# conf_group NAME: a copy of the config whose serve workers join group NAME
# (and the --kafka properties: the workers' only)
conf_group() {
  sed "s|^\[kafka\]|[kafka]\ngroup.id = $1|" "$CONF" >"$T/$1.ini"
  for kv in "${KAFKA_SET[@]}"; do printf '%s = %s\n' "${kv%%=*}" "${kv#*=}"; done |
    sed -i "/^group.id = $1\$/r /dev/stdin" "$T/$1.ini"
  echo "$T/$1.ini"
}
# start_workers CONF N: N serve workers; their pids in WP, /metrics URLs (comma-separated) in URLS
start_workers() {
  local conf=$1 n=$2 i p
  WP=() URLS=""
  for i in $(seq 1 "$n"); do
    p=$(port)
    KPREC_WORKER_METRICS_PORT=$p "$KPREC" worker -c "$conf" >>"$T/worker-$(basename "$conf" .ini)-$i.log" 2>&1 &
    WP+=($!) PIDS+=($!)
    URLS+="${URLS:+,}http://127.0.0.1:$p/metrics"
  done
  for u in ${URLS//,/ }; do
    local end=$((SECONDS + 300))
    until curl -sf "${u%/metrics}/healthz" -o /dev/null; do
      [ $SECONDS -lt $end ] || die "worker $u not up after 300 s"; sleep 0.5
    done
  done
}
stop_workers() {
  local p
  for p in "${WP[@]}"; do kill -TERM "$p"; done
  for p in "${WP[@]}"; do wait "$p" || die "worker $p exit code $?"; done
}

log "pre-loading $NITEMS items"
"$KPREC" replay -c "$CONF" --items "$T/items.tsv" --count "$NITEMS" --quiet
TOTAL=$NITEMS

# ---- 1 + 2, rounds before the last: one worker drains the whole topic in a fresh group, then the
# scoring rate (score_rate below) ----
SPEED_N=$((NITEMS < 10000 ? NITEMS : 10000))
[ "$SPEED_N" -le $(($(wc -l <"$T/items.tsv") - 1)) ] || SPEED_N=$(($(wc -l <"$T/items.tsv") - 1))
# score_rate: kprec eval --speed over the same titles and inventory (JSON on stdout)
score_rate() {
  "$KPREC" eval --model "$T/be.kpm" --items "$T/items.tsv" --keyphrases "$T/kp.tsv" --k "$TOPK" \
    --speed "$SPEED_N" --rounds 3 --threads 1 --model-threads "$MTHREADS" --batch "$BATCH" --json 2>>"$T/eval.log"
}
ROUNDS_JSON="[]"
for ((r = 1; r < DROUNDS; r++)); do
  start_workers "$(conf_group "e2e-drain-$r")" 1
  D=$($TOOLS drain "$URLS" "$NITEMS")
  S=$(score_rate) # the worker up and idle, as in the last round
  stop_workers
  log "round $r of $DROUNDS: drain $(jq -r .items_per_s <<<"$D") items/s, scoring $(jq -r .items_per_s <<<"$S") items/s"
  ROUNDS_JSON=$(jq -c --argjson d "$D" --argjson s "$S" '. + [{drain: $d, scoring_items_per_s: $s.items_per_s}]' <<<"$ROUNDS_JSON")
done

# ---- 1. drain, one worker (the last round) ----
start_workers "$(conf_group kprec-serve)" 1
log "worker up (inventory $(curl -sf "${URLS}" | awk '$1 == "kprec_keyphrases" { print $2 }')); draining"
if [ "$PERF_S" != 0 ]; then
  # DWARF call graphs: the build keeps no frame pointers
  perf record -F 999 --call-graph dwarf,16384 -o "$OUT/perf.data" -p "${WP[0]}" -- sleep "$PERF_S" >"$T/perf.log" 2>&1 &
  PERF_PID=$!
fi
TOPIC=$(sed -n 's/.*worker: consuming \([^ ]*\) .*/\1/p' "$T"/worker-kprec-serve-1.log | head -1)
DRAIN=$($TOOLS drain "$URLS" "$TOTAL")
log "drain: $DRAIN"
if [ "$PERF_S" != 0 ]; then
  wait "$PERF_PID" || true
  perf report -i "$OUT/perf.data" --no-children --stdio --percent-limit 1.5 2>/dev/null |
    grep -E '^ +[0-9]' | head -30 >"$OUT/perf_top.txt" || true
  log "perf (self time, >= 1.5%):"; cat "$OUT/perf_top.txt" >&2
fi
DRAIN_RATE=$(jq -r .items_per_s <<<"$DRAIN")

# ---- 2. scoring rate of the same titles and inventory (the last round) ----
SCORE=$(score_rate)
SCORE_RATE=$(jq -r .items_per_s <<<"$SCORE")
log "scoring (kprec eval --speed $SPEED_N, top $TOPK, 1 BLAS thread, model threads $MTHREADS): $SCORE_RATE items/s"
ROUNDS_JSON=$(jq -c --argjson d "$DRAIN" --argjson s "$SCORE" '. + [{drain: $d, scoring_items_per_s: $s.items_per_s}]' <<<"$ROUNDS_JSON")
# medians over the rounds: drain, scoring, and the per-round ratio
MED=$(jq -c 'def med: sort | if length % 2 == 1 then .[length / 2 | floor] else (.[length / 2 - 1] + .[length / 2]) / 2 end;
  {drain: (map(.drain.items_per_s) | med), scoring: (map(.scoring_items_per_s) | med),
   ratio: (map(.drain.items_per_s / .scoring_items_per_s) | med), rounds: length}' <<<"$ROUNDS_JSON")
[ "$DROUNDS" = 1 ] || log "medians over $DROUNDS rounds: $MED"
# the same titles against the Home Depot keyphrases alone (~12k: issue 11's 20,000 items/s target)
S12=$("$KPREC" eval --model "$T/be.kpm" --items "$T/items.tsv" --keyphrases "$DATA/keyphrases.tsv" --k "$TOPK" \
  --speed "$SPEED_N" --rounds 3 --threads 1 --model-threads "$MTHREADS" --batch "$BATCH" --json 2>>"$T/eval.log")
S12_N=$(($(wc -l <"$DATA/keyphrases.tsv") - 1))
log "scoring against $S12_N keyphrases: $(jq -r .items_per_s <<<"$S12") items/s"

# ---- 3. offered rate: 50% of the (median) drain rate, latency event -> Redis ----
RATE=${RATE_FIXED:-$(python3 -c "print(max(1, int($(jq -r .drain <<<"$MED") * 0.5)))")}
NRATE=$((RATE * RATE_S))
$TOOLS keyspace "$RPORT" "$T/writes.tsv" r- "$NRATE" &
KS=$!; PIDS+=($KS)
until [ -e "$T/writes.tsv.ready" ]; do sleep 0.1; done
log "offered rate: $NRATE items at $RATE/s"
"$KPREC" replay -c "$CONF" --items "$T/items_rate.tsv" --count "$NRATE" --rate "$RATE" --quiet 2>&1 |
  tee "$T/replay_rate.txt" >&2
OFFERED=$(sed -n 's/.* \([0-9.]*\) events\/s.*/\1/p' "$T/replay_rate.txt" | tail -1)
TOTAL=$((TOTAL + NRATE))
$TOOLS drain "$URLS" "$((NITEMS + NRATE))" 300 >/dev/null
# the subscriber ends once it saw every offered item written (it may lag behind Redis)
( sleep 120; kill -TERM "$KS" 2>/dev/null ) &
wait "$KS" || true
stop_workers
kcat -C -b "$BOOT" -t "$TOPIC" -o beginning -e -q -f '%k\t%T\n' | grep '^r-' >"$T/records.tsv"
LAT=$($TOOLS latency "$T/writes.tsv" "$T/records.tsv")
log "latency at $RATE items/s: $LAT"

# ---- 4. scale: 1, 2, 3 workers, each count in a fresh group over the whole topic ----
SCALE_JSON="[]"
if [ "$SCALE" = 1 ]; then
  for n in 1 2 3; do
    start_workers "$(conf_group "e2e-scale-$n")" "$n"
    S=$($TOOLS drain "$URLS" "$TOTAL")
    log "scale $n worker(s): $S"
    SCALE_JSON=$(jq -c --argjson n "$n" --argjson s "$S" '. + [{workers: $n} + $s]' <<<"$SCALE_JSON")
    stop_workers
  done
fi

# ---- 5. limits: kcat over the same topic, pipelined Redis writes ----
t0=$(date +%s.%N)
got=$(kcat -C -b "$BOOT" -t "$TOPIC" -o beginning -e -q -f '%o\n' | wc -l)
t1=$(date +%s.%N)
KCAT_RATE=$(python3 -c "print(round($got / ($t1 - $t0)))")
log "kcat: $got records in $(python3 -c "print(f'{$t1 - $t0:.2f}')") s = $KCAT_RATE records/s"
RB_N=$((NITEMS < 100000 ? NITEMS : 200000))
RB=$(redis-benchmark -p "$RPORT" -n "$RB_N" -P 256 -r 100000 -q hset 'kprec:bench:__rand_int__' model_version 1 2>/dev/null |
  tr '\r' '\n' | sed -n 's/.*: \([0-9.]*\) requests per second.*/\1/p' | tail -1)
log "redis-benchmark HSET -P 256: $RB writes/s"

jq -n --arg machine "$MACHINE" --arg load "$(cut -d' ' -f1-3 /proc/loadavg)" --arg inv "$INVENTORY" \
  --argjson drain "$DRAIN" --argjson score "$SCORE" --argjson s12 "$S12" --argjson s12n "$S12_N" --argjson lat "$LAT" --argjson rate "$RATE" --argjson offered "${OFFERED:-0}" \
  --argjson scale "$SCALE_JSON" --argjson kcat "$KCAT_RATE" --arg rb "$RB" --argjson nkp "$NKP" \
  --argjson mt "$MTHREADS" --argjson batch "$BATCH" --argjson rounds "$ROUNDS_JSON" --argjson med "$MED" \
  --argjson kafka "$(printf '%s\n' "${KAFKA_SET[@]}" | jq -R . | jq -s 'map(select(. != ""))')" \
  '{machine: $machine, load_average: $load, inventory: $inv, keyphrases: $nkp, model_threads: $mt,
    batch_size: $batch, worker_kafka: $kafka, drain: $drain,
    scoring_items_per_s: $score.items_per_s, scoring_small_keyphrases: $s12n,
    scoring_small_items_per_s: $s12.items_per_s, drain_over_scoring: $med.ratio,
    drain_rounds: $rounds, drain_median_items_per_s: $med.drain, scoring_median_items_per_s: $med.scoring,
    offered_rate: $rate, offered_achieved: $offered, latency: $lat, scale: $scale, kcat_records_per_s: $kcat,
    redis_hset_pipelined_per_s: ($rb | tonumber? // null)}' >"$OUT/e2e.json"
jq -r '"| drain (1 worker, \(.keyphrases) keyphrases, model threads \(.model_threads), batch \(.batch_size)) | \(.drain.items) items in \(.drain.seconds) s | \(.drain.items_per_s) items/s, \(.drain.batches) batches (load \(.drain.load1)) |",
  "| scoring, same titles + inventory (eval --speed) | | \(if (.drain_rounds | length) > 1 then "median \(.scoring_median_items_per_s) items/s; median drain \(.drain_median_items_per_s) items/s; drain = \(.drain_over_scoring * 100 | round)% of scoring (median of the ratios of \(.drain_rounds | length) alternating rounds of drain and scoring: \([.drain_rounds[] | (.drain.items_per_s / .scoring_items_per_s * 100 | round | tostring) + "%"] | join(", ")); the drain row above is the last round)" else "\(.scoring_items_per_s) items/s; drain = \(.drain_over_scoring * 100 | round)% of it" end) |",
  "| scoring, same titles, \(.scoring_small_keyphrases) keyphrases | | \(.scoring_small_items_per_s) items/s |",
  "| offered \(.offered_rate) items/s (producer achieved \(.offered_achieved)) | \(.latency.n) items | p50 \(.latency.p50_ms) ms, p99 \(.latency.p99_ms) ms (max \(.latency.max_ms)); p50 first/last fifth \(.latency.p50_first_fifth_ms)/\(.latency.p50_last_fifth_ms) ms |",
  (.scale[] | "| scale: \(.workers) worker(s) | \(.items) items in \(.seconds) s | \(.items_per_s) items/s (load \(.load1)) |"),
  "| kcat -C (same topic) | | \(.kcat_records_per_s) records/s |",
  "| redis-benchmark HSET -P 256 | | \(.redis_hset_pipelined_per_s) writes/s |"' "$OUT/e2e.json"
if [ "$SMOKE" = 1 ]; then
  jq -e '.drain.items_per_s > 0 and .latency.n > 0 and .kcat_records_per_s > 0 and .scoring_items_per_s > 0' \
    "$OUT/e2e.json" >/dev/null || die "smoke: a row is empty ($OUT/e2e.json)"
  [ "$(jq .latency.n "$OUT/e2e.json")" -eq "$NRATE" ] || die "smoke: $(jq .latency.n "$OUT/e2e.json") of $NRATE offered items timed"
fi
log "done: $OUT/e2e.json"
