#!/usr/bin/env bash
# ops/kafka.sh draws the KRaft cluster id that `kafka-storage format -t ID` takes. About one
# URL-safe base64 id in 64 begins with '-', which the storage tool reads as an option: the demo then
# failed on its first run. 2,000 draws would hit such an id with probability 1 - (63/64)^2000.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
n=2000 bad=0
ids=$("${KAFKA_SH:-$ROOT/ops/kafka.sh}" cluster-id "$n")
[ "$(printf '%s\n' "$ids" | wc -l)" -eq "$n" ] || { echo "FAIL: expected $n ids" >&2; exit 1; }
bad=$(printf '%s\n' "$ids" | grep -cv '^[A-Za-z0-9_][A-Za-z0-9_-]\{21\}$' || true)
if [ "$bad" -ne 0 ]; then
  echo "FAIL: $bad of $n cluster ids are not 22 URL-safe base64 characters or begin with '-':" >&2
  printf '%s\n' "$ids" | grep -v '^[A-Za-z0-9_][A-Za-z0-9_-]\{21\}$' | head -3 >&2
  exit 1
fi
dups=$(printf '%s\n' "$ids" | sort | uniq -d | wc -l)
[ "$dups" -eq 0 ] || { echo "FAIL: $dups repeated ids" >&2; exit 1; }
echo "1 passed, 0 failed: $n cluster ids, none begins with '-', all distinct"
