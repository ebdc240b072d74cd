#!/usr/bin/env bash
# Turns the ESCI sample (data/esci-sample) into kprec's TSV files in OUT:
#   items.tsv       item_id<TAB>title                 (every product)
#   keyphrases.tsv  keyphrase_id<TAB>keyphrase        (every distinct query, ids q1, q2, ...)
#   judgments.tsv   pair_id<TAB>keyphrase_id<TAB>item_id<TAB>relevance (gain 0..3 -> 1..3)
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
src=${ESCI_DIR:-$HERE/../data/esci-sample}
out=${1:?usage: esci-prepare.sh OUT}
mkdir -p "$out"
awk -F'\t' 'NR > 1 && $1 != "" && $3 != "" { t = $3; gsub(/\\t|\\n/, " ", t); print $1 "\t" t }' \
    "$src/products.tsv" | sort -u -t$'\t' -k1,1 | { printf 'item_id\ttitle\n'; cat; } >"$out/items.tsv"
awk -F'\t' -v OFS='\t' '
  NR == 1 { print "keyphrase_id", "keyphrase" > kp; print "pair_id", "keyphrase_id", "item_id", "relevance" > jd; next }
  $1 == "" { next }
  { if (!($1 in id)) { id[$1] = "q" (++n); print id[$1], $1 > kp }
    printf "p%d\t%s\t%s\t%.4f\n", NR - 1, id[$1], $3, 1 + 2 * $6 / 3 > jd }
' kp="$out/keyphrases.tsv" jd="$out/judgments.tsv" "$src/query_product_title_label.tsv"
echo "esci-prepare: $(($(wc -l <"$out/items.tsv") - 1)) items, $(($(wc -l <"$out/keyphrases.tsv") - 1)) keyphrases, $(($(wc -l <"$out/judgments.tsv") - 1)) judgments in $out" >&2
