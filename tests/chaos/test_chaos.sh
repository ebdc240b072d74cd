#!/usr/bin/env bash
# The chaos run, on a real Kafka broker and Redis (all on 127.0.0.1): 3 serve workers + 1 trainer;
# N items (kprec replay --count N cycles the ESCI sample with distinct ids) and a simulated click
# stream; while they flow, in a seeded random order and at random moments:
#   5 x kill -9 of a random serve worker (restarted after a few seconds),
#   1 x broker stop + restart (ops/kafka.sh restart: same ports, same log dir),
#   1 x Redis restart (ops/redis.sh restart: saved and reloaded, same port),
#   1 x Redis full (CONFIG SET maxmemory just above used_memory, noeviction), then freed.
# Checks at the end: every item has a Redis entry and a suggestion record; duplicate suggestion
# records <= 2% of the items; no worker process's kprec_model_version (sampled every second from
# /metrics) ever went backwards; kprec_paused is 0 on every worker (every pause ended by itself);
# the replicas converge on the trainer's last version; every worker exits 0 on SIGTERM.
#
#   bash tests/chaos/test_chaos.sh PATH_TO_KPREC
#   CHAOS_SCALE=short (6,000 items, short gaps) | long (default: 50,000 items)
#   CHAOS_ITEMS=N     N items instead of the scale's (the same rates and faults)
#   CHAOS_SEED=S      replays the same fault plan (printed at the start and in the summary)
#   CHAOS_COMMIT_MS=N auto.commit.interval.ms of the workers (default: unset, librdkafka's 5000)
#   CHAOS_OUT=DIR     where the summary, fault log and samples are kept (default ./chaos-SCALE);
#                     on failure the worker logs are copied there too
source "$(dirname "$0")/../integration/lib.sh"
SCALE=${CHAOS_SCALE:-long}
case "$SCALE" in
long)  N=50000 RATE=150 CLICK_RATE=400 GAP_MIN=3 GAP_MAX=10 ;;
short) N=6000 RATE=30 CLICK_RATE=400 GAP_MIN=2 GAP_MAX=5 ;;
*) fail "CHAOS_SCALE must be short or long, not $SCALE" ;;
esac
N=${CHAOS_ITEMS:-$N}
[[ "$N" =~ ^[0-9]+$ ]] && [ "$N" -ge 1000 ] || fail "CHAOS_ITEMS must be a number >= 1000, not $N"
SEED=${CHAOS_SEED:-$(( $(date +%s%N) % 1000000 ))}
RANDOM=$SEED
OUT=${CHAOS_OUT:-$PWD/chaos-$SCALE}
mkdir -p "$OUT"
OUT=$(cd "$OUT" && pwd)
rm -f "$OUT"/*.log "$OUT"/summary.txt
T0=$(date +%s.%N)
now() { python3 -c "import time;print(f'{time.time()-$T0:.1f}')"; }
note() { echo "[chaos +$(now)s] $*" | tee -a "$T/faults.log" >&2; }
mark() { echo "$(date +%s.%N) $*" >>"$T/faults.tsv"; } # mark KIND: a fault starts now
echo "CHAOS: scale $SCALE, seed $SEED (CHAOS_SEED=$SEED CHAOS_SCALE=$SCALE replays this plan)" >&2

# ---- the fault plan, drawn up front from the seed ----
rnd() { printf -v "$1" %d $(($2 + RANDOM % ($3 - $2 + 1))); } # rnd VAR A B: uniform in [A, B]
PLAN=(kill kill kill kill kill broker redis maxmemory)
for ((i = ${#PLAN[@]} - 1; i > 0; i--)); do # Fisher-Yates
  j=$((RANDOM % (i + 1))); t=${PLAN[i]}; PLAN[i]=${PLAN[j]}; PLAN[j]=$t
done
GAP=() ARG=() DOWN=() AT=()
# fault i fires when AT[i] items are cached (random points of the stream, 8%..85% of N, sorted)
# and at least GAP[i] seconds after the previous fault ended (or after 240 s without progress)
for i in "${!PLAN[@]}"; do rnd a 8 85; AT[i]=$((N * a / 100)); done
mapfile -t AT < <(printf '%s\n' "${AT[@]}" | sort -n)
for i in "${!PLAN[@]}"; do
  rnd g "$GAP_MIN" "$GAP_MAX"; GAP[i]=$g; ARG[i]=-
  case "${PLAN[i]}" in
  kill) rnd a 1 3; rnd d 1 4 ;;   # which serve slot; seconds before the restart
  broker) rnd d 2 6 ;;            # seconds the broker stays down
  redis) rnd d 1 4 ;;             # seconds Redis stays down
  maxmemory) rnd d 3 8 ;;         # seconds Redis stays full once it refuses writes
  esac
  [ "${PLAN[i]}" = kill ] && ARG[i]=$a
  DOWN[i]=$d
done
PLAN_TEXT=$(for i in "${!PLAN[@]}"; do
  printf '  %d. at %5d items cached, >= %2ds after the previous: %-9s' $((i + 1)) "${AT[i]}" "${GAP[i]}" "${PLAN[i]}"
  [ "${PLAN[i]}" = kill ] && printf ' serve slot %s, restarted after %ss' "${ARG[i]}" "${DOWN[i]}"
  [ "${PLAN[i]}" = kill ] || printf ' %ss' "${DOWN[i]}"
  echo
done)
echo "CHAOS plan:" >&2; echo "$PLAN_TEXT" >&2

# ---- the stack, the click log, the workers ----
stack_up
: >"$T/faults.log"; : >"$T/faults.tsv"
"$KPREC" simulate-clicks --items "$T/data/items.tsv" --keyphrases "$T/data/keyphrases.tsv" \
  --judgments "$T/data/judgments.tsv" --out "$T/clicks.tsv" --sessions 8 >/dev/null
mkdir -p "$T/ckpt"
fast_trainer_conf "checkpoint_dir = $T/ckpt"
# CHAOS_COMMIT_MS=N: auto.commit.interval.ms for the workers (an experiment: unset, librdkafka's
# default of 5000 ms, the shipped configuration, is what the run measures)
[ -z "${CHAOS_COMMIT_MS:-}" ] || sed -i "s/^\[kafka\]/[kafka]\nauto.commit.interval.ms = $CHAOS_COMMIT_MS/" "$CONF"
free_port() { python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])'; }
rec_count() { rcli eval "return #redis.call('keys', 'kprec:rec:*')" 0 2>/dev/null || echo 0; }
metric() { curl -sf -m 3 "http://127.0.0.1:$1/metrics" | awk -v k="$2" '$1 == k { print $2 }'; }

# Every worker process: a line "name pid port" in $T/procs (the sampler reads it); the live serve
# worker of slot s is SLOT_NAME[s] / SLOT_PID[s] / SLOT_PORT[s].
: >"$T/procs"
declare -A SLOT_NAME SLOT_PID SLOT_PORT
NSERVE=0
start_serve() { # start_serve SLOT
  local p; p=$(free_port)
  NSERVE=$((NSERVE + 1))
  start_worker "serve$NSERVE" KPREC_WORKER_METRICS_PORT="$p"
  SLOT_NAME[$1]=serve$NSERVE SLOT_PID[$1]=$WPID SLOT_PORT[$1]=$p
  echo "serve$NSERVE $WPID $p" >>"$T/procs"
}
for s in 1 2 3; do start_serve "$s"; done
TP=$(free_port)
start_worker trainer KPREC_WORKER_ROLE=train KPREC_WORKER_METRICS_PORT="$TP"
TR=$WPID
echo "trainer $TR $TP" >>"$T/procs"
# stop_wait PID NAME: SIGTERM, at most 120 s for it to exit, fails unless it exits 0
stop_wait() {
  local pid=$1 rc=0
  gone() { ! kill -0 "$pid" 2>/dev/null; }
  kill -TERM "$pid"
  wait_for 120 "$2 to exit on SIGTERM" gone
  wait "$pid" || rc=$?
  [ "$rc" -eq 0 ] || fail "$2 exit code $rc on SIGTERM"
}
healthy() { curl -sf -m 3 "http://127.0.0.1:$1/healthz" -o /dev/null; }
for s in 1 2 3; do wait_for 120 "${SLOT_NAME[$s]} up" healthy "${SLOT_PORT[$s]}"; done
wait_for 120 "trainer up" healthy "$TP"

# Every second: model version, paused, lag of every live worker process.
sampler() {
  while :; do
    local ts name pid port m
    ts=$(date +%s.%N)
    while read -r name pid port; do
      kill -0 "$pid" 2>/dev/null || continue
      m=$(curl -sf -m 2 "http://127.0.0.1:$port/metrics") || continue
      awk -v ts="$ts" -v n="$name" -v pid="$pid" '
        $1 == "kprec_model_version" { v = $2 } $1 == "kprec_paused" { p = $2 }
        $1 == "kprec_consumer_lag" { l = $2 }
        END { if (v != "") print ts, n, pid, v, p, l }' <<<"$m" >>"$T/samples.log"
    done <"$T/procs"
    sleep 1
  done
}
sampler &
SAMPLER=$!
WORKERS+=("$SAMPLER")

# On any exit: keep the fault log and the samples (and, on failure, the logs) in $OUT.
keep() {
  cp "$T/faults.log" "$T/faults.tsv" "$T/samples.log" "$OUT/" 2>/dev/null || true
  if [ "$rc" -ne 0 ]; then
    gzip -c "$T/sugg.jsonl" >"$OUT/sugg.jsonl.gz" 2>/dev/null || true
    cp "$T"/*.log "$OUT/" 2>/dev/null || true
    cp "$T/stack/kafka/kafka.log" "$OUT/broker.log" 2>/dev/null || true
    cp "$T/stack/redis/redis.log" "$OUT/redis.log" 2>/dev/null || true
    echo "CHAOS FAILED (seed $SEED, scale $SCALE): logs kept in $OUT" >&2
  fi
}
at_exit keep

"$KPREC" replay -c "$CONF" --items "$T/data/items.tsv" --count "$N" --rate "$RATE" --quiet \
  >>"$T/replay-items.log" 2>&1 &
RI=$!
WORKERS+=("$RI")
T_REPLAY=$(now)
note "replaying $N items at $RATE/s"
# the click stream starts once the items it refers to (the first pass) are cached
BASE=$(($(wc -l <"$T/data/items.tsv") - 1))
FIRST=$((BASE < N ? BASE : N))
first_pass() { [ "$(rec_count)" -ge "$FIRST" ]; }
(
  wait_for 600 "first pass ($FIRST items) cached" first_pass
  echo "[chaos] first pass cached: clicks start" >&2
  exec "$KPREC" replay -c "$CONF" --clicks "$T/clicks.tsv" --keyphrases "$T/data/keyphrases.tsv" \
    --rate "$CLICK_RATE" --quiet
) >>"$T/replay-clicks.log" 2>&1 &
RC=$!
WORKERS+=("$RC")
note "$(($(wc -l <"$T/clicks.tsv") - 1)) click-log events at $CLICK_RATE/s once the first $FIRST items are cached"

# ---- the faults ----
KILLS=0 BROKER_RESTARTS=0 REDIS_RESTARTS=0 MAXMEM_S=- MAXMEM_BIT=no
oom_errors() { # commands Redis refused for want of memory (INFO errorstats)
  local n
  n=$(rcli info errorstats | tr -d '\r' | sed -n 's/^errorstat_OOM:count=\([0-9]*\).*/\1/p')
  echo "${n:-0}"
}
fault_kill() { # fault_kill SLOT DOWN
  local s=$1 old=${SLOT_NAME[$1]} pid=${SLOT_PID[$1]}
  kill -9 "$pid" 2>/dev/null || fail "$old (pid $pid) was not running when it was to be killed"
  wait "$pid" 2>/dev/null || true
  KILLS=$((KILLS + 1))
  note "kill -9 $old (pid $pid, slot $s; $(rec_count) items cached)"
  sleep "$2"
  start_serve "$s"
  note "restarted slot $s as ${SLOT_NAME[$s]} (pid ${SLOT_PID[$s]}, port ${SLOT_PORT[$s]})"
}
fault_broker() {
  note "broker: stop"
  "$ROOT/ops/kafka.sh" stop "$T/stack/kafka"
  sleep "$1"
  "$ROOT/ops/kafka.sh" restart "$T/stack/kafka" >/dev/null
  BROKER_RESTARTS=$((BROKER_RESTARTS + 1))
  note "broker: started again on $(cat "$T/stack/kafka/bootstrap") (down ${1}s + start-up)"
}
fault_redis() {
  note "redis: shutdown (saved), down ${1}s"
  "$ROOT/ops/redis.sh" restart "$T/stack/redis" "$1" >/dev/null
  REDIS_RESTARTS=$((REDIS_RESTARTS + 1))
  note "redis: back on $RPORT with $(rec_count) entries"
}
fault_maxmemory() {
  local used e0 t1
  e0=$(oom_errors)
  used=$(rcli info memory | tr -d '\r' | awk -F: '$1 == "used_memory" { print $2 }')
  rcli config set maxmemory-policy noeviction >/dev/null
  rcli config set maxmemory $((used + 65536)) >/dev/null
  t1=$(date +%s.%N)
  note "redis: maxmemory set to $((used + 65536)) (used_memory $used), noeviction"
  bites() { [ "$(oom_errors)" -gt "$e0" ]; }
  local end=$((SECONDS + 60))
  until bites; do [ $SECONDS -lt $end ] || break; sleep 0.5; done
  if bites; then MAXMEM_BIT=yes; note "redis: full, writes refused (OOM errors $e0 -> $(oom_errors))"
  else note "redis: full, but no worker wrote within 60 s"; fi
  sleep "$1"
  rcli config set maxmemory 0 >/dev/null
  MAXMEM_S=$(python3 -c "import time;print(f'{time.time()-$t1:.1f}')")
  note "redis: maxmemory 0 again (full for ${MAXMEM_S}s)"
}
for i in "${!PLAN[@]}"; do
  sleep "${GAP[i]}"
  end=$((SECONDS + 240))
  until [ "$(rec_count)" -ge "${AT[i]}" ]; do
    [ $SECONDS -lt $end ] || { note "no progress to ${AT[i]} items in 240 s: the fault fires anyway"; break; }
    sleep 0.5
  done
  mark "${PLAN[i]}"
  case "${PLAN[i]}" in
  kill) fault_kill "${ARG[i]}" "${DOWN[i]}" ;;
  broker) fault_broker "${DOWN[i]}" ;;
  redis) fault_redis "${DOWN[i]}" ;;
  maxmemory) fault_maxmemory "${DOWN[i]}" ;;
  esac
