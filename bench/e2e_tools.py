#!/usr/bin/env python3
"""Helpers of bench/e2e.sh (standard library only).

  e2e_tools.py inventory N OUT KP_TSV... -- ITEMS_TSV...
      writes OUT (keyphrase_id<TAB>keyphrase, header row): the distinct keyphrases of the KP_TSV
      files (second column, in file order), topped up to N with the most frequent 2-4 word n-grams
      of the ITEMS_TSV titles (lowercased, words of letters/digits, ties broken alphabetically);
      prints how many came from each source
  e2e_tools.py drain METRICS_URL N [TIMEOUT_S]
      polls kprec_events_processed_total{topic="items"} (summed over the URLs, comma-separated)
      every 50 ms until it reaches N; prints JSON {items, seconds, items_per_s, batches}
  e2e_tools.py keyspace PORT OUT PREFIX N
      subscribes to Redis keyspace events of kprec:rec:* hashes; writes "ms<TAB>item_id" per
      write (local clock at arrival) until N distinct item ids starting with PREFIX were written
      (or SIGTERM); touches OUT.ready once subscribed
  e2e_tools.py latency WRITES_TSV RECORDS_TSV
      joins the first write of each item (keyspace) with its record timestamp (kcat '%k\\t%T');
      prints JSON {n, p50_ms, p90_ms, p99_ms, max_ms, p50 of the first and last fifth by record
      time (a backlog that grows: the last fifth waits longer)}
"""
import collections
import json
import os
import re
import signal
import socket
import sys
import time
import urllib.request


def inventory(args):
    n, out = int(args[0]), args[1]
    sep = args.index("--")
    kp_files, item_files = args[2:sep], args[sep + 1:]
    seen, order, src_of = set(), [], []
    per_source = []
    for f in kp_files:
        before = len(order)
        with open(f, encoding="utf-8") as fh:
            next(fh)
            for line in fh:
                parts = line.rstrip("\n").split("\t")
                if len(parts) < 2:
                    continue
                k = " ".join(parts[1].split())
                if k and k not in seen:
                    seen.add(k)
                    order.append(k)
                    src_of.append(len(per_source))
        per_source.append(f)
    topped = 0
    if len(order) < n:
        grams = collections.Counter()
        for f in item_files:
            with open(f, encoding="utf-8") as fh:
                next(fh)
                for line in fh:
                    parts = line.rstrip("\n").split("\t")
                    if len(parts) < 2:
                        continue
                    w = re.findall(r"[a-z0-9]+", parts[1].lower())
                    for g in (2, 3, 4):
                        for i in range(len(w) - g + 1):
                            grams[" ".join(w[i:i + g])] += 1
        for k, _ in sorted(grams.items(), key=lambda kv: (-kv[1], kv[0])):
            if len(order) >= n:
                break
            if k not in seen:
                seen.add(k)
                order.append(k)
                topped += 1
    topped = max(0, len(order[:n]) - sum(1 for s_ in src_of[:n]))
    order = order[:n]
    kept = collections.Counter(src_of[:n])
    with open(out, "w", encoding="utf-8") as fh:
        fh.write("keyphrase_id\tkeyphrase\n")
        for i, k in enumerate(order):
            fh.write(f"e{i}\t{k}\n")
    src = ", ".join(f"{kept[i]} from {f}" for i, f in enumerate(per_source))
    print(f"inventory: {len(order)} keyphrases ({src}; {topped} title n-grams)", file=sys.stderr)
    if len(order) < n:
        sys.exit(f"inventory: only {len(order)} < {n} keyphrases")


def metric(url, name):
    total = 0.0
    for u in url.split(","):
        with urllib.request.urlopen(u, timeout=5) as r:
            for line in r.read().decode().splitlines():
                k, _, v = line.partition(" ")
                if k == name:
                    total += float(v)
    return total


def drain(args):
    url, n = args[0], int(args[1])
    timeout = float(args[2]) if len(args) > 2 else 3600
    key = 'kprec_events_processed_total{topic="items"}'
    t_start = time.monotonic()
    first = None
    while True:
        p = metric(url, key)
        t = time.monotonic()
        if first is None and p > 0:
            first = (t, p)
        if p >= n:
            break
        if t - t_start > timeout:
            sys.exit(f"drain: {p:.0f} of {n} after {timeout:.0f} s")
        time.sleep(0.05)
    b = metric(url, "kprec_batches_total")
    secs = t - first[0]
    items = p - first[1]
    print(json.dumps({"items": int(p), "seconds": round(secs, 3),
                      "items_per_s": round(items / secs, 1) if secs > 0 else 0,
                      "batches": int(b), "load1": round(os.getloadavg()[0], 1)}))


def keyspace(args):
    port, out, want, n = int(args[0]), args[1], args[2], int(args[3])
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"CONFIG SET notify-keyspace-events Kh\r\n")
    f = s.makefile("rb")
    f.readline()
    s.sendall(b"PSUBSCRIBE __keyspace@*__:kprec:rec:*\r\n")
    for _ in range(6):  # *3 $10 psubscribe $len pattern :1
        f.readline()
    open(out + ".ready", "w").close()
    def on_term(*_):
        raise SystemExit(0)  # out of the blocking read; the with block flushes the file

    signal.signal(signal.SIGTERM, on_term)
    prefix = b"kprec:rec:"
    seen = set()
    with open(out, "w", encoding="utf-8", buffering=1 << 16) as fh:
        while True:
            line = f.readline()
            if not line:
                break
            # a pmessage is *4 $8 pmessage $len pattern $len channel $len event
            if line != b"*4\r\n":
                continue
            parts = [f.readline() for _ in range(8)]
            ch = parts[5].rstrip(b"\r\n")
            now = time.time() * 1000.0
            i = ch.find(prefix)
            if i >= 0:
                k = ch[i + len(prefix):].decode("utf-8", "replace")
                fh.write(f"{now:.3f}\t{k}\n")
                if k.startswith(want):
                    seen.add(k)
                    if len(seen) >= n:
                        break


def pct(v, q):
    return v[min(len(v) - 1, int(q * len(v)))]


def latency(args):
    first = {}
    with open(args[0], encoding="utf-8") as fh:
        for line in fh:
            t, _, k = line.rstrip("\n").partition("\t")
            if k not in first:
                first[k] = float(t)
    pairs = []
    with open(args[1], encoding="utf-8") as fh:
        for line in fh:
            k, _, ts = line.rstrip("\n").rpartition("\t")
            if k in first and ts.isdigit():
                pairs.append((int(ts), first[k] - int(ts)))
    if not pairs:
        sys.exit("latency: no item both written and recorded")
    pairs.sort()
    fifth = max(1, len(pairs) // 5)
    head = sorted(v for _, v in pairs[:fifth])  # a backlog that grows shows as head << tail
    tail = sorted(v for _, v in pairs[-fifth:])
    lat = sorted(v for _, v in pairs)
    print(json.dumps({"n": len(lat), "p50_ms": round(pct(lat, 0.5), 1),
                      "p90_ms": round(pct(lat, 0.9), 1), "p99_ms": round(pct(lat, 0.99), 1),
                      "max_ms": round(lat[-1], 1), "p50_first_fifth_ms": round(pct(head, 0.5), 1),
                      "p50_last_fifth_ms": round(pct(tail, 0.5), 1)}))


if __name__ == "__main__":
    cmds = {"inventory": inventory, "drain": drain, "keyspace": keyspace, "latency": latency}
    if len(sys.argv) < 2 or sys.argv[1] not in cmds:
        sys.exit(__doc__)
    cmds[sys.argv[1]](sys.argv[2:])
