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

# ---- grades of any scale (--grades MIN:MAX) ----
# the same judgments on a 1..4 and a 0..1 scale give the same metrics with --grades
awk -F'\t' 'BEGIN { OFS = "\t" } NR == 1 { print; next } { $4 = 1 + ($4 - 1) * 1.5; print }' "$D/judgments.tsv" >"$T/j14.tsv"
awk -F'\t' 'BEGIN { OFS = "\t" } NR == 1 { print; next } { $4 = ($4 - 1) / 2; print }' "$D/judgments.tsv" >"$T/j01.tsv"
D14=(--items "$D/items.tsv" --keyphrases "$D/keyphrases.tsv" --judgments "$T/j14.tsv")
D01=(--items "$D/items.tsv" --keyphrases "$D/keyphrases.tsv" --judgments "$T/j01.tsv")
metrics() { jq -c 'del(.seconds, .model) | with_entries(if (.value | type) == "number" then .value |= (. * 10000 | round) else . end)'; }
"$KPREC" eval --model bm25 "${DATA[@]}" --json --quiet | metrics >"$T/g13.json"
"$KPREC" eval --model bm25 "${D14[@]}" --grades 1:4 --json --quiet | metrics >"$T/g14.json"
"$KPREC" eval --model bm25 "${D01[@]}" --grades 0:1 --json --quiet | metrics >"$T/g01.json"
ok grades-14-same cmp -s "$T/g13.json" "$T/g14.json"
ok grades-01-same cmp -s "$T/g13.json" "$T/g01.json"
ok grades-nonempty jq -e '.pairs > 0 and .auc_pos > 0 and .auc_neg > 0' "$T/g14.json" >/dev/null
# thresholds are given on the file's scale: 0.75 / 0.5 on 0:1 are the defaults 2.5 / 2 of 1:3
"$KPREC" eval --model bm25 "${D01[@]}" --grades 0:1 --relevant 0.75 --irrelevant 0.5 --json --quiet | metrics >"$T/g01t.json"
ok grades-thresholds-mapped cmp -s "$T/g13.json" "$T/g01t.json"
"$KPREC" eval --model bm25 "${D01[@]}" --grades 0:1 --relevant 0.6 --json --quiet | metrics >"$T/g01u.json"
ok grades-threshold-moves bash -c "! cmp -s '$T/g13.json' '$T/g01u.json'"
check grades-out-of-range 1 "outside \[1, 3\]" -- "$KPREC" eval --model bm25 "${D14[@]}" --quiet
check grades-01-default 1 "outside \[1, 3\]" -- "$KPREC" eval --model bm25 "${D01[@]}" --quiet
check grades-bad 2 "bad value '3:1' for --grades" -- "$KPREC" eval --model bm25 "${DATA[@]}" --grades 3:1
check grades-bad2 2 "for --grades" -- "$KPREC" eval --model bm25 "${DATA[@]}" --grades 1
check grades-train 0 "wrote" -- "$KPREC" train --items "$D/items.tsv" --keyphrases "$D/keyphrases.tsv" --judgments "$T/j14.tsv" --grades 1:4 --epochs 1 --buckets 4096 --out "$T/g.kpm" --quiet
check grades-train-range 1 "outside \[1, 3\]" -- "$KPREC" train --items "$D/items.tsv" --keyphrases "$D/keyphrases.tsv" --judgments "$T/j14.tsv" --epochs 1 --out "$T/g2.kpm" --quiet
check grades-train-ce 0 "wrote" -- "$KPREC" train-ce --items "$D/items.tsv" --keyphrases "$D/keyphrases.tsv" --judgments "$T/j01.tsv" --grades 0:1 --epochs 1 --out "$T/gce.kpm" --quiet
check grades-train-ce-range 1 "outside \[1, 3\]" -- "$KPREC" train-ce --items "$D/items.tsv" --keyphrases "$D/keyphrases.tsv" --judgments "$T/j01.tsv" --epochs 1 --out "$T/gce2.kpm" --quiet
check grades-sim 0 "clicks" -- "$KPREC" simulate-clicks "${D14[@]}" --grades 1:4 --out "$T/c14.tsv" --sessions 5 --seed 9
ok grades-sim-same cmp -s "$T/c.tsv" "$T/c14.tsv"

