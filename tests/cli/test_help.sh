#!/usr/bin/env bash
# Every verb the binary has is listed by `kprec help` and answers --help with its usage, the
# inputs and defaults it takes, and an example. The verbs are read from the source (the table in
# cli/main.c), so a new verb cannot be added without its help.
set -uo pipefail
KPREC=${1:?usage: test_help.sh KPREC}
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
verbs=$(sed -n 's/^ *{"\([a-z-]*\)", kp_cmd_[a-z_]*, ".*"},$/\1/p' "$ROOT/cli/main.c")
n=$(wc -w <<<"$verbs")
ok "verbs read from cli/main.c ($n)" test "$n" -ge 10
help=$("$KPREC" help 2>&1)
for v in $verbs; do
  ok "help lists $v" grep -qE "^  $v +[a-z]" <<<"$help"
  check "$v --help" 0 "^usage: kprec $v" -- "$KPREC" "$v" --help
  out=$("$KPREC" "$v" --help 2>&1)
  ok "$v --help has an example" grep -qE "^Example" <<<"$out"
  ok "$v --help example runs kprec $v" grep -qE "^  (.*=.* )?kprec $v( |$)" <<<"$out"
done
# and nothing in `kprec help` that is not a verb of the source
for v in $(sed -n 's/^  \([a-z-]*\) .*/\1/p' <<<"$help"); do
  [ "$v" = help ] && continue
  ok "$v in help is a verb of cli/main.c" grep -qw -- "$v" <<<"$verbs"
done
finish