done
T_LAST_FAULT=$(date +%s.%N)
note "last fault over"

# ---- drain ----
replay_done() { ! kill -0 "$RI" 2>/dev/null; }
wait_for 900 "the item replay to finish" replay_done
wait "$RI" || fail "item replay failed: $(tail -3 "$T/replay-items.log")"
note "item replay finished: $(tail -1 "$T/replay-items.log")"
all_cached() { [ "$(rec_count)" -ge "$N" ]; }
wait_for 900 "$N Redis entries" all_cached
T_DRAINED=$(date +%s.%N)
DRAIN_S=$(python3 -c "print(f'{$T_DRAINED-$T_LAST_FAULT:.1f}')")
note "all $N items cached, ${DRAIN_S}s after the last fault"
clicks_done() { ! kill -0 "$RC" 2>/dev/null; }
wait_for 600 "the click replay to finish" clicks_done
wait "$RC" || fail "click replay failed: $(tail -3 "$T/replay-clicks.log")"
note "click replay finished: $(tail -1 "$T/replay-clicks.log")"

# every pause ended by itself: kprec_paused 0 on every live worker (a few seconds of grace for
# the last retry of a backoff)
unpaused() {
  local s
  for s in 1 2 3; do [ "$(metric "${SLOT_PORT[$s]}" kprec_paused)" = 0 ] || return 1; done
  [ "$(metric "$TP" kprec_paused)" = 0 ]
}
wait_for 60 "kprec_paused 0 on every worker" unpaused