# ---- eval: the never-shown slice (--clicks LOG / --never-shown-from LOG) ----
"$KPREC" split --items "$D/items.tsv" --judgments "$D/judgments.tsv" --out "$T/ns" --valid-frac 0.3 --seed 5 >/dev/null
"$KPREC" simulate-clicks "${DATA[@]}" --items-filter "$T/ns/train_items.tsv" --sessions 3 --out "$T/ns/clicks.tsv" >/dev/null
# the valid items only, as bench/quality.sh does: the log is about other (train) items
VA=(--items "$T/ns/valid_items.tsv" --keyphrases "$D/keyphrases.tsv" --judgments "$T/ns/valid_judgments.tsv")
want_ns=$(awk -F'\t' 'FNR == 1 { next } NR == FNR { shown[$2] = 1; next } !($2 in shown)' "$T/ns/clicks.tsv" "$T/ns/valid_judgments.tsv" | wc -l)
"$KPREC" eval --model bm25 "${VA[@]}" --clicks "$T/ns/clicks.tsv" --json --quiet >"$T/ns.json" 2>"$T/ns.err"
ok ns-rc test $? -eq 0
ok ns-pairs jq -e --argjson n "$want_ns" '.never_shown.pairs == $n and $n > 0 and $n < .pairs' "$T/ns.json" >/dev/null
ok ns-metrics jq -e '.never_shown | (.["recall@10"] <= .["recall@50"]) and (.["recall@50"] <= .["recall@100"])
   and (.spearman | type) == "number" and (.auc | type) == "number" and .recall_items > 0' "$T/ns.json" >/dev/null
"$KPREC" eval --model bm25 "${VA[@]}" --never-shown-from "$T/ns/clicks.tsv" --json --quiet >"$T/ns2.json"
ok ns-alias test "$(jq -c 'del(.seconds)' "$T/ns.json")" = "$(jq -c 'del(.seconds)' "$T/ns2.json")"
"$KPREC" eval --model bm25 "${VA[@]}" --json --quiet >"$T/ns0.json"
ok ns-absent jq -e 'has("never_shown") | not' "$T/ns0.json" >/dev/null
ok ns-all-same test "$(jq -c 'del(.seconds, .never_shown)' "$T/ns.json")" = "$(jq -c 'del(.seconds)' "$T/ns0.json")"
ok ns-no-skip-msg bash -c "! grep -q skipped '$T/ns.err'"
check ns-table 0 "never-shown slice" -- "$KPREC" eval --model bm25 "${VA[@]}" --clicks "$T/ns/clicks.tsv" --quiet
check ns-two-logs 2 "two different logs" -- "$KPREC" eval --model bm25 "${VA[@]}" --clicks "$T/ns/clicks.tsv" --never-shown-from "$T/c.tsv"
check ns-no-log 1 "nolog.tsv" -- "$KPREC" eval --model bm25 "${VA[@]}" --clicks "$T/nolog.tsv" --quiet

# ---- simulate-clicks: the lexical old engine (--lexical-top N) ----
check sim-lexical 0 "lexical engine \(BM25 top 3\): [0-9]+ of $n_pairs judged pair" -- "$KPREC" simulate-clicks "${DATA[@]}" --out "$T/cl.tsv" --sessions 5 --seed 9 --lexical-top 3
pairs_of() { awk -F'\t' 'NR > 1 { print $1 "\t" $2 }' "$1" | sort -u; }
ok sim-lexical-subset test "$(comm -23 <(pairs_of "$T/cl.tsv") <(pairs_of "$T/c.tsv") | wc -l)" -eq 0
ok sim-lexical-fewer test "$(pairs_of "$T/cl.tsv" | wc -l)" -lt "$(pairs_of "$T/c.tsv" | wc -l)"
ok sim-lexical-nonempty test "$(pairs_of "$T/cl.tsv" | wc -l)" -gt 0
check sim-lexical-bad 2 "--lexical-top" -- "$KPREC" simulate-clicks "${DATA[@]}" --out "$T/cl2.tsv" --lexical-top 0

finish
