#!/usr/bin/env bash
# The trainer on real Kafka + Redis under hostile input (issue 10):
#  1. judgments with score NaN / 7.5 / -1e300, a 900 KB non-UTF-8 keyphrase, a non-UTF-8 title:
#     each is dead-lettered alone; every good judgment is trained on (none lost to a rejected step);
#  2. clicks whose items have no title yet: the pending list stops at [train] max_pending (the
#     input is paused, /healthz says so), nothing is dropped: once the titles are in Redis every
#     one is trained on;
#  3. more idle connections than [worker] metrics_max_connections: the trainer holds at most that
#     many, closes them after metrics_timeout_s, answers /metrics, and still trains (Kafka, Redis);
#  4. a second worker on the same metrics port fails at once with a clear error.
# usage: test_train_hostile.sh KPREC HOSTILE   (SECTIONS="2 3" runs only those parts)
source "$(dirname "$0")/../integration/lib.sh"
HOSTILE=${2:?usage: $0 KPREC HOSTILE}
stack_up
BOOT=$(awk -F' *= *' '$1 == "bootstrap.servers" { print $2; exit }' "$CONF")
fast_trainer_conf 'resolve_timeout_ms = 600000'
printf 'max_pending = 300\n' >>"$CONF"
mkdir -p "$T/ckpt"
TP=$(python3 -c 'import socket;s=socket.socket();s.bind(("127.0.0.1",0));print(s.getsockname()[1])')
TENV=(KPREC_WORKER_ROLE=train KPREC_WORKER_METRICS_PORT="$TP" KPREC_TRAIN_CHECKPOINT_DIR="$T/ckpt"
      KPREC_WORKER_HEALTH_MAX_PAUSED_S=2 KPREC_WORKER_METRICS_MAX_CONNECTIONS=8
      KPREC_WORKER_METRICS_TIMEOUT_S=2)
start_worker trainer "${TENV[@]}"
TR=$WPID
metric() { curl -sf -m 5 "http://127.0.0.1:$TP/metrics" | awk -v k="$1" '$1 == k { print $2 }'; }
is() { [ "$(metric "$1")" = "$2" ]; }
at_least() { local v; v=$(metric "$1"); [ -n "$v" ] && [ "$v" -ge "$2" ]; }
wait_for 180 "trainer up" curl -sf "http://127.0.0.1:$TP/healthz" -o /dev/null
wait_for 180 "trainer consuming" grep -q "trainer: consuming" "$T/trainer.log"
JT=$(awk -F' *= *' '$1 == "judgments" { print $2; exit }' "$CONF"); JT=${JT:-relevance.judgments}
CT=$(awk -F' *= *' '$1 == "clicks" { print $2; exit }' "$CONF"); CT=${CT:-items.clicks}
DL='kprec_events_dead_lettered_total{topic="judgments"}'
SECTIONS=${SECTIONS:-1 2 3 4}
run() { [[ " $SECTIONS " == *" $1 "* ]]; }

# 1. hostile judgments
N0=0
if run 1; then
N0=400
read -r _ good _ bad < <("$HOSTILE" "$BOOT" "$JT" judgments 400)
[ "$good" = 400 ] && [ "$bad" = 40 ] || fail "hostile wrote good=$good bad=$bad"
wait_for 120 "40 judgments dead-lettered" is "$DL" 40
wait_for 120 "400 judgments trained on" at_least kprec_train_events_total 400
sleep 3
is kprec_train_events_total 400 || fail "trained on $(metric kprec_train_events_total) events, expected 400"
is "$DL" 40 || fail "$(metric "$DL") judgments dead-lettered, expected 40"
grep -q "score out of range (nan" "$T/trainer.log" || fail "no NaN score dead-letter reason"
grep -q "keyphrase too long (921600 > 512 bytes)" "$T/trainer.log" || fail "no keyphrase-size reason"
grep -q "title is not valid UTF-8" "$T/trainer.log" || fail "no UTF-8 reason"
grep -q "step of .* rejected" "$T/trainer.log" && fail "a step was rejected"
ok "hostile judgments: 40 dead-lettered one by one, all 400 good ones trained on"
fi