# the trainer stops (publishing its last delta), every replica converges on that version
T_STOP=$(date +%s.%N)
stop_wait "$TR" trainer
FINAL=$(sed -n 's/.*published model version \([0-9]*\).*/\1/p' "$T/trainer.log" | tail -1)
[ -n "$FINAL" ] || fail "the trainer published no model version"
same_version() {
  local s
  for s in 1 2 3; do [ "$(metric "${SLOT_PORT[$s]}" kprec_model_version)" = "$FINAL" ] || return 1; done
}
wait_for 180 "every replica at version $FINAL" same_version
CONVERGE_S=$(python3 -c "import time;print(f'{time.time()-$T_STOP:.1f}')")
note "trainer stopped at version $FINAL; every replica serving it ${CONVERGE_S}s later"
sleep 2 # a last sample of every replica
kill "$SAMPLER" 2>/dev/null || true
wait "$SAMPLER" 2>/dev/null || true
for s in 1 2 3; do
  stop_wait "${SLOT_PID[$s]}" "${SLOT_NAME[$s]}"
done
note "every worker stopped cleanly (SIGTERM, exit 0)"

# ---- the checks ----
rcli --scan --pattern 'kprec:rec:*' >"$T/rec_keys.txt"
"$KPREC" dump -c "$CONF" --topic suggestions --idle-ms 5000 >"$T/sugg.jsonl" 2>>"$T/dump.log"
PAUSES_LOGGED=$(cat "$T"/serve*.log | grep -c "pausing consumption" || true)
CHECKS_RC=0
python3 - "$T" "$N" <<'PY' || CHECKS_RC=1
import collections, json, sys
T, N = sys.argv[1], int(sys.argv[2])
base = [l.split("\t")[0] for l in open(f"{T}/data/items.tsv").read().splitlines()[1:]]
want = set()
for i in range(N):
    p, r = divmod(i, len(base))
    want.add(base[r] if p == 0 else f"{base[r]}~{p}")
