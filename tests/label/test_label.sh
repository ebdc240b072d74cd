#!/usr/bin/env bash
# kprec label against tests/label/fixture_server.py (a fake OpenAI-compatible server on a free
# 127.0.0.1 port) on the ESCI sample: judged once with the server's grade, malformed answers
# retried then failed with reasons, 429/500/timeouts retried, resume after kill -9, the API key
# never printed, exit codes.
set -uo pipefail
KPREC=${1:?usage: test_label.sh KPREC}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
FIX=$HERE/fixture_server.py
T=$(mktemp -d)
SRV=
cleanup() {
  [ -n "$SRV" ] && kill "$SRV" 2>/dev/null
  rm -rf "$T"
}
trap cleanup EXIT
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY
fails=0 passes=0
ok() { # ok NAME CONDITION-CMD...
  local name=$1; shift
  if "$@"; then passes=$((passes + 1)); else echo "FAIL $name" >&2; fails=$((fails + 1)); fi
}
bash "$HERE/../../ops/esci-prepare.sh" "$T/d" 2>/dev/null || { echo "esci-prepare failed" >&2; exit 1; }
D=$T/d
python3 "$FIX" serve "$T/port" "$T/log.jsonl" &
SRV=$!
for _ in $(seq 100); do [ -s "$T/port" ] && break; sleep 0.1; done
[ -s "$T/port" ] || { echo "fixture server did not start" >&2; exit 1; }
URL=http://127.0.0.1:$(cat "$T/port")
SECRET=sk-test-$RANDOM$RANDOM-do-not-print
export OPENAI_API_KEY=$SECRET
# pairs: the (item, keyphrase) of the first N judgments, plus a duplicate and an unknown id
pairs() { awk -F'\t' -v n="$1" 'NR == 1 { print "item_id\tkeyphrase_id" } NR > 1 && NR <= n + 1 { print $3 "\t" $2 }' "$D/judgments.tsv"; }
pairs 40 >"$T/p40.tsv"
{ cat "$T/p40.tsv"; sed -n 2p "$T/p40.tsv"; printf 'NO_SUCH_ITEM\tq1\n'; } >"$T/p40dup.tsv"
pairs 4 >"$T/p4.tsv"
LBL=(--items "$D/items.tsv" --keyphrases "$D/keyphrases.tsv" --backoff-ms 20 --quiet)
# run NAME MODE EXTRA...: kprec label on the fixture's MODE, output in $T/NAME.{tsv,failed,out,err}
run() {
  local name=$1 mode=$2; shift 2
  "$KPREC" label "${LBL[@]}" --base-url "$URL/$mode/v1" --out "$T/$name.tsv" \
    --failed "$T/$name.failed" "$@" >"$T/$name.out" 2>"$T/$name.err"
  RC=$?
  cat "$T/$name.out" "$T/$name.err" >>"$T/all-output"
}
rows() { echo $(($(wc -l <"$1") - 1)); }
nreq() { # nreq MODE [N]: requests logged for MODE (with attempt number N)
  python3 -c 'import json,sys; m=sys.argv[2]; n=int(sys.argv[3]) if len(sys.argv)>3 else None
print(sum(1 for l in open(sys.argv[1]) if (r:=json.loads(l))["mode"]==m and (n is None or r["n"]==n)))' "$T/log.jsonl" "$@"
}
check() { python3 "$FIX" check "$D/items.tsv" "$D/keyphrases.tsv" "$1" >/dev/null; }

