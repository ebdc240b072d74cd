#!/usr/bin/env bash
# bench/quality.sh -- model-quality experiment of issue 3 (bi-encoder multi-task training).
#
#   bench/quality.sh --data DIR --out OUT [--clicks dense|sparse|lexical] [--tune]
#                    [--eval-items F --eval-judgments F] [--rows LIST] [--full-args "ARGS"]
#                    [--kprec BIN] [--threads T] [--epochs N] [--ce CE.kpm]
#
# DIR holds items.tsv, keyphrases.tsv, judgments.tsv (e.g. /work/shared/data/homedepot).
#  1. kprec split: items -> train / valid by a hash of item_id (80/20, deterministic).
#     --tune splits the TRAIN items once more (80/20, another seed) and evaluates on that part,
#     so that settings are chosen without ever looking at the valid items.
#  2. the train judgments are split by item: half are the cross-encoder's teacher labels, half
#     the bi-encoder's SR labels; clicks are simulated on all train items (kprec simulate-clicks)
#     in one of three regimes (--clicks, default dense):
#       dense:  every train item gets 20 sessions, all its judged keyphrases shown, engine noise
#               0.5 (the simulator's defaults): clicks are close to a relevance label.
#       sparse: a biased log as an engine writes it: heavy-tailed exposure (by a hash of item_id:
#               20% of the items 0 sessions, 40% 1, 25% 3, 10% 10, 5% 30; mean 3.65), at most 5
#               keyphrases shown per session, engine noise 1.0, examination 1/rank, click
#               probability 0.05 + 0.95 (rel-1)/2 (BENCHMARKS.md, "click regimes").
#       lexical: sparse, and the old engine is lexical: it only shows keyphrases among its own
#               BM25 top 10 of the item (kprec simulate-clicks --lexical-top 10), so relevant
#               keyphrases outside that list are never shown, never clicked.
#     The click log the models are trained on is OUT/clicks.tsv.
#  3. trains the CE (kprec train-ce) and the bi-encoders (kprec train), evaluates every row on the
#     valid items (or --eval-items/--eval-judgments) with kprec eval --json --clicks OUT/clicks.tsv:
#     every row on all judged pairs and on the never-shown slice (judged pairs whose keyphrase
#     never appears in the training click log).
#     --ce CE.kpm reuses a cross-encoder trained by an earlier run on the same split (the CE
#     trains on judgments only, so it is the same in every click regime).
#     --rows LIST (comma-separated, default all: ctr,ctr_sr,full,mse) trains only those BE rows
#     (BM25 and the CE are always evaluated); --full-args appends arguments to the full row's
#     and the MSE row's kprec train (for tuning).
# Writes every model and OUT/results.json: one object per row (row, recall@10/50/100, spearman,
# pearson, auc, items, pairs, train_seconds, never_shown: {recall@10/50/100, spearman, pearson,
# auc, items, pairs, ...}).
#  4. the report: every row's kprec eval also writes into OUT/report (--report, --label ROW), and
#     with the full row the CE is calibrated on the SR half of the train judgments (held out from
#     the CE's training) and the re-rank pipeline (be_full -> ce -> calibrated p) is evaluated
#     into it too: OUT/report/index.html (recall@k curves, Matryoshka sweep, score distributions,
#     calibration curve, never-shown slice). --no-report leaves it out.
set -euo pipefail

data="" out="" eval_items="" eval_judg="" tune=0 threads=2 epochs="" regime=dense
rows_sel="ctr,ctr_sr,full,mse" full_args="" ce_in="" report=1
kprec="${KPREC:-}"
while [ $# -gt 0 ]; do
    case "$1" in
    --data) data="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --eval-items) eval_items="$2"; shift 2 ;;
    --eval-judgments) eval_judg="$2"; shift 2 ;;
    --kprec) kprec="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --epochs) epochs="$2"; shift 2 ;;
    --tune) tune=1; shift ;;
    --clicks) regime="$2"; shift 2 ;;
    --rows) rows_sel="$2"; shift 2 ;;
    --full-args) full_args="$2"; shift 2 ;;
    --ce) ce_in="$2"; shift 2 ;;
    --no-report) report=0; shift ;;
    -h | --help) awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "quality.sh: unknown argument '$1' (--help)" >&2; exit 2 ;;
    esac
done
if [ -z "$data" ] || [ -z "$out" ]; then
    echo "quality.sh: --data DIR and --out OUT are required (--help)" >&2
    exit 2
fi
if { [ -n "$eval_items" ] && [ -z "$eval_judg" ]; } || { [ -z "$eval_items" ] && [ -n "$eval_judg" ]; }; then
    echo "quality.sh: --eval-items and --eval-judgments go together" >&2
    exit 2