cached = {k.strip()[len("kprec:rec:"):] for k in open(f"{T}/rec_keys.txt") if k.strip()}
recs = collections.Counter(json.loads(l)["item_id"] for l in open(f"{T}/sugg.jsonl"))
no_redis, no_record = want - cached, want - set(recs)
records = sum(recs.values())
dups = sum(c - 1 for c in recs.values())
dup_pct = 100.0 * dups / N

# samples: ts name pid version paused lag
series = collections.defaultdict(list)
paused_eps = collections.Counter()
last_paused = {}
for l in open(f"{T}/samples.log"):
    f = l.split()
    if len(f) < 5: continue
    key = (f[1], f[2])
    series[key].append(int(f[3]))
    p = f[4] == "1"
    if p and not last_paused.get(key): paused_eps[f[1]] += 1
    last_paused[key] = p
back = {k: v for k, v in series.items() if any(b < a for a, b in zip(v, v[1:]))}
versions = {k[0]: (len(set(v)), min(v), max(v), len(v)) for k, v in series.items()}
ok = True
def check(cond, msg):
    global ok
    print(("ok: " if cond else "FAIL: ") + msg, file=sys.stderr)
    ok = ok and cond
check(not no_redis, f"{len(no_redis)} of {N} items without a Redis entry" + (f", e.g. {sorted(no_redis)[:3]}" if no_redis else ""))
check(not no_record, f"{len(no_record)} of {N} items without a suggestion record" + (f", e.g. {sorted(no_record)[:3]}" if no_record else ""))
check(len(cached - want) == 0, f"{len(cached - want)} Redis entries of unknown items")
check(dup_pct <= 2.0, f"{dups} duplicate suggestion records = {dup_pct:.2f}% of {N} items (budget 2%)")
check(not back, f"model version never went backwards in {len(series)} worker processes" + (f"; backwards: {dict((k, v) for k, v in back.items())}" if back else ""))
# each duplicate (2nd, 3rd.. record of an item) to the last fault that started before it was made
faults = [(float(l.split()[0]), l.split()[1]) for l in open(f"{T}/faults.tsv") if l.strip()]
by_fault = collections.Counter()
gen = collections.defaultdict(list)
for l in open(f"{T}/sugg.jsonl"):
    r = json.loads(l)
    gen[r["item_id"]].append(r.get("generated_at", 0))
