#!/usr/bin/env bash
# kprec eval --report DIR on the ESCI sample after a tiny train: the page and every PNG exist, are
# valid PNGs of a sane size, the HTML references every plot and carries the numbers kprec eval
# prints; runs merge by label; text is escaped; without gnuplot a clear error, data still written.
set -uo pipefail
KPREC=${1:?usage: test_report.sh KPREC}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
. "$HERE/lib.sh"
command -v gnuplot >/dev/null || { echo "gnuplot missing (ops/install-deps.sh installs gnuplot-nox)" >&2; exit 1; }
bash "$HERE/../../ops/esci-prepare.sh" "$T/d" 2>/dev/null || { echo "esci-prepare failed" >&2; exit 1; }
D=$T/d
KP=(--keyphrases "$D/keyphrases.tsv")
"$KPREC" split --items "$D/items.tsv" --judgments "$D/judgments.tsv" --out "$T/s" >/dev/null 2>&1
"$KPREC" split --items "$T/s/train_items.tsv" --judgments "$T/s/train_judgments.tsv" --out "$T/h" \
  --valid-frac 0.3 --seed 5 >/dev/null 2>&1
"$KPREC" simulate-clicks --items "$D/items.tsv" "${KP[@]}" --judgments "$T/h/train_judgments.tsv" \
  --items-filter "$T/h/train_items.tsv" --out "$T/clicks.tsv" --sessions 3 --seed 1 >/dev/null 2>&1
"$KPREC" train --items "$T/h/train_items.tsv" "${KP[@]}" --judgments "$T/h/train_judgments.tsv" \
  --clicks "$T/clicks.tsv" --out "$T/be.kpm" --epochs 1 --quiet >/dev/null 2>&1
ok be-trained test -s "$T/be.kpm"
"$KPREC" calibrate --model "$T/be.kpm" --items "$T/h/valid_items.tsv" "${KP[@]}" \
  --judgments "$T/h/valid_judgments.tsv" --out "$T/cal.kpm" --method isotonic >/dev/null 2>&1
ok cal-fitted test -s "$T/cal.kpm"
VALID=(--items "$D/items.tsv" "${KP[@]}" --judgments "$T/s/valid_judgments.tsv")
R=$T/report

# ---- usage ----
check label-alone 2 "--label" -- "$KPREC" eval --model bm25 "${VALID[@]}" --label x
check help 0 "--report DIR" -- "$KPREC" eval --help

# ---- three runs into one report: bi-encoder (+ never-shown slice), bm25, the calibrated pipeline ----
"$KPREC" eval --model "$T/be.kpm" "${VALID[@]}" --clicks "$T/clicks.tsv" --report "$R" --quiet \
  >"$T/be.txt" 2>"$T/be.err"
ok be-rc test $? -eq 0
"$KPREC" eval --model "$T/be.kpm" "${VALID[@]}" --clicks "$T/clicks.tsv" --json --quiet >"$T/be.json" 2>/dev/null
"$KPREC" eval --model bm25 "${VALID[@]}" --report "$R" --quiet >"$T/bm25.txt" 2>"$T/bm25.err"
ok bm25-rc test $? -eq 0
"$KPREC" eval --model "$T/be.kpm" --calibration "$T/cal.kpm" "${VALID[@]}" --report "$R" --quiet \
  >"$T/pl.txt" 2>"$T/pl.err"
ok pipeline-rc test $? -eq 0
H=$R/index.html
ok page test -s "$H"
# --report changes nothing in what is printed (it evaluates more cutoffs for its curve)
ok same-table test "$(grep -v '^time' "$T/be.txt")" = \
  "$("$KPREC" eval --model "$T/be.kpm" "${VALID[@]}" --clicks "$T/clicks.tsv" --quiet 2>/dev/null | grep -v '^time')"

# every plot: referenced, there, a PNG of a sane size
png_ok() { # png_ok FILE: PNG signature, 300..4000 px each way, more than 5 kB
  [ -s "$1" ] || return 1
  [ "$(od -An -tx1 -N8 "$1" | tr -d ' \n')" = "89504e470d0a1a0a" ] || return 1
  local d; read -r -a d <<<"$(od -An -tu1 -j16 -N8 "$1")"
  local w=$(( (d[0] << 24) | (d[1] << 16) | (d[2] << 8) | d[3] )) h=$(( (d[4] << 24) | (d[5] << 16) | (d[6] << 8) | d[7] ))
  [ "$w" -ge 300 ] && [ "$w" -le 4000 ] && [ "$h" -ge 300 ] && [ "$h" -le 4000 ] && [ "$(stat -c %s "$1")" -gt 5000 ]
}
for p in recall matryoshka calibration never_shown scores_1 scores_2 scores_3; do
  ok "ref-$p" grep -qF "<img src=\"$p.png\"" "$H"
  ok "png-$p" png_ok "$R/$p.png"
  ok "data-$p" test -s "$R/$p.tsv"
