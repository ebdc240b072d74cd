#!/usr/bin/python3
"""bench/scale_peer.py - the faiss side of bench/run-all (1M keyphrases), and its report.

  scale_peer.py search --out OUT [--k K] [--batches "64 256"] [--threads "1 2"] [--single N]
                       [--queries Q]
      Loads OUT/queries.f32 and OUT/keys.f32 (bench_scale embed), builds faiss IndexFlatIP and
      times one pass of index.search over the queries per (batch, threads), after a warm-up
      batch, and a pass of batch 1 over the first N queries. Threads: faiss's OpenMP threads and
      OpenBLAS's (faiss calls the same libopenblas.so.0 as kprec). Prints bench_scale's rows:
        time <mode> <batch> <threads> 0 <queries> <wall s> <cpu s>     (mode: flat)

  scale_peer.py report --out OUT [--target-recall R]
      Reads OUT/kprec.tsv, OUT/faiss.tsv (the rows of all rounds) and OUT/rss.tsv (bench_scale
      rss rows); prints the markdown tables of BENCHMARKS.md: per row the median over rounds of
      kprec's and the peer's queries/s at each side's best thread setting, the ratio and the
      target; the IVF recall/speed curve; the memory row.

Run it with /usr/bin/python3 (Debian's python3-faiss and python3-numpy).
"""
import argparse
import ctypes
import os
import statistics
import sys
import time


def parse_list(s):
    return [int(x) for x in s.replace(",", " ").split()]


def cmd_search(a):
    import numpy as np
    import faiss

    with open(os.path.join(a.out, "dims.txt")) as f:
        nq, nk, dim = (int(x) for x in f.read().split())
    if a.queries:
        nq = min(nq, a.queries)
    xq = np.fromfile(os.path.join(a.out, "queries.f32"), dtype=np.float32)[: nq * dim]
    xq = xq.reshape(nq, dim)
    index = faiss.IndexFlatIP(dim)
    index.add(np.fromfile(os.path.join(a.out, "keys.f32"), dtype=np.float32).reshape(nk, dim))
    blas = ctypes.CDLL("libopenblas.so.0")
    blas.openblas_get_corename.restype = ctypes.c_char_p
    print("meta\tfaiss_version\t%s" % faiss.__version__)
    print("meta\tfaiss_openblas_corename\t%s" % blas.openblas_get_corename().decode())
    single = min(a.single, nq)

    def one_pass(b, n):
        c0, t0 = time.process_time(), time.perf_counter()
        for q0 in range(0, n, b):
            index.search(xq[q0:min(n, q0 + b)], a.k)
        return time.perf_counter() - t0, time.process_time() - c0

    for t in parse_list(a.threads):
        faiss.omp_set_num_threads(t)
        blas.openblas_set_num_threads(t)
        for b in parse_list(a.batches):
            index.search(xq[:b], a.k)  # warm-up
            w, c = one_pass(b, nq)
            print("time\tflat\t%d\t%d\t0\t%d\t%.6f\t%.6f" % (b, t, nq, w, c), flush=True)
        w, c = one_pass(1, single)
        print("time\tflat\t1\t%d\t0\t%d\t%.6f\t%.6f" % (t, single, w, c), flush=True)
    return 0


def read_rows(path):
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [line.rstrip("\n").split("\t") for line in f if line.strip()]