# ---- usage ----
"$KPREC" label --help >"$T/help" 2>&1
ok help-rc test $? -eq 0
ok help-text grep -q -- "--per-item" "$T/help"
ok help-example grep -q "Example:" "$T/help"
"$KPREC" label "${LBL[@]}" --out "$T/x.tsv" 2>/dev/null
ok usage-no-pairs test $? -eq 2
"$KPREC" label "${LBL[@]}" --pairs "$T/p4.tsv" 2>/dev/null
ok usage-no-output test $? -eq 2
"$KPREC" label "${LBL[@]}" --pairs "$T/p4.tsv" --out "$T/x.tsv" --grades 3:1 2>/dev/null
ok usage-bad-grades test $? -eq 2
"$KPREC" label "${LBL[@]}" --pairs "$T/p4.tsv" --out "$T/x.tsv" --response-format yaml 2>/dev/null
ok usage-bad-format test $? -eq 2
printf 'sys\n---\nTitle {title} {keyphrase} {colour}\n' >"$T/bad.tmpl"
"$KPREC" label "${LBL[@]}" --pairs "$T/p4.tsv" --out "$T/x.tsv" --template "$T/bad.tmpl" 2>"$T/x.err"
ok bad-template-rc test $? -eq 1
ok bad-template-msg grep -q "unknown placeholder {colour}" "$T/x.err"

# ---- good: every pair judged exactly once with the fixture's grade ----
run good good --pairs "$T/p40dup.tsv" --concurrency 4
ok good-rc test "$RC" -eq 0
ok good-rows test "$(rows "$T/good.tsv")" -eq 40
ok good-grades check "$T/good.tsv"
ok good-requests test "$(nreq good)" -eq 40
ok good-unknown-warned grep -q "1 pair(s) of .* skipped: unknown" "$T/good.err"
ok good-summary grep -qE "^label: 40 pairs: 40 judged, 0 already in the output, 0 failed.* 40 requests, 1800 tokens" "$T/good.out"
ok good-no-failed test "$(rows "$T/good.failed")" -eq 0
ok good-auth-sent python3 -c 'import json,sys; sys.exit(0 if all(json.loads(l)["auth"] for l in open(sys.argv[1])) else 1)' "$T/log.jsonl"
# a second run judges nothing
run good good --pairs "$T/p40dup.tsv"
ok rerun-rc test "$RC" -eq 0
ok rerun-no-requests test "$(nreq good)" -eq 40
ok rerun-skipped grep -q "40 already in the output" "$T/good.out"
ok rerun-rows test "$(rows "$T/good.tsv")" -eq 40
# the output loads as judgments (kprec eval reads datasets.h's format)
"$KPREC" eval --model bm25 --items "$D/items.tsv" --keyphrases "$D/keyphrases.tsv" --judgments "$T/good.tsv" --quiet >/dev/null 2>&1
ok good-loads test $? -eq 0

# ---- malformed answers: retried, then in the failed file with the reason ----
run malformed malformed --pairs "$T/p40.tsv" --retries 2
ok malformed-rc test "$RC" -eq 1
ok malformed-no-rows test "$(rows "$T/malformed.tsv")" -eq 0
ok malformed-failed-rows test "$(rows "$T/malformed.failed")" -eq 40
ok malformed-attempts test "$(nreq malformed)" -eq 120
ok malformed-attempts-col test "$(awk -F'\t' 'NR > 1 && $3 != 3' "$T/malformed.failed" | wc -l)" -eq 0
ok malformed-logged test "$(grep -c "failed after 3 attempt" "$T/malformed.err")" -eq 40
# each failure's reason names what the fixture did wrong for that pair
python3 - "$T/log.jsonl" "$T/malformed.failed" "$D/items.tsv" "$D/keyphrases.tsv" <<'EOF'
import json, sys
want = {"not-json": "not a JSON object", "wrong-type": "is a string, not a number",
        "out-of-scale": "is outside 1:3", "missing": 'no "grade" member',
        "prose": "not a JSON object"}
kind = {}
for l in open(sys.argv[1]):
    r = json.loads(l)
    if r["mode"] == "malformed": kind[(r["title"], r["keyphrase"])] = r["kind"]
tab = lambda p: dict(l.rstrip("\n").split("\t")[:2] for l in list(open(p))[1:])
items, keys = tab(sys.argv[3]), tab(sys.argv[4])
rows = [l.rstrip("\n").split("\t") for l in list(open(sys.argv[2]))[1:]]
kinds = set()
for iid, kid, att, reason in rows:
    k = kind[(items[iid], keys[kid])]
    kinds.add(k)
    assert want[k] in reason, (k, reason)
