#!/usr/bin/env bash
# bench/teacher.sh -- the soft-teacher experiment of issue 8: a real local embedding model
# (all-MiniLM-L6-v2, quantized ONNX, served by ops/embed.sh on /v1/embeddings) as a teacher.
#
#   bench/teacher.sh --data DIR --models OUT [--kprec BIN] [--per-item N] [--cand-pairs N]
#                    [--fit-pairs N] [--threads T]
#
# OUT is a finished bench/quality.sh run (its split, labels, clicks.tsv, ce.kpm, be_full.kpm,
# results.json), e.g. the sparse regime's. Steps, all written under OUT/teacher:
#  1. `kprec label --embeddings` grades every judged VALID pair with cosine(title, keyphrase);
#     its Spearman / Pearson against the human grades, beside BM25's and the CE's of results.json.
#  2. Extra teacher labels on never-shown pairs: for each item of the CE's label half (the items
#     whose judgments teach the CE), its --per-item BM25 keyphrases are graded by the model (the
#     first --cand-pairs such pairs, default 15000: ~35 pairs/s on 2 shared cores); the pairs whose keyphrase never appears in OUT/clicks.tsv and that no human judged are kept.
#     The raw cosine is mapped onto the human 1..3 scale by an isotonic fit (pool-adjacent-
#     violators) on --fit-pairs judged pairs of the same label half, graded by the model too.
#  3. A CE trained on the human labels + those extra labels (same defaults as quality.sh's), and
#     the full bi-encoder distilled from it (same flags as quality.sh's full row); both evaluated
#     on the valid split with --clicks OUT/clicks.tsv, all pairs and the never-shown slice, beside
#     the run's own CE and be_full.
# Prints a table and writes OUT/teacher/results.json.
set -euo pipefail
data="" out="" per_item=5 cand_pairs=15000 fit_pairs=3000 threads=2 kprec="${KPREC:-./build/kprec}"
while [ $# -gt 0 ]; do
    case "$1" in
    --data) data="$2"; shift 2 ;;
    --models) out="$2"; shift 2 ;;
    --kprec) kprec="$2"; shift 2 ;;
    --per-item) per_item="$2"; shift 2 ;;
    --fit-pairs) fit_pairs="$2"; shift 2 ;;
    --cand-pairs) cand_pairs="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    -h | --help) awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "teacher.sh: unknown argument '$1' (--help)" >&2; exit 2 ;;
    esac
done
[ -n "$data" ] && [ -n "$out" ] || { echo "teacher.sh: --data and --models are required" >&2; exit 2; }
for f in split/valid_items.tsv split/valid_judgments.tsv labels/train_items.tsv \
         labels/train_judgments.tsv labels/valid_judgments.tsv clicks.tsv ce.kpm results.json; do
    [ -r "$out/$f" ] || { echo "teacher.sh: $out/$f is missing (run bench/quality.sh first)" >&2; exit 1; }
