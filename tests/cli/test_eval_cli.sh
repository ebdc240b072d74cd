#!/usr/bin/env bash
# kprec eval / simulate-clicks / split on the ESCI sample (ops/esci-prepare.sh), no service needed.
set -uo pipefail
KPREC=${1:?usage: test_eval_cli.sh KPREC}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
bash "$HERE/../../ops/esci-prepare.sh" "$T/d" 2>/dev/null || { echo "esci-prepare failed" >&2; exit 1; }
D=$T/d
DATA=(--items "$D/items.tsv" --keyphrases "$D/keyphrases.tsv" --judgments "$D/judgments.tsv")
n_pairs=$(($(wc -l <"$D/judgments.tsv") - 1))
n_items=$(awk -F'\t' 'NR > 1 { s[$3] = 1 } END { print length(s) }' "$D/judgments.tsv")

# ---- eval: usage errors ----
check eval-help 0 "recall@k" -- "$KPREC" eval --help
check eval-missing 2 "--model, --items, --keyphrases and --judgments are required" -- "$KPREC" eval --model bm25
check eval-bad-k 2 "--k wants" -- "$KPREC" eval --model bm25 "${DATA[@]}" --k 10,x
check eval-bad-threads 2 "--threads" -- "$KPREC" eval --model bm25 "${DATA[@]}" --threads 0
check eval-thresholds 2 "above the relevant threshold" -- "$KPREC" eval --model bm25 "${DATA[@]}" --relevant 2 --irrelevant 3
check eval-bm25-prefix 2 "does not apply to bm25" -- "$KPREC" eval --model bm25 "${DATA[@]}" --prefix 8
check eval-big-prefix 2 "larger than the model's embedding size" -- "$KPREC" eval --model random:1 "${DATA[@]}" --prefix 999
check eval-no-model 1 "nope.ckpt" -- "$KPREC" eval --model "$T/nope.ckpt" "${DATA[@]}"
echo "not a checkpoint" >"$T/bad.ckpt"
check eval-bad-model 1 "bad.ckpt" -- "$KPREC" eval --model "$T/bad.ckpt" "${DATA[@]}"
check eval-no-items 1 "none.tsv" -- "$KPREC" eval --model bm25 --items "$T/none.tsv" --keyphrases "$D/keyphrases.tsv" --judgments "$D/judgments.tsv"

# ---- eval: results ----
"$KPREC" eval --model bm25 "${DATA[@]}" --json --quiet >"$T/bm25.json" 2>"$T/bm25.err"
ok eval-bm25-rc test $? -eq 0
ok eval-bm25-json jq -e --argjson n "$n_pairs" --argjson i "$n_items" \
  '.pairs == $n and .items == $i and (.["recall@10"] <= .["recall@50"]) and
   (.["recall@50"] <= .["recall@100"]) and .["recall@100"] > 0 and .["recall@100"] <= 1 and
   .auc > 0.5 and .auc <= 1 and (.spearman | type) == "number" and (.pearson | type) == "number"' \
  "$T/bm25.json" >/dev/null
ok eval-one-line test "$(wc -l <"$T/bm25.json")" -eq 1
# the same run with one thread gives the same numbers
"$KPREC" eval --model bm25 "${DATA[@]}" --json --quiet --threads 1 >"$T/bm25-1.json" 2>/dev/null
ok eval-threads-same test "$(jq -c 'del(.seconds)' "$T/bm25.json")" = "$(jq -c 'del(.seconds)' "$T/bm25-1.json")"
check eval-k 0 '"recall@5":' -- "$KPREC" eval --model bm25 "${DATA[@]}" --json --quiet --k 5
check eval-table 0 "^auc +0\.[0-9]{4}" -- "$KPREC" eval --model random:3 "${DATA[@]}" --quiet
check eval-prefix 0 '"prefix":32' -- "$KPREC" eval --model random:3 "${DATA[@]}" --json --quiet --prefix 32
# unknown ids are counted on stderr, not fatal
cp "$D/judgments.tsv" "$T/j2.tsv"
printf 'px\tq1\tNO_SUCH_ITEM\t3\npy\tNO_SUCH_KEY\t%s\t1\n' "$(awk -F'\t' 'NR == 2 { print $3 }' "$D/judgments.tsv")" >>"$T/j2.tsv"
check eval-unknown 0 "2 judgment\(s\) skipped" -- "$KPREC" eval --model bm25 --items "$D/items.tsv" --keyphrases "$D/keyphrases.tsv" --judgments "$T/j2.tsv" --quiet