assert len(kinds) == 5, kinds  # the 40 pairs cover every kind
EOF
ok malformed-reasons test $? -eq 0
run flaky flaky --pairs "$T/p40.tsv" --retries 2
ok flaky-rc test "$RC" -eq 0
ok flaky-judged check "$T/flaky.tsv"
ok flaky-rows test "$(rows "$T/flaky.tsv")" -eq 40
ok flaky-requests test "$(nreq flaky)" -eq 80

# ---- 429 (Retry-After: 1), 500, slow: retried and judged ----
run r429 429 --pairs "$T/p4.tsv" --concurrency 2
ok 429-rc test "$RC" -eq 0
ok 429-judged check "$T/r429.tsv"
ok 429-rows test "$(rows "$T/r429.tsv")" -eq 4
ok 429-requests test "$(nreq 429)" -eq 8
python3 - "$T/log.jsonl" <<'EOF'
import json, sys
t = {}
for l in open(sys.argv[1]):
    r = json.loads(l)
    if r["mode"] == "429": t.setdefault((r["title"], r["keyphrase"]), {})[r["n"]] = r["t"]
assert len(t) == 4
for k, v in t.items():
    assert v[2] - v[1] >= 0.95, (k, v[2] - v[1])  # Retry-After honoured (backoff is 20 ms)
EOF
ok 429-retry-after test $? -eq 0
run r500 500 --pairs "$T/p40.tsv" --concurrency 8
ok 500-rc test "$RC" -eq 0
ok 500-judged check "$T/r500.tsv"
ok 500-rows test "$(rows "$T/r500.tsv")" -eq 40
ok 500-requests test "$(nreq 500)" -eq 120
run r500few 500~few --pairs "$T/p4.tsv" --retries 1
ok 500-budget-rc test "$RC" -eq 1
ok 500-budget-failed test "$(grep -c "HTTP 500" "$T/r500few.failed")" -eq 4
run slow slow --pairs "$T/p4.tsv" --timeout-ms 300 --concurrency 4
ok slow-rc test "$RC" -eq 0
ok slow-judged check "$T/slow.tsv"
ok slow-requests test "$(nreq slow)" -eq 8
run slowfew slow~few --pairs "$T/p4.tsv" --timeout-ms 300 --retries 0
ok slow-budget-failed test "$(grep -ci "timeout\|timed out" "$T/slowfew.failed")" -eq 4

# ---- --rate: 20 requests at 20/s over 4 threads take >= 0.95 s from first to last ----
pairs 20 >"$T/p20.tsv"
run rate good~rate --pairs "$T/p20.tsv" --rate 20 --concurrency 4
ok rate-rc test "$RC" -eq 0
python3 -c 'import json,sys; t=[r["t"] for r in map(json.loads, open(sys.argv[1])) if r["mode"]=="good~rate"]
sys.exit(0 if len(t) == 20 and max(t) - min(t) >= 0.9 else 1)' "$T/log.jsonl"
ok rate-spaced test $? -eq 0

# ---- response_format variants ----
run schema schema --pairs "$T/p4.tsv" --response-format json_schema
ok schema-rc test "$RC" -eq 0
run schema-wrong schema~wrong --pairs "$T/p4.tsv"
ok schema-wrong-rc test "$RC" -eq 1
run nofmt noformat --pairs "$T/p4.tsv" --response-format none
ok noformat-rc test "$RC" -eq 0

# ---- the API key is never printed; 401 is fatal ----
run echo echo --pairs "$T/p4.tsv"
ok echo-rc test "$RC" -eq 1
ok echo-failed test "$(grep -c "HTTP 400" "$T/echo.failed")" -eq 4
ok echo-redacted grep -q "Bearer \*\*\*" "$T/echo.failed"
pairs 200 >"$T/p200.tsv"
run unauth 401 --pairs "$T/p200.tsv" --concurrency 2
ok 401-rc test "$RC" -eq 1
ok 401-stops test "$(nreq 401)" -le 4
ok 401-message grep -q "fatal error: HTTP 401" "$T/unauth.err"
"$KPREC" label "${LBL[@]}" --pairs "$T/p4.tsv" --out "$T/env.tsv" --base-url "$URL/good/v1" \
  --api-key-env KP_TEST_OTHER_KEY >/dev/null 2>&1