fi
case "$regime" in dense | sparse | lexical) ;; *) echo "quality.sh: --clicks wants dense, sparse or lexical" >&2; exit 2 ;; esac
lex=()
[ "$regime" = lexical ] && lex=(--lexical-top 10)
for r in ${rows_sel//,/ }; do
    case "$r" in ctr | ctr_sr | full | mse) ;; *) echo "quality.sh: unknown row '$r' in --rows" >&2; exit 2 ;; esac
done
has_row() { [[ ",$rows_sel," == *",$1,"* ]]; }
read -r -a fargs <<<"$full_args"
for f in items.tsv keyphrases.tsv judgments.tsv; do
    [ -r "$data/$f" ] || { echo "quality.sh: $data/$f is missing" >&2; exit 1; }
done
if [ -z "$kprec" ]; then
    for c in ./build/kprec "$(dirname "$0")/../build/kprec" "$(command -v kprec || true)"; do
        if [ -n "$c" ] && [ -x "$c" ]; then kprec="$c"; break; fi
    done
fi
[ -n "$kprec" ] && [ -x "$kprec" ] || { echo "quality.sh: kprec binary not found (--kprec BIN)" >&2; exit 1; }
command -v jq >/dev/null || { echo "quality.sh: jq is required" >&2; exit 1; }

mkdir -p "$out"
K="$data/keyphrases.tsv"
ep=()
[ -n "$epochs" ] && ep=(--epochs "$epochs")
t_start=$(date +%s)
say() { echo "== $(date +%T) $*" >&2; }
now() { date +%s.%N; }

# 1. train / valid split by item
"$kprec" split --items "$data/items.tsv" --judgments "$data/judgments.tsv" --out "$out/split" >&2
tr_items="$out/split/train_items.tsv" tr_judg="$out/split/train_judgments.tsv"
va_items="$out/split/valid_items.tsv" va_judg="$out/split/valid_judgments.tsv"
if [ "$tune" = 1 ]; then
    say "tuning mode: evaluating on a split of the train items"
    "$kprec" split --items "$tr_items" --judgments "$tr_judg" --out "$out/tune" --valid-frac 0.2 --seed 7 >&2
    tr_items="$out/tune/train_items.tsv" tr_judg="$out/tune/train_judgments.tsv"
    va_items="$out/tune/valid_items.tsv" va_judg="$out/tune/valid_judgments.tsv"
fi
if [ -n "$eval_items" ]; then va_items="$eval_items" va_judg="$eval_judg"; fi

# 2. teacher labels (CE) / SR labels, by item; clicks on all train items
"$kprec" split --items "$tr_items" --judgments "$tr_judg" --out "$out/labels" --valid-frac 0.5 --seed 11 >&2
ce_judg="$out/labels/train_judgments.tsv"
sr_judg="$out/labels/valid_judgments.tsv"
say "simulating clicks on the train items ($regime regime)"
if [ "$regime" = dense ]; then
    "$kprec" simulate-clicks --items "$tr_items" --keyphrases "$K" --judgments "$tr_judg" \
        --out "$out/clicks.tsv" >&2
else
    # exposure groups by nested hash splits of the train items: 20% / 40% / 25% / 10% / 5%
    g="$out/exposure"; mkdir -p "$g"
    rest_i="$tr_items" rest_j="$tr_judg"
    groups=()
    fr=(0.2 0.5 0.625 0.6667) ses=(0 1 3 10)
    for s in 0 1 2 3; do
        "$kprec" split --items "$rest_i" --judgments "$rest_j" --out "$g/$s" \
            --valid-frac "${fr[$s]}" --seed $((101 + s)) >/dev/null
        groups+=("${ses[$s]}:$g/$s/valid_items.tsv")
        rest_i="$g/$s/train_items.tsv" rest_j="$g/$s/train_judgments.tsv"
    done
    groups+=("30:$rest_i")
    first=1
    for gs in "${groups[@]}"; do
        n="${gs%%:*}" f="${gs#*:}"
        echo "exposure group: $(($(wc -l <"$f") - 1)) items x $n sessions" >&2
        [ "$n" = 0 ] && continue
        "$kprec" simulate-clicks --items "$tr_items" --keyphrases "$K" --judgments "$tr_judg" \
            --items-filter "$f" --sessions "$n" --max-shown 5 --noise 1.0 --seed $((42 + n)) \
            "${lex[@]}" --out "$g/clicks_$n.tsv" >/dev/null
        if [ $first = 1 ]; then cat "$g/clicks_$n.tsv"; first=0; else tail -n +2 "$g/clicks_$n.tsv"; fi
    done >"$out/clicks.tsv"
    awk -F'\t' 'NR > 1 { if ($3 == "click") c++; else m++ } END {
        printf "'"$regime"' log: %d impressions, %d clicks, ctr %.4f\n", m, c, c / m }' "$out/clicks.tsv" >&2
fi
awk -F'\t' 'NR > 1 && $3 == "click" { s[$1] = 1 } END { n = 0; for (i in s) n++;
    printf "train items with >= 1 click: %d\n", n }' "$out/clicks.tsv" >&2

