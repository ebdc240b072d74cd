#!/usr/bin/env bash
# kprec label --embeddings against a REAL local embedding model: ops/embed.sh serves
# all-MiniLM-L6-v2 (quantized ONNX, from Maven Central) on /v1/embeddings. On the ESCI sample's
# judged pairs: every pair graded in [1, 3]; the grades agree with the human ones (Spearman well
# above 0, exact pairs above irrelevant ones); a keyphrase equal to its item's title grades ~3;
# the server answers a malformed request with 400, and kprec fails such pairs with a reason.
set -uo pipefail
KPREC=${1:?usage: embed_teacher.sh KPREC}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$HERE/../..
T=$(mktemp -d)
cleanup() {
  "$ROOT/ops/embed.sh" stop "$T/srv" 2>/dev/null
  rm -rf "$T"
}
trap cleanup EXIT
unset http_proxy https_proxy HTTP_PROXY HTTPS_PROXY all_proxy ALL_PROXY
fails=0 passes=0
ok() { # ok NAME CONDITION-CMD...
  local name=$1; shift
  if "$@"; then passes=$((passes + 1)); else echo "FAIL $name" >&2; fails=$((fails + 1)); fi
}
bash "$ROOT/ops/esci-prepare.sh" "$T/d" 2>/dev/null || { echo "esci-prepare failed" >&2; exit 1; }
D=$T/d
PORT=$("$ROOT/ops/embed.sh" start "$T/srv") || { echo "embed server did not start" >&2; exit 1; }
URL=http://127.0.0.1:$PORT/v1

# the server itself: 400 on a malformed body, 405 on GET, 384-d vectors
code=$(curl -s -o "$T/bad.json" -w '%{http_code}' "$URL/embeddings" -d '{"input": 7}')
ok server-400 test "$code" = 400
ok server-400-message grep -q '"message"' "$T/bad.json"
code=$(curl -s -o /dev/null -w '%{http_code}' "$URL/embeddings")
ok server-405 test "$code" = 405
curl -s "$URL/embeddings" -d '{"input": ["cordless drill"]}' >"$T/one.json"
ok server-dim test "$(python3 -c 'import json,sys; print(len(json.load(open(sys.argv[1]))["data"][0]["embedding"]))' "$T/one.json")" = 384

# 300 judged pairs graded by the model
awk -F'\t' 'NR == 1 { print "item_id\tkeyphrase_id" } NR > 1 && NR <= 301 { print $3 "\t" $2 }' \
  "$D/judgments.tsv" >"$T/pairs.tsv"
"$KPREC" label --items "$D/items.tsv" --keyphrases "$D/keyphrases.tsv" --pairs "$T/pairs.tsv" \
  --embeddings --base-url "$URL" --model all-minilm-l6-v2-q --out "$T/out.tsv" --quiet \
  --concurrency 2 >"$T/label.out" 2>&1
ok label-rc test $? -eq 0
ok label-all test "$(($(wc -l <"$T/out.tsv") - 1))" = 300
# human<TAB>model grade of each graded pair
awk -F'\t' 'FNR == 1 { next } NR == FNR { h[$3 "\t" $2] = $4; next } { print h[$3 "\t" $2] "\t" $4 }' \
  "$D/judgments.tsv" "$T/out.tsv" >"$T/joined"
read -r _ SP _ < <(python3 "$ROOT/bench/corr.py" <"$T/joined")
read -r HI LO INRANGE < <(awk -F'\t' '$1 >= 2.99 { h += $2; nh++ } $1 <= 1.01 { l += $2; nl++ }
  $2 < 1 || $2 > 3 { bad = 1 } END { printf "%.4f %.4f %d\n", h / nh, l / nl, !bad }' "$T/joined")
echo "minilm on 300 ESCI judged pairs: spearman $SP, mean grade exact $HI, irrelevant $LO" >&2
ok grades-in-range test "$INRANGE" = 1
ok spearman-positive python3 -c "import sys; sys.exit(0 if $SP > 0.15 else 1)"
ok exact-above-irrelevant python3 -c "import sys; sys.exit(0 if $HI > $LO else 1)"

# a keyphrase that is its item's own title: cosine ~1, grade ~3
title=$(awk -F'\t' 'NR == 2 { print $2 }' "$D/items.tsv")
iid=$(awk -F'\t' 'NR == 2 { print $1 }' "$D/items.tsv")
printf 'keyphrase_id\tkeyphrase\nself\t%s\n' "$title" >"$T/self_k.tsv"
printf 'item_id\tkeyphrase_id\n%s\tself\n' "$iid" >"$T/self_p.tsv"
"$KPREC" label --items "$D/items.tsv" --keyphrases "$T/self_k.tsv" --pairs "$T/self_p.tsv" \
  --embeddings --base-url "$URL" --model m --out "$T/self.tsv" --quiet >/dev/null 2>&1
ok self-rc test $? -eq 0
ok self-grade awk -F'\t' 'NR == 2 { exit !($4 > 2.95) }' "$T/self.tsv"

# a text the server refuses (over its 8192-character limit): a failed pair with the reason
long=$(head -c 9000 /dev/zero | tr '\0' 'a')
printf 'keyphrase_id\tkeyphrase\nlong\t%s\n' "$long" >"$T/long_k.tsv"
printf 'item_id\tkeyphrase_id\n%s\tlong\n' "$iid" >"$T/long_p.tsv"
"$KPREC" label --items "$D/items.tsv" --keyphrases "$T/long_k.tsv" --pairs "$T/long_p.tsv" \
  --embeddings --base-url "$URL" --model m --out "$T/long.tsv" --failed "$T/long.failed" \
  --retries 1 --backoff-ms 10 --quiet >/dev/null 2>"$T/long.err"
ok long-rc test $? -eq 1
ok long-failed grep -q "long" "$T/long.failed"

echo "embed_teacher: $passes passed, $fails failed" >&2
[ "$fails" -eq 0 ]
