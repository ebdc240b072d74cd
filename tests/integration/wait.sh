# Shared by the shell tests that wait for a condition (source it; the caller defines fail).
# wait_for SECONDS WHAT CMD...: runs CMD every 0.5 s until it succeeds; fails after SECONDS.
wait_for() {
  local secs=$1 what=$2; shift 2
  local end=$((SECONDS + secs))
  until "$@"; do
    [ $SECONDS -lt $end ] || fail "timed out after ${secs}s waiting for $what"
    sleep 0.5
  done
}
