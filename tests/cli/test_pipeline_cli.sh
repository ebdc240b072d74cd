#!/usr/bin/env bash
# kprec calibrate and kprec eval --rerank/--hybrid/--calibration/--threshold (the serving pipeline,
# offline) on the ESCI sample (ops/esci-prepare.sh), no service needed: usage errors, the gate
# (every published p >= threshold, at most K per item, fewer or none allowed), defaults.
set -uo pipefail
KPREC=${1:?usage: test_pipeline_cli.sh KPREC}
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
. "$HERE/lib.sh"
bash "$HERE/../../ops/esci-prepare.sh" "$T/d" 2>/dev/null || { echo "esci-prepare failed" >&2; exit 1; }
D=$T/d
KP=(--keyphrases "$D/keyphrases.tsv")
"$KPREC" split --items "$D/items.tsv" --judgments "$D/judgments.tsv" --out "$T/s" >/dev/null 2>&1
"$KPREC" split --items "$T/s/train_items.tsv" --judgments "$T/s/train_judgments.tsv" --out "$T/h" \
  --valid-frac 0.3 --seed 5 >/dev/null 2>&1
TRAIN=(--items "$T/h/train_items.tsv" "${KP[@]}" --judgments "$T/h/train_judgments.tsv")
HELD=(--items "$T/h/valid_items.tsv" "${KP[@]}" --judgments "$T/h/valid_judgments.tsv")
VALID=(--items "$T/s/valid_items.tsv" "${KP[@]}" --judgments "$T/s/valid_judgments.tsv")
"$KPREC" train-ce "${TRAIN[@]}" --out "$T/ce.kpm" --epochs 1 --quiet >/dev/null 2>&1
ok ce-trained test -s "$T/ce.kpm"
"$KPREC" train "${TRAIN[@]}" --out "$T/be.kpm" --epochs 1 --quiet >/dev/null 2>&1
ok be-trained test -s "$T/be.kpm"

# ---- calibrate ----
check cal-help 0 "^Example" -- "$KPREC" calibrate --help
check cal-missing 2 "required" -- "$KPREC" calibrate --model "$T/be.kpm"
check cal-bad-method 2 "method" -- "$KPREC" calibrate --model "$T/be.kpm" "${HELD[@]}" --out "$T/x.kpm" --method nope
check cal-no-ce 1 "nope.kpm" -- "$KPREC" calibrate --model "$T/be.kpm" --ce "$T/nope.kpm" "${HELD[@]}" --out "$T/x.kpm"
check cal-ce 0 "isotonic \(PAV\)" -- "$KPREC" calibrate --model "$T/be.kpm" --ce "$T/ce.kpm" "${HELD[@]}" --out "$T/cal.kpm"
thr=$(grep -E '^[0-9.]+$' <<<"$out")
ok cal-threshold test -n "$thr"
ok cal-file test -s "$T/cal.kpm"
# random negatives: same suggested threshold (it depends on the relevant pairs only), lower p
check cal-negs 0 "\+ [0-9]+ random negatives" -- "$KPREC" calibrate --model "$T/be.kpm" --ce "$T/ce.kpm" "${HELD[@]}" --out "$T/cal-n.kpm" --negatives 2 --method isotonic
check cal-be 0 "bi-encoder cosine" -- "$KPREC" calibrate --model "$T/be.kpm" "${HELD[@]}" --out "$T/cal-be.kpm" --method platt

# ---- eval with the pipeline: usage and consistency errors ----
check ev-no-judg 2 "--judgments is required" -- "$KPREC" eval --model "$T/be.kpm" --rerank "$T/ce.kpm" --items "$D/items.tsv" "${KP[@]}"
check ev-bad-thr 2 "--threshold" -- "$KPREC" eval --model "$T/be.kpm" "${VALID[@]}" --threshold 2
check ev-cal-mismatch 1 "cross-encoder" -- "$KPREC" eval --model "$T/be.kpm" "${VALID[@]}" --calibration "$T/cal.kpm"
check ev-cal-mismatch2 1 "bi-encoder" -- "$KPREC" eval --model "$T/be.kpm" --rerank "$T/ce.kpm" "${VALID[@]}" --calibration "$T/cal-be.kpm"
check ev-cal-foreign 1 "not a calibration" -- "$KPREC" eval --model "$T/be.kpm" --rerank "$T/ce.kpm" "${VALID[@]}" --calibration "$T/ce.kpm"

# ---- eval: results ----
"$KPREC" eval --model "$T/be.kpm" "${VALID[@]}" --candidates 10 --json >"$T/be.json" 2>/dev/null
ok ev-be-rc test $? -eq 0
"$KPREC" eval --model "$T/be.kpm" "${VALID[@]}" --json --quiet --k 10 >"$T/plain.json" 2>/dev/null
# the pipeline without re-rank or gate is the bi-encoder's top 10: the same recall@10
ok ev-be-same-recall jq -e --slurpfile p "$T/plain.json" '(.["recall@10"] - $p[0]["recall@10"]) | fabs < 1e-9' "$T/be.json" >/dev/null
ok ev-be-full jq -e '.mean_list == 10 and .items_none == 0 and .kept == 1 and .dropped == 0' "$T/be.json" >/dev/null
"$KPREC" eval --model "$T/be.kpm" --rerank "$T/ce.kpm" --hybrid 10 "${VALID[@]}" --json >"$T/rr.json" 2>/dev/null
ok ev-rerank jq -e '.["recall@10"] > 0 and .["recall@10"] <= 1 and .mean_list == 10' "$T/rr.json" >/dev/null
"$KPREC" eval --model "$T/be.kpm" --rerank "$T/ce.kpm" --hybrid 10 --calibration "$T/cal.kpm" \
  --threshold "$thr" "${VALID[@]}" --json --lists "$T/lists.jsonl" >"$T/gate.json" 2>/dev/null
ok ev-gate-rc test $? -eq 0
# what would be published: only p >= threshold, at most K, ranked; some items get fewer
ok ev-gate-lists jq -e -s --argjson t "$thr" 'length > 0 and all(.[]; (.suggestions | length) <= 10 and
  all(.suggestions[]; .score >= $t))' "$T/lists.jsonl" >/dev/null
ok ev-gate-fewer jq -e -s 'any(.[]; (.suggestions | length) < 10)' "$T/lists.jsonl" >/dev/null
ok ev-gate-count jq -e -s --slurpfile g "$T/gate.json" '(map(.suggestions | length) | add / length - $g[0].mean_list) | fabs < 1e-4' "$T/lists.jsonl" >/dev/null
ok ev-gate jq -e '.mean_list <= 10 and .kept <= 1 and .dropped >= 0 and (.logloss | type) == "number"' "$T/gate.json" >/dev/null
ok ev-gate-shorter jq -e --slurpfile r "$T/rr.json" '.mean_list < $r[0].mean_list and .dropped > $r[0].dropped' "$T/gate.json" >/dev/null
check ev-table 0 "^items w/o any +[0-9]+" -- "$KPREC" eval --model "$T/be.kpm" --rerank "$T/ce.kpm" --calibration "$T/cal.kpm" --threshold 0.5 "${VALID[@]}"
check ev-speed 0 '"items_per_s":' -- "$KPREC" eval --model "$T/be.kpm" --rerank "$T/ce.kpm" --items "$D/items.tsv" "${KP[@]}" --speed 200 --rounds 2 --json
finish