for item, ts in gen.items():
    for t in sorted(ts)[1:]:
        t = t / 1000.0 if t > 1e11 else float(t)
        prev = [i for i, (ft, _) in enumerate(faults) if ft <= t]
        by_fault[f"{prev[-1] + 1}.{faults[prev[-1]][1]}" if prev else "before any fault"] += 1
with open(f"{T}/figures.txt", "w") as o:
    print(f"items={N} records={records} distinct={len(recs)} duplicates={dups} dup_pct={dup_pct:.2f} "
          f"no_redis={len(no_redis)} no_record={len(no_record)}", file=o)
    print("dups_by_fault=" + ",".join(f"{k}:{v}" for k, v in sorted(by_fault.items())), file=o)
    print("pauses_sampled=" + ",".join(f"{k}:{v}" for k, v in sorted(paused_eps.items())), file=o)
    for name, (nv, lo, hi, ns) in sorted(versions.items(), key=lambda x: (x[0][:5], int(''.join(c for c in x[0] if c.isdigit()) or 0))):
        print(f"versions {name}: {nv} distinct, {lo}..{hi} ({ns} samples)", file=o)
sys.exit(0 if ok else 1)
PY
for f in "$T"/serve*.log; do
  python3 - "$f" <<'PY' || CHECKS_RC=1
