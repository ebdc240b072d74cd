#!/usr/bin/env bash
# Several hosts, made of network namespaces (needs root): "kafka" (Kafka + Redis + the clients:
# replay, dump, forge), s1..s3 (one serve worker each), tr and tr2 (trainers), joined by a bridge in
# a namespace of its own on 10.213.7.0/24. Each worker has its own working directory (config,
# inventory, for the trainer its checkpoint cache): nothing shared but the network.
# 30,000 items and their clicks are replayed. Faults: serve2 is kill -9'd and restarted on an empty
# disk; the trainer is kill -9'd while a multi-chunk transaction (delta + checkpoint) is held open
# (KPREC_TEST_TXN_HOLD_MS), and restarted; forged model records are written (wrong MAC, an older
# version, a record naming a path, a replayed authentic old delta); serve3's link is throttled until
# /healthz says 503 ([model] max_behind_s = 2), then freed; a second trainer with the same
# transactional_id fences the first. Checks at the end: every item has a Redis entry and a
# suggestion record; every replica serves the trainer's final version; no replica's version ever
# went backwards (sampled every second); forged records were counted and ignored; one lineage:
# versions strictly increasing across both trainer restarts.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
abspath() { echo "$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"; }
KPREC=$(abspath "${1:?usage: $0 KPREC FORGE}")
FORGE=$(abspath "${2:?usage: $0 KPREC FORGE}")
[ "$(id -u)" -eq 0 ] || { echo "FAIL: test_multihost needs root (ip netns)" >&2; exit 1; }
"$ROOT/ops/install-deps.sh"
"$ROOT/ops/kafka.sh" fetch # before the namespaces: they have no route to Maven Central
T=$(mktemp -d "${TMPDIR:-/tmp}/kprec-mh.XXXXXX")
TAG=kpmh$$
SW=$TAG-sw
NET=10.213.7
declare -A IP=([kafka]=$NET.1 [s1]=$NET.11 [s2]=$NET.12 [s3]=$NET.13 [tr]=$NET.21 [tr2]=$NET.22)
HOSTS=(kafka s1 s2 s3 tr tr2)
KEY=multihost-model-key
BOOT=${IP[kafka]}:9092
PIDS=()
T0=$SECONDS