done
refs=$(grep -o '<img src="[^"]*"' "$H" | wc -l)
ok all-referenced test "$refs" -eq 7
ok no-stray-png test "$(find "$R" -name '*.png' | wc -l)" -eq 7
for f in $(grep -o '<img src="[^"]*"' "$H" | sed 's/<img src="//; s/"$//'); do
  ok "ref-exists-$f" png_ok "$R/$f"
done
ok no-missing-note bash -c "! grep -q 'No run in this report has it' '$H'"

# the numbers kprec eval printed are on the page, in the model's column
cell() { # cell ROWNAME COLUMN: the HTML table's cell (1 = the first model)
  grep -F "<tr><td>$1</td>" "$H" | head -1 | sed 's/<\/td>/\n/g' | sed -n "$(($2 + 1))p" | sed 's/.*<td>//'
}
cell_ns() { # cell_ns ROWNAME COLUMN: the never-shown row's cell
  grep -F "<tr><td>$1 <span class=\"ns\">never shown</span></td>" "$H" | sed 's/<\/td>/\n/g' | sed -n "$(($2 + 1))p" | sed 's/.*<td>//'
}
n_checked=0
check_table() { # check_table FILE COLUMN: every metric line of a kprec eval table
  local section=all name v rest
  while read -r name v rest; do
    case "$name" in never-shown) section=ns; continue ;; model|time|pipeline|items/s) continue ;; esac
    [ "$name" = "in" ] && { name="in list"; v=${rest%% *}; }
    [ "$name" = "mean" ] && { name="mean list"; v=$(printf '%.4f' "${rest%% *}"); }
    [ "$name" = "items" ] && [ "$v" = "w/o" ] && { name="items w/o any"; v=${rest##* }; }
    [ "$name" = "log-loss" ] && { bri=$(sed -n 's/.*(brier \([0-9.]*\)).*/\1/p' <<<"$rest"); }
    [ "$v" = "-" ] && continue
    local got; if [ $section = ns ]; then got=$(cell_ns "$name" "$2"); else got=$(cell "$name" "$2"); fi
    n_checked=$((n_checked + 1))
    ok "html-$2-$section-$name" test "$got" = "$v"
  done <"$1"
}
check_table "$T/be.txt" 1
check_table "$T/bm25.txt" 2
check_table "$T/pl.txt" 3
ok html-brier test "$(cell brier 3)" = "$bri"
ok numbers-checked test "$n_checked" -ge 30
# recall@10 of the JSON output too, and of the curve's data file
r10=$(jq -r '.["recall@10"]' "$T/be.json" | xargs printf '%.4f')
ok html-json-recall test "$(cell recall@10 1)" = "$r10"
ok curve-k10 awk -F'\t' -v r="$(jq -r '.["recall@10"]' "$T/be.json")" \
  'NR == 2, /^$/ { if ($1 == 10 && ($2 - r < 1e-6 && r - $2 < 1e-6)) f = 1 } END { exit !f }' "$R/recall.tsv"

# ---- merging: a rerun replaces its own rows; --label names a new column, escaped ----
"$KPREC" eval --model bm25 "${VALID[@]}" --report "$R" --quiet >/dev/null 2>&1
ok rerun-same-models test "$(grep -c '^<li>' "$H")" -eq 3
ok rerun-bm25-last bash -c "grep '^<li>' '$H' | tail -1 | grep -q '^<li>bm25 '"
"$KPREC" eval --model bm25 "${VALID[@]}" --report "$R" --label 'a<b>&"c' --k 5 --quiet >/dev/null 2>&1
ok label-added test "$(grep -c '^<li>' "$H")" -eq 4
ok label-escaped grep -qF '<li>a&lt;b&gt;&amp;&quot;c ' "$H"
ok label-not-raw bash -c "! grep -qF 'a<b>' '$H'"
ok label-recall5 grep -qF '<tr><td>recall@5</td>' "$H"

# ---- a bad report directory, a malformed report.tsv ----
check bad-dir 1 "cannot create" -- "$KPREC" eval --model bm25 "${VALID[@]}" --report "$T/no/such/dir" --quiet
mkdir "$T/bad"; printf 'just one field\n' >"$T/bad/report.tsv"
check bad-tsv 1 "not a report row" -- "$KPREC" eval --model bm25 "${VALID[@]}" --report "$T/bad" --quiet

# ---- no gnuplot: a clear error, the data files and scripts still written ----
check no-gnuplot 1 "gnuplot is not installed" -- env PATH=/nonexistent "$KPREC" eval --model bm25 "${VALID[@]}" --report "$T/ng" --quiet
ok no-gnuplot-data test -s "$T/ng/report.tsv" -a -s "$T/ng/recall.tsv" -a -s "$T/ng/recall.gp"
ok no-gnuplot-no-png test "$(find "$T/ng" -name '*.png' | wc -l)" -eq 0
finish
