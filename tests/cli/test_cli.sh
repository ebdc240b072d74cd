#!/usr/bin/env bash
# The kprec binary's front door, without any service: help, usage errors, bad config files.
set -uo pipefail
KPREC=${1:?usage: test_cli.sh KPREC}
T=$(mktemp -d); trap 'rm -rf "$T"' EXIT
. "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
check help 0 "worker +run the stream worker" -- "$KPREC" help
check unknown 2 "unknown command 'frobnicate'" -- "$KPREC" frobnicate
check worker-no-config 2 "-c FILE is required" -- "$KPREC" worker
printf '[worker]\nbatch_size = 10\nbtach_size = 5\n' >"$T/typo.ini"
check bad-key 2 "typo.ini:3: unknown key 'btach_size' in \[worker\]" -- "$KPREC" worker -c "$T/typo.ini"
printf '[redis]\nport = sixty\n' >"$T/num.ini"
check bad-number 2 "num.ini:2: 'port' must be an integer" -- "$KPREC" worker -c "$T/num.ini"
check missing-file 2 "nope.ini: cannot open" -- "$KPREC" worker -c "$T/nope.ini"
printf '[worker]\n' >"$T/empty.ini"
check no-inventory 2 "no keyphrase inventory file configured" -- "$KPREC" worker -c "$T/empty.ini"
printf '[model]\nkeyphrases = %s/none.tsv\n' "$T" >"$T/inv.ini"
check missing-inventory 2 "none.tsv" -- "$KPREC" worker -c "$T/inv.ini"
printf '[model]\npath = %s/bad.kpm\nkeyphrases = x\n' "$T" >"$T/ckpt.ini"
echo "not a checkpoint" >"$T/bad.kpm"
check bad-checkpoint 2 "bad.kpm" -- "$KPREC" worker -c "$T/ckpt.ini"
printf '[kafka]\nno.such.property = 1\n[model]\nkeyphrases = %s/kp.tsv\n' "$T" >"$T/kafka.ini"
printf 'keyphrase_id\tkeyphrase\nk1\tred shoes\n' >"$T/kp.tsv"
check bad-kafka-key 2 "no.such.property" -- "$KPREC" worker -c "$T/kafka.ini"
KPREC_WORKER_TOP_K=zero check bad-env 2 "KPREC_WORKER_TOP_K" -- "$KPREC" config
check config-dump 0 "^items = items.listed" -- "$KPREC" config -c "$T/empty.ini"
check help-version 0 "version +print the versions" -- "$KPREC" help
check version 0 "^kprec [0-9]+\.[0-9]+\.[0-9]+ \(git [^)]+\)" -- "$KPREC" version
check version-flag 0 "^kprec [0-9]+\.[0-9]+\.[0-9]+ " -- "$KPREC" --version
for lib in librdkafka avro-c openblas hiredis jansson libmicrohttpd libcurl; do
  check "version-$lib" 0 "^$lib [0-9]" -- "$KPREC" version
done
check version-extra 2 "unexpected argument 'x'" -- "$KPREC" version x
finish