# ---- split ----
check split-help 0 "valid-frac" -- "$KPREC" split --help
check split-bad-frac 2 "--valid-frac" -- "$KPREC" split --items "$D/items.tsv" --judgments "$D/judgments.tsv" --out "$T/s" --valid-frac 1.5
check split-run 0 "^items " -- "$KPREC" split --items "$D/items.tsv" --judgments "$D/judgments.tsv" --out "$T/s" --valid-frac 0.3 --seed 5
"$KPREC" split --items "$D/items.tsv" --judgments "$D/judgments.tsv" --out "$T/s2" --valid-frac 0.3 --seed 5 >/dev/null
ok split-deterministic cmp -s "$T/s/valid_judgments.tsv" "$T/s2/valid_judgments.tsv"
n_rows() { echo $(($(wc -l <"$1") - 1)); }
ok split-items-total test $(($(n_rows "$T/s/train_items.tsv") + $(n_rows "$T/s/valid_items.tsv"))) -eq "$(n_rows "$D/items.tsv")"
ok split-judg-total test $(($(n_rows "$T/s/train_judgments.tsv") + $(n_rows "$T/s/valid_judgments.tsv"))) -eq "$n_pairs"
# judgments follow their item: no item of valid_judgments is a train item
ok split-follow test "$(awk -F'\t' 'FNR == 1 { next } NR == FNR { tr[$1] = 1; next } ($3 in tr)' \
  "$T/s/train_items.tsv" "$T/s/valid_judgments.tsv" | wc -l)" -eq 0
frac=$(awk -v a="$(n_rows "$T/s/valid_items.tsv")" -v n="$(n_rows "$D/items.tsv")" 'BEGIN { print (a / n > 0.25 && a / n < 0.35) }')
ok split-fraction test "$frac" -eq 1
check split-other-seed 0 "" -- "$KPREC" split --items "$D/items.tsv" --judgments "$D/judgments.tsv" --out "$T/s3" --valid-frac 0.3 --seed 6
ok split-seed-differs bash -c "! cmp -s '$T/s/valid_items.tsv' '$T/s3/valid_items.tsv'"

# ---- simulate-clicks ----
check sim-help 0 "items-filter" -- "$KPREC" simulate-clicks --help
check sim-missing 2 "are required" -- "$KPREC" simulate-clicks "${DATA[@]}"
check sim-bad-eta 2 "bad value 'x' for --eta" -- "$KPREC" simulate-clicks "${DATA[@]}" --out "$T/c.tsv" --eta x
check sim-run 0 "ctr by position: +1: 0\.[0-9]+" -- "$KPREC" simulate-clicks "${DATA[@]}" --out "$T/c.tsv" --sessions 5 --seed 9
ok sim-header test "$(head -1 "$T/c.tsv")" = "$(printf 'item_id\tkeyphrase_id\tkind\tposition\tts')"
"$KPREC" simulate-clicks "${DATA[@]}" --out "$T/c2.tsv" --sessions 5 --seed 9 >/dev/null
ok sim-deterministic cmp -s "$T/c.tsv" "$T/c2.tsv"
check sim-filter 0 "clicks" -- "$KPREC" simulate-clicks "${DATA[@]}" --out "$T/cf.tsv" --sessions 5 --items-filter "$T/s/train_items.tsv"
ok sim-filter-only-train test "$(awk -F'\t' 'FNR == 1 { next } NR == FNR { tr[$1] = 1; next } !($1 in tr)' \
  "$T/s/train_items.tsv" "$T/cf.tsv" | wc -l)" -eq 0
ok sim-filter-nonempty test "$(wc -l <"$T/cf.tsv")" -gt 1
check sim-no-filter 1 "missing.tsv: cannot open" -- "$KPREC" simulate-clicks "${DATA[@]}" --out "$T/cx.tsv" --items-filter "$T/missing.tsv"

finish