done
command -v jq >/dev/null || { echo "teacher.sh: jq is required" >&2; exit 1; }
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
K="$data/keyphrases.tsv"
T="$out/teacher"
mkdir -p "$T"
say() { echo "== $(date +%T) $*" >&2; }
port=$("$ROOT/ops/embed.sh" start "$T/server")
trap '"$ROOT/ops/embed.sh" stop "$T/server"' EXIT
label() { # items out [extra args]
    local items="$1" o="$2"; shift 2
    "$kprec" label --items "$items" --keyphrases "$K" --embeddings --model all-minilm-l6-v2-q \
        --base-url "http://127.0.0.1:$port/v1" --concurrency 3 --out "$o" --quiet "$@" >&2
}
to_pairs() { awk -F'\t' 'BEGIN { OFS = "\t" } NR == 1 { print "item_id", "keyphrase_id"; next }
                         { print $3, $2 }' "$1"; }
# join a model's grades with human grades on (item, keyphrase): human<TAB>model lines
join_grades() {
    awk -F'\t' 'FNR == 1 { next } NR == FNR { h[$3 "\t" $2] = $4; next }
                ($3 "\t" $2) in h { print h[$3 "\t" $2] "\t" $4 }' "$1" "$2"
}
corr() { /usr/bin/python3 "$ROOT/bench/corr.py"; } # human<TAB>model on stdin -> "n spearman pearson"

# 1. the embedding model on the judged valid pairs
say "grading the judged valid pairs"
to_pairs "$out/split/valid_judgments.tsv" >"$T/valid_pairs.tsv"
label "$out/split/valid_items.tsv" "$T/valid_minilm.tsv" --pairs "$T/valid_pairs.tsv"
read -r n_valid sp_valid pe_valid < <(join_grades "$out/split/valid_judgments.tsv" "$T/valid_minilm.tsv" | corr)
echo "minilm on the valid judged pairs: $n_valid pairs, spearman $sp_valid, pearson $pe_valid" >&2

# 2. extra labels on never-shown candidates of the CE's label items, mapped by an isotonic fit
say "grading $fit_pairs judged pairs of the label half for the isotonic fit"
to_pairs "$out/labels/train_judgments.tsv" | awk -v n="$fit_pairs" 'NR <= n + 1' >"$T/fit_pairs.tsv"
label "$out/labels/train_items.tsv" "$T/fit_minilm.tsv" --pairs "$T/fit_pairs.tsv"
join_grades "$out/labels/train_judgments.tsv" "$T/fit_minilm.tsv" >"$T/fit.tsv"
say "grading the BM25 top $per_item of the label-half items (first $cand_pairs pairs)"
label "$out/labels/train_items.tsv" "$T/cand_minilm.tsv" --per-item "$per_item" --limit "$cand_pairs"
# keep never-shown, never-judged pairs; map each cosine-grade by the isotonic fit of fit.tsv
awk -F'\t' 'NR > 1 { print $2 }' "$out/clicks.tsv" | sort -u >"$T/shown_keys.txt"
/usr/bin/python3 - "$T/fit.tsv" "$T/shown_keys.txt" "$out/labels/train_judgments.tsv" \
    "$T/cand_minilm.tsv" "$T/extra_judgments.tsv" <<'PY'
import sys, bisect
fit, shown, judged, cand, dst = sys.argv[1:]
pts = sorted((float(m), float(h)) for h, m in (l.rstrip("\n").split("\t") for l in open(fit)))
blocks = []  # pool-adjacent-violators: [sum_h, n, max_x]
for x, h in pts:
    blocks.append([h, 1, x])
    while len(blocks) > 1 and blocks[-2][0] / blocks[-2][1] >= blocks[-1][0] / blocks[-1][1]:
        s, n, x2 = blocks.pop(); blocks[-1][0] += s; blocks[-1][1] += n; blocks[-1][2] = x2
xs = [b[2] for b in blocks]; ys = [b[0] / b[1] for b in blocks]
def iso(x):
    return ys[min(bisect.bisect_left(xs, x), len(ys) - 1)]
shown = set(l.strip() for l in open(shown))
done = set()
for l in list(open(judged))[1:]:
    f = l.rstrip("\n").split("\t"); done.add((f[2], f[1]))
n_in = n_out = 0
with open(dst, "w") as o:
    for l in list(open(cand))[1:]:
        pid, kid, iid, rel = l.rstrip("\n").split("\t"); n_in += 1
        if kid in shown or (iid, kid) in done: continue
        o.write("%s\t%s\t%s\t%.4f\n" % (pid, kid, iid, iso(float(rel)))); n_out += 1
print("isotonic fit: %d pairs, %d blocks; candidates %d, kept never-shown unjudged %d"
      % (len(pts), len(blocks), n_in, n_out), file=sys.stderr)
PY
{ cat "$out/labels/train_judgments.tsv"; cat "$T/extra_judgments.tsv"; } >"$T/ce_judgments.tsv"

# 3. CE on human + extra labels, the full bi-encoder distilled from it, both evaluated
say "train-ce on human + extra labels"
"$kprec" train-ce --items "$out/split/train_items.tsv" --keyphrases "$K" \
    --judgments "$T/ce_judgments.tsv" --out "$T/ce_minilm.kpm" --threads "$threads" --quiet >&2
tr_items="$out/split/train_items.tsv"
say "train be_full with the new CE as teacher"
"$kprec" train --items "$tr_items" --keyphrases "$K" --out "$T/be_full_minilm.kpm" \
    --clicks "$out/clicks.tsv" --judgments "$out/labels/valid_judgments.tsv" \
    --teacher "$T/ce_minilm.kpm" --distill pearson --w-distill 0.5 --w-known 8 \
    --threads "$threads" --quiet >&2
rows="$T/rows.jsonl"
: >"$rows"
for m in ce_minilm be_full_minilm; do
    say "eval $m"
    "$kprec" eval --model "$T/$m.kpm" --items "$out/split/valid_items.tsv" --keyphrases "$K" \
        --judgments "$out/split/valid_judgments.tsv" --clicks "$out/clicks.tsv" \
        --threads "$threads" --json --quiet | jq -c --arg row "$m" '{row: $row} + .' >>"$rows"
done
jq -s --argjson n "$n_valid" --argjson sp "$sp_valid" --argjson pe "$pe_valid" \
    --argjson base "$(cat "$out/results.json")" \
    '{minilm_valid: {pairs: $n, spearman: $sp, pearson: $pe},
      rows: ([$base[] | select(.row == "bm25" or .row == "ce" or .row == "be_ctr" or .row == "be_full")] + .)}' \
    "$rows" >"$T/results.json"
rm -f "$rows"
echo "minilm cosine on the judged valid pairs: spearman $sp_valid pearson $pe_valid ($n_valid pairs)" >&2
jq -r '["row","recall@10","recall@50","spearman","auc","ns_r@10","ns_r@50","ns_spearman"],
       (.rows[] | [.row, .["recall@10"], .["recall@50"], .spearman, .auc,
               .never_shown["recall@10"], .never_shown["recall@50"], .never_shown.spearman]
            | map(if type == "number" then (. * 1000 | round / 1000 | tostring)
                  elif . == null then "-" else . end))
       | @tsv' "$T/results.json" | column -t >&2
