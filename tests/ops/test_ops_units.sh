#!/usr/bin/env bash
# The operations kit checks out: the systemd units (systemd-analyze verify, sandbox exposure,
# the required settings, the two-stage stop), the Prometheus config and alert rules (promtool
# check config / check rules / test rules, and the rule tests fail when an alert is broken), and
# that the rules and the Grafana dashboard name only metrics common/telemetry.c serves.
#
#   tests/ops/test_ops_units.sh [KPREC_BINARY]     (default: $KPREC, else build/kprec)
#
# The units' ExecStart names /usr/local/bin/kprec; systemd-analyze verify needs that file to be
# executable, so the units are verified as temporary copies pointing at the built binary: nothing
# is installed. Needs systemd-analyze and promtool (ops/install-deps.sh installs them).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
KPREC=${1:-${KPREC:-$ROOT/build/kprec}}
fail() { echo "FAIL: $*" >&2; exit 1; }
for t in systemd-analyze promtool python3; do
  command -v "$t" >/dev/null || fail "$t not found: run ops/install-deps.sh"
done
[ -x "$KPREC" ] || fail "kprec binary $KPREC not found: build it (cmake --build build --target kprec) or pass its path"
KPREC=$(cd "$(dirname "$KPREC")" && pwd)/$(basename "$KPREC")
T=$(mktemp -d /tmp/kprec-ops-test.XXXXXX)
pid=  # the stand-in worker of the ExecStop check, killed if the test stops while it runs
trap '[ -z "$pid" ] || kill -9 "$pid" 2>/dev/null; rm -rf "$T"' EXIT
UNITS=(kprec-serve@.service kprec-train.service)
# the unit names systemd-analyze verifies (a template needs an instance)
instance() { case "$1" in *@.service) echo "${1%@.service}@main.service" ;; *) echo "$1" ;; esac; }

# verify DIR: systemd-analyze verify of every unit copied in DIR. Fails on a non-zero exit and on
# any message about our units (an unknown key or a bad value is only a warning to systemd).
verify() {
  local dir=$1 out rc=0 u args=()
  for u in "${UNITS[@]}"; do args+=("$dir/$(instance "$u")"); done
  out=$(cd "$dir" && systemd-analyze verify --man=no "${args[@]}" 2>&1) || rc=$?
  if [ "$rc" -ne 0 ] || printf '%s\n' "$out" | grep -q 'kprec'; then
    printf '%s\n' "$out" >&2
    return 1
  fi
}
# copy_units DIR: the units with ExecStart pointing at the built binary
copy_units() {
  mkdir -p "$1"
  for u in "${UNITS[@]}"; do
    grep -q '^ExecStart=/usr/local/bin/kprec worker -c /etc/kprec/' "$ROOT/ops/systemd/$u" ||
      fail "$u: ExecStart is not '/usr/local/bin/kprec worker -c /etc/kprec/...'"
    sed "s|^ExecStart=/usr/local/bin/kprec |ExecStart=$KPREC |" "$ROOT/ops/systemd/$u" >"$1/$u"
    grep -q "^ExecStart=$KPREC worker" "$1/$u" || fail "$u: ExecStart not rewritten"
  done
}

echo "== systemd-analyze verify" >&2
copy_units "$T/units"
verify "$T/units" || fail "systemd-analyze verify: the units have errors (above)"
# the check itself has teeth: a misspelt key and a missing binary are caught
copy_units "$T/bad1"; sed -i 's/^ProtectSystem=/ProtectSytem=/' "$T/bad1/kprec-serve@.service"
verify "$T/bad1" 2>/dev/null && fail "verify did not catch a misspelt key"
copy_units "$T/bad2"; sed -i "s|^ExecStart=$KPREC |ExecStart=$T/no-such-kprec |" "$T/bad2/kprec-train.service"
verify "$T/bad2" 2>/dev/null && fail "verify did not catch a missing ExecStart binary"
echo "   ok: both units verify; a misspelt key and a missing binary fail" >&2