ok api-key-env-unset-no-auth python3 -c 'import json,sys; r=[json.loads(l) for l in open(sys.argv[1])][-1]; sys.exit(0 if not r["auth"] else 1)' "$T/log.jsonl"
ok key-not-in-output bash -c "! grep -qF -- '$SECRET' '$T/all-output' $T/*.failed $T/*.tsv"
ok key-check-can-fail grep -qF -- "$SECRET" <(echo "x $SECRET y")

# ---- resume after kill -9 ----
pairs 400 >"$T/p400.tsv"
"$KPREC" label "${LBL[@]}" --pairs "$T/p400.tsv" --base-url "$URL/slowall/v1" --out "$T/resume.tsv" \
  --concurrency 2 >/dev/null 2>&1 &
LP=$!
for _ in $(seq 200); do [ "$(rows "$T/resume.tsv" 2>/dev/null || echo 0)" -ge 30 ] && break; sleep 0.05; done
kill -9 "$LP"; wait "$LP" 2>/dev/null
before=$(rows "$T/resume.tsv")
ok resume-partial test "$before" -ge 30 -a "$before" -lt 400
cp "$T/resume.tsv" "$T/resume-before.tsv"
printf 'llm-torn\tq1' >>"$T/resume.tsv" # a torn last line
nlog=$(wc -l <"$T/log.jsonl")
run resume slowall --pairs "$T/p400.tsv" --concurrency 8
ok resume-rc test "$RC" -eq 0
ok resume-torn-warned grep -q "cutting a torn last line" "$T/resume.err"
ok resume-rows test "$(rows "$T/resume.tsv")" -eq 400
ok resume-judged check "$T/resume.tsv"
ok resume-prefix-kept cmp -s "$T/resume-before.tsv" <(head -n $((before + 1)) "$T/resume.tsv")
# no pair written before the kill was asked again
python3 - "$T/log.jsonl" "$nlog" "$T/resume-before.tsv" "$D/items.tsv" "$D/keyphrases.tsv" <<'EOF'
import json, sys
tab = lambda p: dict(l.rstrip("\n").split("\t")[:2] for l in list(open(p))[1:])
items, keys = tab(sys.argv[4]), tab(sys.argv[5])
done = {(items[r[2]], keys[r[1]]) for r in (l.rstrip("\n").split("\t") for l in list(open(sys.argv[3]))[1:])}
later = [json.loads(l) for l in list(open(sys.argv[1]))[int(sys.argv[2]):]]
again = [r for r in later if (r["title"], r["keyphrase"]) in done]
assert later and not again, (len(later), len(again))
EOF
ok resume-no-rejudge test $? -eq 0

# ---- --per-item: BM25 + random candidates ----
head -n 11 "$D/items.tsv" >"$T/items10.tsv"
"$KPREC" label --items "$T/items10.tsv" --keyphrases "$D/keyphrases.tsv" --per-item 3 --random 2 \
  --base-url "$URL/good/v1" --out "$T/gen.tsv" --quiet >"$T/gen.out" 2>"$T/gen.err"
ok gen-rc test $? -eq 0
ok gen-per-item test "$(awk -F'\t' 'NR > 1 { n[$3]++ } END { for (i in n) if (n[i] != 5) bad++; print length(n) ":" bad + 0 }' "$T/gen.tsv")" = "10:0"
ok gen-judged check "$T/gen.tsv"
"$KPREC" label --items "$T/items10.tsv" --keyphrases "$D/keyphrases.tsv" --per-item 3 --random 2 \
  --base-url "$URL/good/v1" --out "$T/gen.tsv" --quiet >"$T/gen2.out" 2>&1
ok gen-deterministic grep -q "50 pairs: 0 judged, 50 already in the output" "$T/gen2.out"

# ---- --embeddings ----
run emb embed --pairs "$T/p40.tsv" --embeddings
ok emb-rc test "$RC" -eq 0
ok emb-judged check "$T/emb.tsv"

echo "test_label: $passes passed, $fails failed" >&2
[ "$fails" -eq 0 ]