# 2. pending bound: 1500 clicks on items Redis has no title for
if run 2; then
"$HOSTILE" "$BOOT" "$CT" clicks pb- 1500 >/dev/null
wait_for 60 "input paused" is kprec_paused 1
sleep 3
pend=$(metric kprec_train_pending)
[ "$pend" -le 300 ] || fail "pending list at $pend, max_pending 300"
code=$(curl -s -m 5 -o "$T/health.txt" -w '%{http_code}' "http://127.0.0.1:$TP/healthz")
[ "$code" = 503 ] && grep -q "paused" "$T/health.txt" || fail "/healthz $code while paused: $(cat "$T/health.txt")"
ok "pending list bounded: $pend events waiting, input paused, /healthz 503: $(cat "$T/health.txt")"
for i in $(seq 0 1499); do printf 'SET kprec:item:pb-%d "cordless drill pb %d"\n' "$i" "$i"; done | rcli >/dev/null
wait_for 240 "all 1500 clicks trained on" at_least kprec_train_events_total $((N0 + 1500))
sleep 2
is kprec_train_events_total $((N0 + 1500)) ||
  fail "trained on $(metric kprec_train_events_total), expected $((N0 + 1500))"
is kprec_paused 0 || fail "still paused"
is 'kprec_events_dead_lettered_total{topic="clicks"}' 0 || fail "clicks were dead-lettered"
wait_for 30 "/healthz ok again" curl -sf "http://127.0.0.1:$TP/healthz" -o /dev/null
ok "titles arrived: all 1500 paused clicks trained on, none dropped, input resumed"
fi

# 3. 60 idle connections against a limit of 8
if run 3; then
for i in $(seq 0 99); do printf 'SET kprec:item:fl-%d "cordless drill fl %d"\n' "$i" "$i"; done | rcli >/dev/null
base=$(metric kprec_train_events_total)
fds() { ls "/proc/$TR/fd" | wc -l; }
before=$(fds)
python3 - "$TP" "$T/idle.done" <<'PY' &
import os, socket, sys, time
socks = [socket.create_connection(("127.0.0.1", int(sys.argv[1]))) for _ in range(60)]
open(sys.argv[2] + ".open", "w").close()
while not os.path.exists(sys.argv[2]):
    time.sleep(0.1)
PY
IDLE=$!
wait_for 10 "idle connections open" test -e "$T/idle.done.open"
sleep 0.5
during=$(fds)
[ $((during - before)) -le 12 ] || fail "trainer holds $((during - before)) more descriptors under 60 idle connections (limit 8)"
wait_for 10 "/metrics answers under idle connections" curl -sf -m 2 "http://127.0.0.1:$TP/metrics" -o /dev/null
"$HOSTILE" "$BOOT" "$CT" clicks fl- 100 >/dev/null
wait_for 120 "clicks trained on during the flood" at_least kprec_train_events_total $((base + 100))
touch "$T/idle.done"
wait "$IDLE"
ok "60 idle connections: $((during - before)) descriptors held (limit 8), /metrics answered, training went on"
fi

# 4. a second worker on the same metrics port
if run 4; then
set +e
timeout 60 env "${TENV[@]}" "$KPREC" worker -c "$CONF" >"$T/second.log" 2>&1
rc2=$?
set -e
[ "$rc2" = 2 ] || fail "second worker exited $rc2, expected 2"
grep -q "cannot listen on 127.0.0.1:$TP: Address already in use" "$T/second.log" ||
  fail "no clear error: $(cat "$T/second.log")"
curl -sf "http://127.0.0.1:$TP/healthz" -o /dev/null || fail "first trainer no longer answers"
ok "second worker on port $TP: $(grep -o 'cannot listen.*' "$T/second.log" | head -1)"
fi

kill -TERM "$TR"
wait "$TR" || fail "trainer exited $?"
ok "trainer stopped cleanly"
