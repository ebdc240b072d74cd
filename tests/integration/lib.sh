# Shared by the integration tests: each test gets its own temp dir, its own Kafka broker and Redis
# server (through ops/), and tears everything down on exit.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
KPREC=${1:?usage: $0 PATH_TO_KPREC}
KPREC=$(cd "$(dirname "$KPREC")" && pwd)/$(basename "$KPREC")
T=$(mktemp -d "${TMPDIR:-/tmp}/kprec-it.XXXXXX")
WORKERS=()
EXIT_HOOKS=()
"$ROOT/ops/install-deps.sh"

# at_exit 'COMMAND': evaluated first when the test exits, whatever its status ($rc holds it)
at_exit() { EXIT_HOOKS+=("$1"); }

cleanup() {
  local rc=$?
  for h in "${EXIT_HOOKS[@]}"; do eval "$h" || true; done
  for p in "${WORKERS[@]}"; do kill -9 "$p" 2>/dev/null || true; done
  "$ROOT/ops/stack.sh" down "$T/stack" >/dev/null 2>&1 || true
  if [ "$rc" -ne 0 ]; then
    echo "--- test failed (rc=$rc); worker logs:" >&2
    for f in "$T"/*.log; do [ -f "$f" ] && { echo "== $f" >&2; tail -40 "$f" >&2; }; done
  fi
  [ -n "${KEEP_TMP:-}" ] || rm -rf "$T"
  exit "$rc"
}
trap cleanup EXIT

fail() { echo "FAIL: $*" >&2; exit 1; }
ok() { echo "ok: $*" >&2; }

# stack_up: data in $T/data, Kafka + Redis + topics, config $CONF
stack_up() {
  "$ROOT/ops/esci-prepare.sh" "$T/data"
  "$ROOT/ops/stack.sh" up "$T/stack" "$KPREC" "$T/data/keyphrases.tsv"
  CONF=$T/stack/kprec.ini
  RPORT=$(cat "$T/stack/redis/port")
}

# start_worker NAME [ENV=VAL...]: starts a worker in the background, its pid in $WPID
start_worker() {
  local name=$1; shift
  env "$@" "$KPREC" worker -c "$CONF" >>"$T/$name.log" 2>&1 &
  WPID=$!
  WORKERS+=("$WPID")
}

# fast_trainer_conf 'EXTRA [train] LINES': a trainer that publishes often (a delta every 4 steps
# or 2 s, a checkpoint every 3 versions) and a 6 s session timeout, so killed members leave fast
fast_trainer_conf() {
  printf '\n[train]\n%s\ndelta_steps = 4\ndelta_ms = 2000\ncheckpoint_every = 3\nbatch_size = 256\n' \
    "${1:-}" >>"$CONF"
  sed -i 's/^\[kafka\]/[kafka]\nsession.timeout.ms = 6000/' "$CONF"
}

rcli() { redis-cli -p "$RPORT" "$@"; }
rec_keys() { rcli --scan --pattern 'kprec:rec:*' | wc -l; }

# wait_for SECONDS DESCRIPTION COMMAND...: polls until COMMAND succeeds
source "$ROOT/tests/integration/wait.sh"