import re, sys
pairs = [(int(a), int(b)) for a, b in re.findall(r"serving model version (\d+) \(was (\d+)\)", open(sys.argv[1]).read())]
bad = [p for p in pairs if p[0] < p[1]]
print(("FAIL" if bad else "ok") + f": {sys.argv[1].split('/')[-1]}: {len(pairs)} swaps in its log" + (f", backwards: {bad[:3]}" if bad else ", none backwards"), file=sys.stderr)
sys.exit(1 if bad else 0)
PY
done

SUMMARY=$(
  echo "== CHAOS SUMMARY (scale $SCALE, seed $SEED, auto.commit.interval.ms ${CHAOS_COMMIT_MS:-default}) =="
  read -r a b c d e f g h <"$T/figures.txt"
  echo "items            ${a#items=}   (replayed at $RATE/s; click-log events $(($(wc -l <"$T/clicks.tsv") - 1)) at $CLICK_RATE/s)"
  echo "records          ${b#records=} suggestion records, ${c#distinct=} distinct item ids"
  echo "duplicates       ${d#duplicates=} = ${e#dup_pct=}% of the items (budget 2%)"
  echo "dups by fault    $(sed -n 's/^dups_by_fault=//p' "$T/figures.txt") (each duplicate record to the last fault before its generated_at)"
  echo "missing          ${f#no_redis=} without a Redis entry, ${g#no_record=} without a suggestion record"
  echo "kills            $KILLS (kill -9 of a serve worker, each restarted)"
  echo "broker restarts  $BROKER_RESTARTS"
  echo "redis restarts   $REDIS_RESTARTS"
  echo "maxmemory        full for ${MAXMEM_S}s (writes refused: $MAXMEM_BIT)"
  echo "pauses seen      $PAUSES_LOGGED 'pausing consumption' log lines; episodes sampled: $(sed -n 's/^pauses_sampled=//p' "$T/figures.txt")"
  echo "drain            ${DRAIN_S}s from the end of the last fault to all $N items cached"
  echo "convergence      every replica at the trainer's last version $FINAL ${CONVERGE_S}s after it stopped"
  echo "run time         $(now)s (replay started at +${T_REPLAY}s)"
  echo "versions seen per worker process (sampled /metrics every second):"
  sed -n 's/^versions /  /p' "$T/figures.txt"
  echo "fault plan:"; echo "$PLAN_TEXT"
  echo "fault log:"; sed 's/^/  /' "$T/faults.log"
)
echo "$SUMMARY" | tee "$OUT/summary.txt" >&2
[ "$CHECKS_RC" -eq 0 ] || fail "chaos checks failed (seed $SEED): see above"
ok "chaos run ($SCALE, seed $SEED): all checks passed"