echo "== required settings and sandbox exposure" >&2
required=(User=kprec EnvironmentFile=-/etc/kprec/kprec.env Restart=on-failure RestartSec=
          RestartPreventExitStatus=2 StartLimitIntervalSec= StartLimitBurst= KillSignal=SIGTERM
          TimeoutStopSec= LimitNOFILE= StateDirectory=kprec NoNewPrivileges=yes
          ProtectSystem=strict ProtectHome=yes PrivateTmp=yes PrivateDevices=yes
          ProtectKernelTunables=yes ProtectKernelModules=yes ProtectKernelLogs=yes
          ProtectControlGroups=yes "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX"
          SystemCallFilter=@system-service MemoryDenyWriteExecute=yes LockPersonality=yes
          CapabilityBoundingSet= ExecStop=)
for u in "${UNITS[@]}"; do
  for k in "${required[@]}"; do
    grep -q "^$k" "$ROOT/ops/systemd/$u" || fail "$u: no '$k' line"
  done
  # CapabilityBoundingSet= must be empty (no capability at all)
  grep -q '^CapabilityBoundingSet=$' "$ROOT/ops/systemd/$u" || fail "$u: CapabilityBoundingSet= is not empty"
done
grep -q '^ExecStart=.* -c /etc/kprec/%i.ini$' "$ROOT/ops/systemd/kprec-serve@.service" ||
  fail "kprec-serve@.service: the config is not /etc/kprec/%i.ini"
grep -q '^Environment=KPREC_WORKER_ROLE=serve$' "$ROOT/ops/systemd/kprec-serve@.service" || fail "serve unit: role"
grep -q '^Environment=KPREC_WORKER_ROLE=train$' "$ROOT/ops/systemd/kprec-train.service" || fail "train unit: role"
# systemd's own score (0 = locked down .. 10 = unprotected; --threshold is in tenths): a unit that
# loses its sandbox scores far above 2.0
for u in "${UNITS[@]}"; do
  out=$(cd "$T/units" && systemd-analyze security --offline=yes --threshold=20 "./$(instance "$u")" 2>&1) ||
    { printf '%s\n' "$out" | tail -3 >&2; fail "$u: sandbox exposure above 2.0"; }
  echo "   $(printf '%s\n' "$out" | grep 'Overall exposure' | sed 's/→ //')" >&2
done
# and that check has teeth too: without its sandbox lines the unit scores above the threshold
mkdir -p "$T/nosandbox"
grep -vE '^(Protect|Private|Restrict|SystemCall|NoNewPrivileges|MemoryDeny|LockPersonality|Capability|RemoveIPC|DevicePolicy)' \
  "$T/units/kprec-train.service" >"$T/nosandbox/kprec-train.service"
(cd "$T/nosandbox" && systemd-analyze security --offline=yes --threshold=20 ./kprec-train.service) >/dev/null 2>&1 &&
  fail "the exposure threshold did not catch a unit without its sandbox"

echo "== ExecStop: first SIGTERM, then a second one if the worker still runs" >&2
# The stop command as sh sees it: systemd turns $$ into $ and sets MAINPID for ExecStop. The 45 s
# grace is shortened to 2 s to keep the test fast.
for u in "${UNITS[@]}"; do
  line=$(grep '^ExecStop=' "$ROOT/ops/systemd/$u")
  script=$(printf '%s\n' "$line" | sed -e "s/^ExecStop=\/bin\/sh -c '//" -e "s/'\$//" -e 's/\$\$/$/g')
  [ "$script" != "$line" ] || fail "$u: ExecStop is not /bin/sh -c '...'"
  printf '%s\n' "$script" | grep -q -- '-lt 45 ' || fail "$u: ExecStop grace is not 45 s"
  script=${script/-lt 45 /-lt 2 }
  for mode in obedient stubborn; do
    : >"$T/signals"
    # a stand-in worker: counts its SIGTERMs; the obedient one exits on the first, the stubborn
    # one (waiting for Redis) only on the second
    need=1; [ "$mode" = stubborn ] && need=2
    bash -c 'n=0; trap '\''n=$((n+1)); echo TERM >>"$1"; [ $n -ge $2 ] && exit 0'\'' TERM
             while :; do sleep 0.05; done' stub "$T/signals" "$need" &
    pid=$!
    sleep 0.3
    start=$(date +%s%N)
    MAINPID=$pid /bin/sh -c "$script" || fail "$u: ExecStop exited non-zero ($mode)"
    took=$((($(date +%s%N) - start) / 1000000))
    for _ in $(seq 20); do kill -0 "$pid" 2>/dev/null || break; sleep 0.05; done
    if kill -0 "$pid" 2>/dev/null; then
      kill -9 "$pid"; wait "$pid" 2>/dev/null || true
      fail "$u: the $mode stand-in still runs after ExecStop ($(wc -l <"$T/signals") SIGTERM(s))"
    fi
    wait "$pid" 2>/dev/null || true
    pid=
    got=$(wc -l <"$T/signals")
    [ "$got" -eq "$need" ] || fail "$u: $mode stand-in got $got SIGTERM(s), expected $need"
    if [ "$mode" = obedient ]; then
      [ "$took" -lt 1500 ] || fail "$u: ExecStop waited ${took} ms for a worker that had exited"
    else
      [ "$took" -ge 1500 ] || fail "$u: ExecStop sent the second SIGTERM after ${took} ms, before the grace"
    fi
    echo "   $u: $mode worker: $got SIGTERM(s), ExecStop returned after ${took} ms" >&2
  done