cleanup() {
  local rc=$?
  set +e
  for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null; done
  ip netns exec "$TAG-kafka" "$ROOT/ops/redis.sh" stop "$T/kafka/redis" >/dev/null 2>&1
  ip netns exec "$TAG-kafka" "$ROOT/ops/kafka.sh" stop "$T/kafka/broker" >/dev/null 2>&1
  for h in "${HOSTS[@]}"; do
    # anything still running in a host namespace was started by this test
    for p in $(ip netns pids "$TAG-$h" 2>/dev/null); do kill -9 "$p" 2>/dev/null; done
    ip netns del "$TAG-$h" 2>/dev/null
  done
  ip netns del "$SW" 2>/dev/null
  wait 2>/dev/null
  if [ "$rc" -ne 0 ]; then
    echo "--- test failed (rc=$rc); logs:" >&2
    for f in "$T"/*/worker.log "$T"/*/trainer*.log; do
      [ -f "$f" ] && { echo "== $f" >&2; tail -30 "$f" >&2; }
    done
  fi
  [ -n "${KEEP_TMP:-}" ] && echo "kept $T" >&2 || rm -rf "$T"
  exit "$rc"
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*" >&2; }
figure() { echo "FIGURE: $*" >&2; }
nsx() { local h=$1; shift; ip netns exec "$TAG-$h" "$@"; }
source "$(dirname "${BASH_SOURCE[0]}")/../integration/wait.sh"
now() { date +%s.%N; }
elapsed() { python3 -c "print(f'{$2 - $1:.2f}')"; }

# ---- the network: a bridge in its own namespace, one veth per host ----
ip netns add "$SW"
ip -n "$SW" link set lo up
ip -n "$SW" link add br0 type bridge
ip -n "$SW" link set br0 up
for h in "${HOSTS[@]}"; do
  ip netns add "$TAG-$h"
  ip -n "$SW" link add "p$h" type veth peer name eth0 netns "$TAG-$h"
  ip -n "$SW" link set "p$h" master br0 up
  ip -n "$TAG-$h" link set lo up
  ip -n "$TAG-$h" addr add "${IP[$h]}/24" dev eth0
  ip -n "$TAG-$h" link set eth0 up
done
ok "6 hosts on $NET.0/24 (namespaces $TAG-*)"

# ---- the kafka host: broker, Redis, topics, data ----
mkdir -p "$T/kafka"
nsx kafka "$ROOT/ops/kafka.sh" start "$T/kafka/broker" 9092 "${IP[kafka]}" >/dev/null
nsx kafka "$ROOT/ops/redis.sh" start "$T/kafka/redis" 6379 "${IP[kafka]}" >/dev/null
for h in s1 s2 s3 tr tr2; do
  nsx "$h" timeout 5 bash -c "exec 3<>/dev/tcp/${IP[kafka]}/9092" || fail "$h cannot reach $BOOT"
done
"$ROOT/ops/esci-prepare.sh" "$T/kafka/data" 2>/dev/null
D=$T/kafka/data
"$KPREC" simulate-clicks --items "$D/items.tsv" --keyphrases "$D/keyphrases.tsv" \
  --judgments "$D/judgments.tsv" --out "$D/clicks.tsv" --sessions 8 >/dev/null

# conf DIR HOST ROLE [EXTRA INI LINES]: a host's own config in its own directory
conf() {
  local dir=$1 host=$2 role=$3 extra=${4:-}
  mkdir -p "$dir"
  cp "$D/keyphrases.tsv" "$dir/keyphrases.tsv"
  cat >"$dir/kprec.ini" <<INI
[worker]
role = $role
batch_size = 256
batch_linger_ms = 20
top_k = 10
metrics_port = 9100
metrics_bind = ${IP[$host]}

[redis]
host = ${IP[kafka]}
port = 6379

[model]
keyphrases = $dir/keyphrases.tsv
hmac_key = $KEY
$extra

[train]
delta_steps = 4
delta_ms = 2000
checkpoint_every = 3
batch_size = 256
$([ "$role" = train ] && echo "checkpoint_dir = $dir/ckpt")

[kafka]
bootstrap.servers = $BOOT
session.timeout.ms = 6000
INI
}
conf "$T/kafka/client" kafka serve
KCONF=$T/kafka/client/kprec.ini
nsx kafka "$KPREC" topics -c "$KCONF" >/dev/null
ok "kafka host: broker $BOOT, redis ${IP[kafka]}:6379, topics"

# start NAME HOST DIR [ENV=VAL...]: a worker in DIR on HOST; its pid in $WPID, log DIR/NAME.log
start() {
  local name=$1 host=$2 dir=$3; shift 3
  (cd "$dir" && exec ip netns exec "$TAG-$host" env "$@" "$KPREC" worker -c "$dir/kprec.ini") \
    >>"$dir/$name.log" 2>&1 &
  WPID=$!
  PIDS+=("$WPID")
}
# metric HOST NAME: a value of HOST's /metrics, fetched over the network from the kafka host
metric() {
  nsx kafka curl -sf -m 3 "http://${IP[$1]}:9100/metrics" | awk -v k="$2" '$1 == k { print $2 }'
}
healthz() { nsx kafka curl -s -m 3 -o /dev/null -w '%{http_code}' "http://${IP[$1]}:9100/healthz"; }
up() { [ "$(healthz "$1")" = 200 ]; }
rcli() { nsx kafka redis-cli -h "${IP[kafka]}" -p 6379 "$@"; }
rec_keys() { rcli --scan --pattern 'kprec:rec:*' | wc -l; }

# sampler HOST: every second, the replica's versions and health into $T/samples/HOST.log
mkdir -p "$T/samples"
sampler() {
  local h=$1
  while :; do
    local body code
    body=$(nsx kafka curl -sf -m 2 "http://${IP[$h]}:9100/metrics" 2>/dev/null || true)
    code=$(healthz "$h" 2>/dev/null || true)
    if [ -n "$body" ]; then
      echo "$(date +%s.%N) $(awk '$1 == "kprec_model_version" { v = $2 }
        $1 == "kprec_model_follower_version" { f = $2 } $1 == "kprec_model_lineage" { l = $2 }
        $1 == "kprec_model_topic_version" { t = $2 } $1 == "kprec_model_behind_seconds" { b = $2 }
        END { print v, f, l, t, b }' <<<"$body") $code" >>"$T/samples/$h.log"
    fi
    sleep 1
  done
}
SAMPLERS=()
for h in s1 s2 s3; do
  sampler "$h" &
  SAMPLERS+=($!)
  PIDS+=($!)
done

# ---- the trainer (its transactions held open 3 s before the commit), then the replicas ----
conf "$T/tr" tr train
start trainer1 tr "$T/tr" KPREC_TEST_TXN_HOLD_MS=3000
TR=$WPID
wait_for 120 "trainer1's first checkpoint" grep -q "published checkpoint version" "$T/tr/trainer1.log"
L1=$(sed -n 's/.*publishing as lineage \([0-9]*\).*/\1/p' "$T/tr/trainer1.log")
conf "$T/s1" s1 serve
conf "$T/s2" s2 serve
conf "$T/s3" s3 serve "max_behind_s = 2"
declare -A PID
for h in s1 s2 s3; do
  start worker "$h" "$T/$h"
  PID[$h]=$WPID
done
for h in s1 s2 s3; do wait_for 120 "$h up" up "$h"; done
ok "trainer1 (lineage $L1) and 3 replicas up"

nsx kafka "$KPREC" replay -c "$KCONF" --items "$D/items.tsv" --count 30000 --rate 2500 --quiet &
RI=$!
PIDS+=("$RI")
first_pass() { [ "$(rec_keys)" -ge "$(($(wc -l <"$D/items.tsv") - 1))" ]; }
wait_for 120 "first pass of items cached" first_pass
# the click log, over and over, until the trainers are done
(while [ ! -f "$T/clicks.stop" ]; do
   nsx kafka "$KPREC" replay -c "$KCONF" --clicks "$D/clicks.tsv" --keyphrases "$D/keyphrases.tsv" \
     --rate 3000 --quiet || exit 1
 done) &
RC=$!
PIDS+=("$RC")

spread() {
  for h in s1 s2 s3; do
    [ "$(metric "$h" 'kprec_events_processed_total{topic="items"}')" -gt 0 ] || return 1
  done
}
wait_for 60 "all three replicas processing" spread

# ---- fault 1: serve2 kill -9, restarted on an empty disk ----
kill -9 "${PID[s2]}"
wait "${PID[s2]}" 2>/dev/null || true # gone (its metrics port free) before its successor binds it
topic_at_kill=$(metric tr kprec_model_version)
conf "$T/s2-empty" s2 serve
t_start=$(now)
start worker s2 "$T/s2-empty"
PID[s2]=$WPID
current() {
  local v t
  v=$(metric s2 kprec_model_version) && t=$(metric s2 kprec_model_topic_version) &&
    [ -n "$v" ] && [ "$v" = "$t" ] && [ "$v" -ge "$topic_at_kill" ]
}
wait_for 120 "serve2 (empty disk) at the topic's version" current
t_cur=$(now)
S2_READY=$(elapsed "$t_start" "$t_cur")
figure "serve2 on an empty disk: start to serving the topic's version $(metric s2 kprec_model_version) in $S2_READY s (checkpoints loaded: $(metric s2 kprec_model_checkpoints_loaded_total))"

# ---- fault 2: the trainer kill -9'd while it holds a delta + checkpoint transaction open ----
last_pub() { sed -n 's/.*published model version \([0-9]*\).*/\1/p' "$1" | tail -1; }
holding_ckpt() {
  local last x
  last=$(grep -E 'holding the transaction open|published (model|checkpoint) version|not published' \
    "$T/tr/trainer1.log" | tail -1)
  x=$(last_pub "$T/tr/trainer1.log")
  [[ "$last" == *"holding the transaction open"* ]] && [ -n "$x" ] && [ "$x" -ge 5 ] &&
    [ $(((x + 1) % 3)) -eq 0 ]
}
wait_for 180 "trainer1 holding a delta+checkpoint transaction" holding_ckpt
kill -9 "$TR"
wait "$TR" 2>/dev/null || true # gone (its metrics port free) before trainer2 binds it on the same host
X1=$(last_pub "$T/tr/trainer1.log")
chunks=$(sed -n 's/.*published checkpoint version [0-9]* (\([0-9]*\) bytes in \([0-9]*\) chunk.*/\1 bytes in \2 chunks/p' \
  "$T/tr/trainer1.log" | tail -1)
[ "${chunks##* in }" != "$chunks" ] && [ "$(awk '{ print $4 }' <<<"$chunks")" -gt 1 ] ||
  fail "checkpoints are not multi-chunk: $chunks"
ok "trainer1 kill -9'd holding version $((X1 + 1)) (delta + checkpoint; the previous checkpoint: $chunks); last committed $X1"
start trainer2 tr "$T/tr"
TR=$WPID
wait_for 120 "trainer2 started" grep -q "trainer: starting at model version" "$T/tr/trainer2.log"
read -r V2 B2 L2 < <(sed -n 's/.*starting at model version \([0-9]*\) (lineage \([0-9]*\)), publishing as lineage \([0-9]*\).*/\1 \2 \3/p' "$T/tr/trainer2.log")
[ "$V2" = "$X1" ] || fail "trainer2 started at $V2, trainer1 had committed $X1"
[ "$B2" = "$L1" ] || fail "trainer2 continues lineage $B2, not trainer1's $L1"
ok "trainer2 continues at version $V2 from lineage $L1 as lineage $L2"
wait_for 120 "trainer2 publishing" grep -q "published model version" "$T/tr/trainer2.log"

# ---- fault 3: forged records on the model topic ----
rej() { metric "$1" "kprec_model_records_rejected_total{reason=\"$2\"}"; }
declare -A MAC0
for h in s1 s2 s3; do MAC0[$h]=$(rej "$h" mac); done
tv=$(metric tr kprec_model_version)
nsx kafka "$FORGE" "$BOOT" kprec.model badmac $((tv + 1)) >&2
nsx kafka "$FORGE" "$BOOT" kprec.model oldmac 2 >&2
nsx kafka "$FORGE" "$BOOT" kprec.model path $((tv + 50)) "$T/tr/ckpt/be-v$((tv + 50))-l1.kpm" >&2
nsx kafka "$FORGE" "$BOOT" kprec.model replay "$KEY" >&2
counted() { for h in s1 s2 s3; do [ "$(rej "$h" mac)" -ge $((MAC0[$h] + 3)) ] || return 1; done; }
wait_for 30 "the replicas counting the forged records" counted
sleep 2
for h in s1 s2 s3; do
  [ "$(rej "$h" mac)" -eq $((MAC0[$h] + 3)) ] || fail "$h: $(($(rej "$h" mac) - MAC0[$h])) mac rejections, expected 3"
  for r in malformed version lineage payload; do
    [ "$(rej "$h" $r)" = 0 ] || fail "$h: rejected{$r} = $(rej "$h" $r)"
  done
  [ "$(metric "$h" kprec_model_topic_version)" -lt $((tv + 50)) ] || fail "$h took a forged version"
  grep -q "dropped kprec.model.*: mac" "$T"/$h*/worker.log || fail "$h logged no dropped record"
done
ok "forged records (bad MAC, older version, a path, a replay): 3 counted as mac on each replica, the replay skipped as old, no forged version taken"

# ---- /healthz 503: serve3's link throttled so that it falls behind (max_behind_s = 2) ----
t_thr=$(now)
ip netns exec "$SW" tc qdisc add dev ps3 root tbf rate 16mbit burst 64kb latency 500ms
# the body of a 503 says how far behind: "behind model_version=.. topic_version=.. behind_s=X .."
late() {
  HZ=$(nsx kafka curl -s -m 3 -w ' code=%{http_code}' "http://${IP[s3]}:9100/healthz" || true)
  [[ "$HZ" == *"code=503" ]]
}
wait_for 90 "serve3 /healthz 503" late
t_503=$(now)
behind=$(sed -n 's/.*behind_s=\([0-9.]*\).*/\1/p' <<<"$HZ")
[[ "$HZ" == behind* ]] && python3 -c "import sys; sys.exit(0 if $behind > 2 else 1)" ||
  fail "503 without being behind more than 2 s: $HZ"
up s1 || fail "serve1 /healthz not 200 while serve3 is behind"
ip netns exec "$SW" tc qdisc del dev ps3 root
t_free=$(now)
caught() { up s3 && [ "$(metric s3 kprec_model_follower_version)" -ge "$(metric tr kprec_model_version)" ]; }
wait_for 90 "serve3 /healthz 200 again" caught
t_200=$(now)
figure "serve3 throttled to 16 Mbit/s: /healthz 503 after $(elapsed "$t_thr" "$t_503") s (behind ${behind} s > max_behind_s 2); freed: 200 and current again $(elapsed "$t_free" "$t_200") s later"

# ---- fencing: a second trainer, same transactional_id, on another host ----
conf "$T/tr2" tr2 train
start trainer3 tr2 "$T/tr2"
TR3=$WPID
fenced() { ! kill -0 "$TR" 2>/dev/null || [ "$(ps -o stat= -p "$TR" | cut -c1)" = Z ]; }
# the failure says what trainer2 last did (the log dump at exit is long and gets cut in CI output)
fenced_or_say() {
  fenced && return 0
  [ $SECONDS -lt $fence_end ] || [ -n "${fence_said:-}" ] && return 1
  fence_said=1
  echo "trainer2's last lines (no delivery-report noise):" >&2
  grep -v "Purged in queue" "$T/tr/trainer2.log" | tail -8 >&2
  return 1
}
fence_end=$((SECONDS + 119))
wait_for 120 "trainer2 to stop once fenced" fenced_or_say
wait "$TR" && tr2_rc=0 || tr2_rc=$?
grep -q "fenced or failed: stopping" "$T/tr/trainer2.log" ||
  fail "trainer2 stopped without saying it was fenced"
ok "trainer2 stopped (exit $tr2_rc): $(grep -o 'the transactional producer is fenced.*' "$T/tr/trainer2.log" | head -1)"
TR=$TR3
wait_for 120 "trainer3 started" grep -q "trainer: starting at model version" "$T/tr2/trainer3.log"
read -r V3 B3 L3 < <(sed -n 's/.*starting at model version \([0-9]*\) (lineage \([0-9]*\)), publishing as lineage \([0-9]*\).*/\1 \2 \3/p' "$T/tr2/trainer3.log")
X2=$(last_pub "$T/tr/trainer2.log")
[ "$V3" = "$X2" ] || fail "trainer3 started at $V3, trainer2 had committed $X2"
[ "$B3" = "$L2" ] || fail "trainer3 continues lineage $B3, not trainer2's $L2"
ok "trainer3 (empty disk, host tr2) fenced trainer2, continues at version $V3 from lineage $L2 as $L3"
wait_for 120 "trainer3 publishing" grep -q "published model version" "$T/tr2/trainer3.log"

# ---- the end: all items, the trainer's final version everywhere ----
wait "$RI" || fail "item replay failed"
all_done() { [ "$(rec_keys)" -ge 30000 ]; }
wait_for 180 "30000 Redis entries" all_done
touch "$T/clicks.stop"
wait "$RC" || fail "click replay failed"
kill -TERM "$TR"
wait "$TR" || fail "trainer3 exit code $?"
t_stop=$(now)
final=$(sed -n 's/.*published \(model\|checkpoint\) version \([0-9]*\).*/\2/p' "$T/tr2/trainer3.log" | tail -1)
at_final() { for h in s1 s2 s3; do [ "$(metric "$h" kprec_model_version)" = "$final" ] || return 1; done; }
wait_for 60 "every replica at version $final" at_final
t_conv=$(now)
for h in s1 s2 s3; do
  [ "$(metric "$h" kprec_model_topic_version)" = "$final" ] || fail "$h: topic version $(metric "$h" kprec_model_topic_version) != $final"
  [ "$(metric "$h" kprec_model_lineage)" = "$L3" ] || fail "$h: lineage $(metric "$h" kprec_model_lineage) != $L3"
  [ "$(metric "$h" kprec_model_stuck)" = 0 ] || fail "$h reports stuck"
  up "$h" || fail "$h /healthz not 200"
done
figure "every replica at the final version $final (lineage $L3) $(elapsed "$t_stop" "$t_conv") s after trainer3 stopped"
[ "$(rec_keys)" -eq 30000 ] || fail "expected exactly 30000 Redis entries, got $(rec_keys)"
ok "30000 items, one Redis entry each"
for h in s1 s2 s3; do kill -TERM "${PID[$h]}"; wait "${PID[$h]}" || fail "$h exit code $?"; done
kill "${SAMPLERS[@]}" 2>/dev/null || true

# versions never went backwards; no version above trainer1's last commit came from its lineage
for h in s1 s2 s3; do
  python3 - "$T/samples/$h.log" "$L1" "$X1" <<'PY'
import sys
rows = [l.split() for l in open(sys.argv[1]) if len(l.split()) == 7]
l1, x1 = int(sys.argv[2]), int(sys.argv[3])
served = [int(r[1]) for r in rows]
follower = [int(r[2]) for r in rows]
back = [(a, b) for a, b in zip(served, served[1:]) if b < a]
assert len(rows) > 30, f"{sys.argv[1]}: only {len(rows)} samples"
assert not back, f"{sys.argv[1]}: serving version went backwards: {back[:3]}"
assert not [(a, b) for a, b in zip(follower, follower[1:]) if b < a], f"{sys.argv[1]}: follower went back"
bad = [r for r in rows if int(r[3]) == l1 and int(r[2]) > x1]
assert not bad, f"{sys.argv[1]}: held trainer1's uncommitted version: {bad[:2]}"
codes = sorted({r[6] for r in rows})
print(f"ok: {sys.argv[1].split('/')[-1]}: {len(rows)} samples, versions {served[0]}..{served[-1]} never backwards, /healthz codes {codes}", file=sys.stderr)
PY
done
# one lineage: each trainer starts where the previous one committed, versions strictly increasing
for f in "$T/tr/trainer1.log" "$T/tr/trainer2.log" "$T/tr2/trainer3.log"; do
  sed -n 's/.*published \(model\|checkpoint\) version \([0-9]*\).*/\2/p' "$f" | uniq
done | python3 -c '
import sys
v = [int(x) for x in sys.stdin]
assert v == sorted(v) and len(set(v)) == len(v), f"versions not strictly increasing: {v}"
assert v == list(range(v[0], v[-1] + 1)), f"versions with holes: {v}"
print(f"ok: trainers published versions {v[0]}..{v[-1]}, strictly increasing, no holes, across both restarts", file=sys.stderr)'

nsx kafka "$KPREC" dump -c "$KCONF" --topic suggestions --idle-ms 3000 >"$T/sugg.jsonl"
python3 - "$T/sugg.jsonl" "$D/items.tsv" <<'PY'
import json, sys
ids = {json.loads(l)["item_id"] for l in open(sys.argv[1])}
base = [l.split("\t")[0] for l in open(sys.argv[2]).read().splitlines()[1:]]
want = {base[i % len(base)] if i < len(base) else f"{base[i % len(base)]}~{i // len(base)}" for i in range(30000)}
missing = want - ids
assert not missing, f"{len(missing)} items without a suggestion record, e.g. {sorted(missing)[:3]}"
print(f"ok: all 30000 items have a suggestion record ({len(ids)} distinct item ids)", file=sys.stderr)
PY
figure "lineages: trainer1 $L1 (killed at $X1), trainer2 $L2 (fenced at $X2), trainer3 $L3 (final $final)"
figure "whole test: $((SECONDS - T0)) s"
