#!/usr/bin/env bash
# bench/pipeline.sh -- the serving pipeline's table: bi-encoder alone, + hybrid, + re-rank, + gate.
#
#   bench/pipeline.sh --data DIR --models OUT [--kprec BIN] [--titles 5000] [--rounds 5]
#                     [--candidates 50] [--hybrid 20] [--k 10] [--threads 1]
#
# DIR holds items.tsv, keyphrases.tsv, judgments.tsv (e.g. /work/shared/data/homedepot); OUT is
# bench/quality.sh's output (OUT/be_full.kpm, OUT/ce.kpm, OUT/split, OUT/labels). Steps:
#  1. kprec calibrate on held-out TRAIN judgments: OUT/labels/valid_judgments.tsv, the half of the
#     train judgments quality.sh kept away from the cross-encoder (never the valid items), writing
#     OUT/calib_ce.kpm and the suggested threshold (keeps 90% of relevant held-out pairs);
#  2. kprec eval (the worker's code path) of each row on the valid split: recall@k, kept/dropped
#     shares of the judged pairs, mean list length, items left with none;
#  3. kprec eval --speed: items/s of each row over the first --titles valid titles, median of
#     --rounds rounds, --threads threads (1 = a worker's default).
# Prints the machine (CPU model, nproc, OpenBLAS core) and a table; writes OUT/pipeline.json.
set -euo pipefail
data="" out="" kprec="${KPREC:-}" titles=5000 rounds=5 cand=50 hyb=20 k=10 threads=1
while [ $# -gt 0 ]; do
    case "$1" in
    --data) data="$2"; shift 2 ;;
    --models) out="$2"; shift 2 ;;
    --kprec) kprec="$2"; shift 2 ;;
    --titles) titles="$2"; shift 2 ;;
    --rounds) rounds="$2"; shift 2 ;;
    --candidates) cand="$2"; shift 2 ;;
    --hybrid) hyb="$2"; shift 2 ;;
    --k) k="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    -h | --help) awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "pipeline.sh: unknown argument '$1' (--help)" >&2; exit 2 ;;
    esac
done
[ -n "$data" ] && [ -n "$out" ] || { echo "pipeline.sh: --data and --models are required" >&2; exit 2; }
[ -n "$kprec" ] || kprec="$(dirname "$0")/../build/kprec"
for f in "$out/be_full.kpm" "$out/ce.kpm" "$out/split/valid_items.tsv" "$out/labels/valid_judgments.tsv"; do
    [ -r "$f" ] || { echo "pipeline.sh: $f is missing (run bench/quality.sh first)" >&2; exit 1; }
done
command -v jq >/dev/null || { echo "pipeline.sh: jq is required" >&2; exit 1; }
K="$data/keyphrases.tsv"
BE="$out/be_full.kpm" CE="$out/ce.kpm" CAL="$out/calib_ce.kpm"
echo "machine: $(lscpu | grep 'Model name' | sed 's/ \{2,\}/ /g'); nproc $(nproc); $("$kprec" version | grep -i openblas)" >&2

t=$("$kprec" calibrate --model "$BE" --ce "$CE" --items "$out/split/train_items.tsv" --keyphrases "$K" \
    --judgments "$out/labels/valid_judgments.tsv" --out "$CAL" --threads "$threads")
echo "calibration: $CAL, threshold $t (from held-out train judgments)" >&2

valid=(--items "$out/split/valid_items.tsv" --keyphrases "$K" --judgments "$out/split/valid_judgments.tsv")
declare -A rowargs=(
    [be]="--candidates $k"
    [be+hybrid]="--candidates $k --hybrid $hyb"
    [be+hybrid+rerank]="--rerank $CE --candidates $cand --hybrid $hyb"
    [be+hybrid+rerank+gate]="--rerank $CE --candidates $cand --hybrid $hyb --calibration $CAL --threshold $t"
)
rows="$out/pipeline.jsonl"
: >"$rows"
for row in be be+hybrid be+hybrid+rerank be+hybrid+rerank+gate; do
    read -r -a ra <<<"${rowargs[$row]}"
    echo "== $(date +%T) $row: kprec eval --model $BE ${rowargs[$row]} --k $k" >&2
    q=$("$kprec" eval --model "$BE" "${ra[@]}" --k "$k" "${valid[@]}" --threads 2 --json)
    s=$("$kprec" eval --model "$BE" "${ra[@]}" --k "$k" --items "$out/split/valid_items.tsv" \
        --keyphrases "$K" --speed "$titles" --rounds "$rounds" --threads "$threads" --json)
    jq -c -n --arg row "$row" --argjson q "$q" --argjson s "$s" \
        '{row: $row} + $q + {speed_items_per_s: $s.items_per_s, speed_titles: $s.items, speed_rounds: $s.rounds}' >>"$rows"
done
jq -s '.' "$rows" >"$out/pipeline.json"
rm -f "$rows"
jq -r --arg k "recall@$k" '["row", $k, "kept", "dropped", "in_list", "mean_list", "items_none", "items_per_s"],
   (.[] | [.row, .[$k], .kept, .dropped, .in_list, .mean_list, .items_none, .speed_items_per_s]
        | map(if type == "number" then (. * 1000 | round / 1000 | tostring) else . end))
   | @tsv' "$out/pipeline.json" | column -t