done

echo "== promtool" >&2
P=$ROOT/ops/prometheus
promtool check config "$P/prometheus.yml"
promtool check rules "$P/kprec.rules.yml"
promtool test rules "$P/kprec.rules.test.yml"

echo "== the rule tests catch broken alerts" >&2
# For every alert, two broken copies of the rules: one where it can never fire (the test that it
# fires must fail), one without its threshold (the test that it stays silent must fail).
mkdir -p "$T/mut"
cp "$P/kprec.rules.test.yml" "$T/mut/"
alerts=$(sed -n 's/^ *- alert: *//p' "$P/kprec.rules.yml")
[ "$(printf '%s\n' "$alerts" | wc -l)" -ge 10 ] || fail "fewer than 10 alerts in kprec.rules.yml"
mutate() { # mutate ALERT never|nothreshold > file
  python3 - "$P/kprec.rules.yml" "$1" "$2" <<'PY'
import re, sys
path, alert, how = sys.argv[1:]
lines = open(path).read().split("\n")
out, i, cur, done = [], 0, None, False
while i < len(lines):
    l = lines[i]
    m = re.match(r"^\s*- alert:\s*(\S+)", l)
    if m:
        cur = m.group(1)
    m = re.match(r"^(\s*)expr:\s*(.*)$", l)
    if m and cur == alert:
        ind, val = m.group(1), m.group(2).strip()
        if val in (">-", ">", "|", "|-"):
            body = []
            i += 1
            while i < len(lines) and (not lines[i].strip() or len(lines[i]) - len(lines[i].lstrip()) > len(ind)):
                body.append(lines[i].strip()); i += 1
            val = " ".join(body)
        else:
            i += 1
        if how == "never":
            new = "vector(1) == 2"
        else:
            new = re.sub(r"\s*(==|!=|>=|<=|>|<)\s*[-+0-9.e]+\s*$", "", val)
            if new == val:
                sys.exit(f"{alert}: no trailing threshold in: {val}")
        out.append(f"{ind}expr: '{new.replace(chr(39), chr(39) * 2)}'")
        done = True
        continue
    out.append(l)
    i += 1
if not done:
    sys.exit(f"alert {alert} not found")
print("\n".join(out))
PY
}
n=0
for a in $alerts; do
  for how in never nothreshold; do
    mutate "$a" "$how" >"$T/mut/kprec.rules.yml"
    promtool check rules "$T/mut/kprec.rules.yml" >/dev/null || fail "$a ($how): the mutated rules do not parse"
    if promtool test rules "$T/mut/kprec.rules.test.yml" >"$T/mut/out" 2>&1; then
      fail "$a: kprec.rules.test.yml still passes with the alert broken ($how)"
    fi
    grep -q "alertname: $a," "$T/mut/out" || { cat "$T/mut/out" >&2; fail "$a ($how): the failure is not about $a"; }
    n=$((n + 1))
  done
done
echo "   ok: $n broken variants, each caught by the test of its own alert" >&2

echo "== metric names in the rules and the dashboard" >&2
python3 "$ROOT/tests/ops/check_metric_names.py" "$ROOT"

echo "test_ops_units: ok"