def cmd_report(a):
    times, recall, meta = {}, {}, {}
    for side in ("kprec", "faiss"):
        for r in read_rows(os.path.join(a.out, side + ".tsv")):
            if r[0] == "time" and len(r) == 8:
                key = (r[1], int(r[2]), int(r[3]), int(r[4]))
                times.setdefault(key, []).append((int(r[5]) / float(r[6]), int(r[5]) / float(r[7])))
            elif r[0] == "recall":  # the fp32 IVF
                recall.setdefault(("ivf", int(r[1]), int(r[2])), []).append(float(r[3]))
            elif r[0] == "qrecall":  # a reduced-precision first pass (mode ivf-int8-cC, ...)
                recall.setdefault((r[1], int(r[2]), int(r[3])), []).append(float(r[4]))
            elif r[0] == "meta":
                meta.setdefault(r[1], []).append(r[2])
    rss = {}
    for r in read_rows(os.path.join(a.out, "rss.tsv")):
        if r[0] == "meta":
            rss.setdefault(r[1], []).append(r[2])

    def med(mode, b, t, np_=0, col=0):
        v = times.get((mode, b, t, np_))
        return statistics.median(x[col] for x in v) if v else None

    def best(mode, b, np_=0):
        """(median q/s wall, median q/s cpu, threads, rounds) at the best thread setting."""
        cands = [(med(mode, b, t, np_), med(mode, b, t, np_, 1), t, len(v))
                 for (m, bb, t, p), v in times.items() if m == mode and bb == b and p == np_]
        return max(cands) if cands else None

    def fmt(x):
        return "-" if x is None else ("%.0f" % x if x >= 100 else "%.1f" % x)

    def ratio(x, y):
        return "-" if not x or not y else "%.2fx" % (x[0] / y[0])

    batches = sorted({b for (m, b, t, p) in times if m == "exact" and b > 1})
    modes = sorted({m for (m, b, t, p) in times if m.startswith("ivf")}, key=lambda m: (m != "ivf", m))
    probes = sorted({p for (m, b, t, p) in times if m == "ivf"})
    target_r = a.target_recall
    print("| row | kprec q/s (threads) | peer | peer q/s (threads) | ratio (wall) | ratio (CPU) "
          "| target | met |")
    print("|---|---:|---|---:|---:|---:|---|---|")

    def line(row, k, peer, p, target, ok):
        cpu = "-" if not k or not p else "%.2fx" % (k[1] / p[1])
        print("| %s | %s (%s) | %s | %s (%s) | %s | %s | %s | %s |" % (
            row, fmt(k[0] if k else None), k[2] if k else "-", peer, fmt(p[0] if p else None),
            p[2] if p else "-", ratio(k, p), cpu, target, ok))

    def rec(mode, b, p):
        r = recall.get((mode, b, p))
        return statistics.median(r) if r else None

    def chosen(b):
        """The fastest (mode, nprobe) with median recall >= target at batch b (else the best
        recall): (q/s, mode, nprobe)."""
        ok = [(best(m, b, p), m, p) for m in modes for p in probes
              if rec(m, b, p) is not None and rec(m, b, p) >= target_r and best(m, b, p)]
        if ok:
            return max(ok)
        rs = [(rec(m, b, p), m, p) for m in modes for p in probes if rec(m, b, p) is not None]
        if not rs:
            return (None, None, None)
        _, m, p = max(rs)
        return (best(m, b, p), m, p)

    def met(k, e, m, p, b):
        rc = rec(m, b, p) if m else None
        return "yes" if k and e and rc is not None and rc >= target_r and \
            k[0] >= 10 * e[0] else "no"

    def label(m):
        return "IVF" if m == "ivf" else "IVF " + m[4:]

    for b in batches:
        k, f, g = best("exact", b), best("flat", b), best("gemm", b)
        r1 = k and f and k[0] >= f[0]
        line("exact top-50, batch %d" % b, k, "faiss IndexFlatIP", f, ">= 1.0x", "yes" if r1 else "no")
        line("exact top-50, batch %d, vs the sgemm calls alone" % b, k, "kprec sgemm only", g,
             ">= 0.70x", "yes" if k and g and k[0] >= 0.7 * g[0] else "no")
    for b in batches:
        k, m, p = chosen(b)
        e = best("exact", b)
        rc = rec(m, b, p) if m else None
        line("fast top-50 (%s nprobe %s, recall %s), batch %d" % (
            label(m) if m else "IVF", p, "%.3f" % rc if rc is not None else "-", b),
             k, "kprec exact", e, ">= 10x at recall >= %.2f" % target_r, met(k, e, m, p, b))
    k, m, p = chosen(1)
    f = best("flat", 1)
    rc = rec(m, 1, p) if m else None
    line("single item (%s nprobe %s, recall %s), batch 1" % (
        label(m) if m else "IVF", p, "%.3f" % rc if rc is not None else "-"), k,
         "faiss IndexFlatIP", f, ">= 10x at recall >= %.2f" % target_r, met(k, f, m, p, 1))
    print()
    print("IVF recall/speed curve (nlist %s, median over rounds; q/s at the best thread setting, "
          "speed-up vs kprec exact of the same batch):" % ",".join(sorted(set(meta.get("ivf_nlist", ["?"])))))
    print()
    print("| pass | nprobe | " + " | ".join("batch %d recall | q/s | vs exact" % b
                                          for b in batches + [1]) + " |")
    print("|---|---:|" + "---:|---:|---:|" * (len(batches) + 1))
    for m in modes:
        for p in probes:
            cells = []
            for b in batches + [1]:
                r = rec(m, b, p)
                k, e = best(m, b, p), best("exact", b)
                cells += ["%.3f" % r if r is not None else "-", fmt(k[0] if k else None),
                          ratio(k, e)]
            print("| %s | %d | %s |" % (label(m), p, " | ".join(cells)))
    print()
    bs = [float(x) for x in meta.get("ivf_build_s", [])]
    if bs:
        print("IVF build (k-means + assignment + reordering): median %.1f s over %d rounds; "
              "largest list %s keys." % (statistics.median(bs), len(bs),
                                         ",".join(sorted(set(meta.get("ivf_max_list", []))))))
        print()
    if rss:
        mb = float(rss["model_bytes"][0]) / 1e6
        ib = float(rss["index_bytes"][0]) / 1e6
        for i, np_ in enumerate(rss.get("nprobe", [])):
            kb, hwm = float(rss["rss_kb"][i]) * 1024 / 1e6, float(rss["hwm_kb"][i]) * 1024 / 1e6
            fp = rss["first_pass"][i] if i < len(rss.get("first_pass", [])) else "fp32"
            qb = float(rss["quant_bytes"][i]) / 1e6 if i < len(rss.get("quant_bytes", [])) else 0.0
            kind = "exact" if np_ == "0" else "IVF nprobe %s, first pass %s" % (np_, fp)
            raw = mb + ib + qb
            print("- memory (%s, %s keyphrases, kp_follower_build as the worker): RSS %.0f MB "
                  "after the build, peak %.0f MB; raw model %.0f MB + index %.0f MB%s = %.0f MB; "
                  "RSS / raw = %.2fx, peak / raw = %.2fx (target <= 1.5x: %s)" % (
                      kind, rss["keyphrases"][i], kb, hwm, mb, ib,
                      " + %s copy %.0f MB" % (fp, qb) if qb else "", raw, kb / raw,
                      hwm / raw, "met" if kb <= 1.5 * raw else "missed"))
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("search")
    s.add_argument("--out", required=True)
    s.add_argument("--k", type=int, default=50)
    s.add_argument("--threads", default="1 2")
    s.add_argument("--batches", default="64 256")
    s.add_argument("--single", type=int, default=100)
    s.add_argument("--queries", type=int, default=0)
    r = sub.add_parser("report")
    r.add_argument("--out", required=True)
    r.add_argument("--target-recall", type=float, default=0.95)
    a = ap.parse_args()
    return cmd_search(a) if a.cmd == "search" else cmd_report(a)


if __name__ == "__main__":
    sys.exit(main())
