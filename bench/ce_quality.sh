#!/usr/bin/env bash
# bench/ce_quality.sh -- cross-encoder (assistant) quality on the split of bench/quality.sh.
#
#   bench/ce_quality.sh --data DIR --out OUT [--tune] [--kprec BIN] [--threads T] [--name NAME]
#                       [-- TRAIN-CE-ARGS...]
#
# Same splits as bench/quality.sh: kprec split (valid = 20% of the items by hash); --tune splits
# the train items again (--valid-frac 0.2 --seed 7) and evaluates on that part; the CE trains on
# the half of the (tune-)train items' judgments that quality.sh gives it (--valid-frac 0.5
# --seed 11). Trains `kprec train-ce ... TRAIN-CE-ARGS`, evaluates it with kprec eval --json
# exactly as quality.sh does, and appends one JSON line (name, args, metrics, train seconds) to
# OUT/ce_runs.jsonl. The splits are reused when OUT already holds them.
set -euo pipefail
data="" out="" tune=0 threads=2 name="" kprec="${KPREC:-./build/kprec}"
while [ $# -gt 0 ]; do
    case "$1" in
    --data) data="$2"; shift 2 ;;
    --out) out="$2"; shift 2 ;;
    --tune) tune=1; shift ;;
    --kprec) kprec="$2"; shift 2 ;;
    --threads) threads="$2"; shift 2 ;;
    --name) name="$2"; shift 2 ;;
    --) shift; break ;;
    -h | --help) awk 'NR > 1 && !/^#/ { exit } NR > 1' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "ce_quality.sh: unknown argument '$1' (--help)" >&2; exit 2 ;;
    esac
done
[ -n "$data" ] && [ -n "$out" ] || { echo "ce_quality.sh: --data and --out are required" >&2; exit 2; }
command -v jq >/dev/null || { echo "ce_quality.sh: jq is required" >&2; exit 1; }
mkdir -p "$out"
K="$data/keyphrases.tsv"
[ -s "$out/split/train_items.tsv" ] ||
    "$kprec" split --items "$data/items.tsv" --judgments "$data/judgments.tsv" --out "$out/split" >&2
tr_items="$out/split/train_items.tsv" tr_judg="$out/split/train_judgments.tsv"
va_items="$out/split/valid_items.tsv" va_judg="$out/split/valid_judgments.tsv"
lab="$out/labels"
if [ "$tune" = 1 ]; then
    [ -s "$out/tune/train_items.tsv" ] ||
        "$kprec" split --items "$tr_items" --judgments "$tr_judg" --out "$out/tune" --valid-frac 0.2 --seed 7 >&2
    tr_items="$out/tune/train_items.tsv" tr_judg="$out/tune/train_judgments.tsv"
    va_items="$out/tune/valid_items.tsv" va_judg="$out/tune/valid_judgments.tsv"
    lab="$out/tune_labels"
fi
[ -s "$lab/train_judgments.tsv" ] ||
    "$kprec" split --items "$tr_items" --judgments "$tr_judg" --out "$lab" --valid-frac 0.5 --seed 11 >&2
model="$out/ce${name:+_$name}.kpm"
t0=$(date +%s.%N)
"$kprec" train-ce --items "$tr_items" --keyphrases "$K" --judgments "$lab/train_judgments.tsv" \
    --out "$model" --threads "$threads" --quiet "$@" >&2
s=$(awk -v a="$(date +%s.%N)" -v b="$t0" 'BEGIN { printf "%.1f", a - b }')
"$kprec" eval --model "$model" --items "$va_items" --keyphrases "$K" --judgments "$va_judg" \
    --threads "$threads" --json --quiet |
    jq -c --arg name "$name" --arg args "$*" --argjson tune "$tune" --argjson s "$s" \
        '{name: $name, args: $args, tune: $tune} + . + {train_seconds: $s}' | tee -a "$out/ce_runs.jsonl"
