# Shared by the tests/cli scripts (source it): pass/fail counting and the two kinds of checks.
fails=0 passes=0
check() { # check NAME EXPECTED_RC PATTERN -- CMD...: CMD exits EXPECTED_RC, its output matches
  local name=$1 want=$2 pat=$3; shift 4
  out=$("$@" 2>&1); rc=$?
  if [ "$rc" -ne "$want" ] || ! grep -qE -- "$pat" <<<"$out"; then
    echo "FAIL $name: rc=$rc (want $want), output: $out" >&2; fails=$((fails + 1))
  else passes=$((passes + 1)); fi
}
ok() { # ok NAME CONDITION-CMD...: CONDITION-CMD succeeds
  local name=$1; shift
  if "$@"; then passes=$((passes + 1)); else echo "FAIL $name" >&2; fails=$((fails + 1)); fi
}
finish() { # prints the counts; fails when a check failed
  echo "$passes passed, $fails failed"
  [ "$fails" -eq 0 ]
}