# 3. models
declare -A secs
train_ce() {
    if [ -n "$ce_in" ]; then
        say "cross-encoder from $ce_in (not trained by this run)"
        cp "$ce_in" "$out/ce.kpm"
        secs[ce]=0
        return
    fi
    say "train-ce"
    local t0; t0=$(now)
    "$kprec" train-ce --items "$tr_items" --keyphrases "$K" --judgments "$ce_judg" \
        --out "$out/ce.kpm" --threads "$threads" --quiet >&2
    secs[ce]=$(awk -v a="$(now)" -v b="$t0" 'BEGIN { printf "%.1f", a - b }')
}
train_be() { # name, extra args...
    local name="$1"; shift
    say "train $name"
    local t0; t0=$(now)
    "$kprec" train --items "$tr_items" --keyphrases "$K" --out "$out/$name.kpm" \
        --threads "$threads" --quiet "${ep[@]}" "$@" >&2
    secs[$name]=$(awk -v a="$(now)" -v b="$t0" 'BEGIN { printf "%.1f", a - b }')
}
train_ce
has_row ctr && train_be be_ctr --clicks "$out/clicks.tsv"
has_row ctr_sr && train_be be_ctr_sr --clicks "$out/clicks.tsv" --judgments "$sr_judg"
has_row full && train_be be_full --clicks "$out/clicks.tsv" --judgments "$sr_judg" --teacher "$out/ce.kpm" \
    --distill pearson --w-distill 0.5 --w-known 8 "${fargs[@]}"
has_row mse && train_be be_mse --clicks "$out/clicks.tsv" --judgments "$sr_judg" --teacher "$out/ce.kpm" \
    --distill mse --w-distill 0.5 --w-known 8 "${fargs[@]}"

# 4. evaluation
rows="$out/rows.jsonl"
: >"$rows"
rep=()
[ "$report" = 1 ] && rm -rf "$out/report"
evaluate() { # row, model, seconds, extra args...
    local row="$1" model="$2" s="$3"; shift 3
    say "eval $row"
    [ "$report" = 1 ] && rep=(--report "$out/report" --label "$row")
    [[ "$row" == *@* ]] && rep=() # the prefix rows: the report's Matryoshka plot has them
    "$kprec" eval --model "$model" --items "$va_items" --keyphrases "$K" --judgments "$va_judg" \
        --clicks "$out/clicks.tsv" --threads "$threads" --json --quiet "${rep[@]}" "$@" |
        jq -c --arg row "$row" --argjson s "$s" '{row: $row} + . + {train_seconds: $s}' >>"$rows"
}
evaluate bm25 bm25 0
has_row ctr && evaluate be_ctr "$out/be_ctr.kpm" "${secs[be_ctr]}"
has_row ctr_sr && evaluate be_ctr_sr "$out/be_ctr_sr.kpm" "${secs[be_ctr_sr]}"
has_row full && evaluate be_full "$out/be_full.kpm" "${secs[be_full]}"
has_row mse && evaluate be_mse "$out/be_mse.kpm" "${secs[be_mse]}"
evaluate ce "$out/ce.kpm" "${secs[ce]}"
if has_row full; then
    for p in 32 64 128; do
        evaluate "be_full@$p" "$out/be_full.kpm" "${secs[be_full]}" --prefix "$p"
    done
fi
jq -s '.' "$rows" >"$out/results.json"
rm -f "$rows"
if [ "$report" = 1 ] && has_row full; then
    say "calibrate the CE on the SR judgments; eval the re-rank pipeline into the report"
    "$kprec" calibrate --model "$out/be_full.kpm" --ce "$out/ce.kpm" --items "$tr_items" \
        --keyphrases "$K" --judgments "$sr_judg" --out "$out/calib.kpm" --threads "$threads" >&2
    "$kprec" eval --model "$out/be_full.kpm" --rerank "$out/ce.kpm" --calibration "$out/calib.kpm" \
        --items "$va_items" --keyphrases "$K" --judgments "$va_judg" --threads "$threads" \
        --report "$out/report" --label "be_full + ce + calibration" --quiet >&2
fi

# 5. table (all judged pairs, then the never-shown slice: ns_*)
jq -r '["row","recall@10","recall@50","recall@100","spearman","auc","ns_r@10","ns_r@50",
        "ns_r@100","ns_spearman","ns_auc","train_s"],
       (.[] | [.row, .["recall@10"], .["recall@50"], .["recall@100"], .spearman, .auc,
               .never_shown["recall@10"], .never_shown["recall@50"], .never_shown["recall@100"],
               .never_shown.spearman, .never_shown.auc, .train_seconds]
            | map(if type == "number" then (. * 1000 | round / 1000 | tostring)
                  elif . == null then "-" else . end))
       | @tsv' "$out/results.json" | column -t >&2
where="$out/results.json"
[ "$report" = 1 ] && where="$where, $out/report/index.html"
say "done in $(($(date +%s) - t_start)) s -> $where"
