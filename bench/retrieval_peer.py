#!/usr/bin/python3
"""bench/retrieval_peer.py - the faiss side of bench/retrieval.sh, and its report.

  retrieval_peer.py search --out OUT [--k K] [--reps R] [--threads "1 2"] [--batches "256 8192"]
      Loads OUT/items.f32 and OUT/keys.f32 (written by bench_index embed), builds a faiss
      IndexFlatIP over the keys and times one pass of index.search over all items for every
      (batch, threads) pair, after a warm-up on one batch; R passes. Threads: faiss's OpenMP
      threads (faiss.omp_set_num_threads) and OpenBLAS's (openblas_set_num_threads through
      ctypes: faiss calls the same libopenblas.so.0 as kprec). Prints the same TSV rows as
      bench_index search (meta / time) and writes OUT/ids_faiss.i32 [n_items x K] (batch 256 or
      the first batch size, first thread count).

  retrieval_peer.py report --out OUT [--label TEXT]
      Reads OUT/kprec.tsv and OUT/faiss.tsv (concatenated rows of all rounds), OUT/rss.tsv
      (side, peak RSS kB per process from /usr/bin/time -v) and the two id files; prints a
      markdown table of median queries/s per side, the ratio kprec/faiss, the prefix recall,
      the id agreement and peak RSS.

Run it with /usr/bin/python3 (Debian's python3-faiss and python3-numpy).
"""
import argparse
import ctypes
import ctypes.util
import os
import resource
import statistics
import sys
import time


def openblas_lib():
    """The process's libopenblas (already loaded by faiss), or None."""
    for name in ("libopenblas.so.0", ctypes.util.find_library("openblas")):
        if not name:
            continue
        try:
            lib = ctypes.CDLL(name)
            lib.openblas_get_corename.restype = ctypes.c_char_p
            lib.openblas_get_config.restype = ctypes.c_char_p
            return lib
        except OSError:
            continue
    return None


def parse_list(s):
    return [int(x) for x in s.replace(",", " ").split()]


def maxrss_kb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def cmd_search(a):
    import numpy as np
    import faiss

    with open(os.path.join(a.out, "dims.txt")) as f:
        nq, nk, dim = (int(x) for x in f.read().split())
    xq = np.fromfile(os.path.join(a.out, "items.f32"), dtype=np.float32).reshape(nq, dim)
    xk = np.fromfile(os.path.join(a.out, "keys.f32"), dtype=np.float32).reshape(nk, dim)
    index = faiss.IndexFlatIP(dim)
    index.add(xk)
    blas = openblas_lib()
    print("meta\tfaiss_version\t%s" % faiss.__version__)
    opts = faiss.get_compile_options() if hasattr(faiss, "get_compile_options") else "?"
    print("meta\tfaiss_compile_options\t%s" % opts)
    if blas is not None:
        print("meta\topenblas_corename\t%s" % blas.openblas_get_corename().decode())
        print("meta\topenblas_config\t%s" % blas.openblas_get_config().decode())
    else:
        print("meta\topenblas_corename\tunknown")
    for v in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE"):
        print("meta\t%s\t%s" % (v, os.environ.get(v, "(unset)")))
    print("meta\trss_after_load_kb\t%d" % maxrss_kb())
    threads, batches = parse_list(a.threads), parse_list(a.batches)
    saved = None
    for t in threads:
        faiss.omp_set_num_threads(t)
        if blas is not None:
            blas.openblas_set_num_threads(t)
        for b in batches:
            nw = min(nq, 256)
            index.search(xq[:nw], a.k)  # warm-up
            for _ in range(a.reps):
                ids = np.empty((nq, a.k), dtype=np.int64)
                t0 = time.perf_counter()
                for q0 in range(0, nq, b):
                    _, ids[q0:q0 + b] = index.search(xq[q0:q0 + b], a.k)
                s = time.perf_counter() - t0
                print("time\tfaiss\texact\t%d\t%d\t%.6f" % (b, t, s), flush=True)
            if saved is None:
                saved = ids
    saved.astype(np.int32).tofile(os.path.join(a.out, "ids_faiss.i32"))
    print("meta\tfaiss_peak_rss_kb\t%d" % maxrss_kb())
    return 0


def read_rows(path):
    rows = []
    with open(path) as f:
        for line in f:
            rows.append(line.rstrip("\n").split("\t"))
    return rows


def agreement(out, nq, k, dim):
    """(same ids in the same order %, same id sets %, set agreement counting near-ties %)."""
    import numpy as np

    a = np.fromfile(os.path.join(out, "ids_kprec.i32"), dtype=np.int32).reshape(nq, k)
    b = np.fromfile(os.path.join(out, "ids_faiss.i32"), dtype=np.int32).reshape(nq, k)
    xq = np.fromfile(os.path.join(out, "items.f32"), dtype=np.float32).reshape(nq, dim)
    xk = np.fromfile(os.path.join(out, "keys.f32"), dtype=np.float32).reshape(-1, dim)
    pos = float((a == b).mean())
    same = 0
    tie_ok = 0
    for i in range(nq):
        sa, sb = set(a[i].tolist()), set(b[i].tolist())
        inter = len(sa & sb)
        same += inter
        # a faiss-only id counts as a tie if its exact (float64) score is within 1e-5 of the
        # lowest exact score in kprec's list: both are then valid top-k answers.
        extra = [j for j in sb - sa if j >= 0]
        if extra:
            q = xq[i].astype(np.float64)
            kth = min(float(xk[j].astype(np.float64) @ q) for j in sa if j >= 0)
            tie_ok += sum(1 for j in extra if abs(float(xk[j].astype(np.float64) @ q) - kth) <= 1e-5)
    tot = nq * k
    return 100.0 * pos, 100.0 * same / tot, 100.0 * (same + tie_ok) / tot


def cmd_report(a):
    rows = read_rows(os.path.join(a.out, "kprec.tsv")) + read_rows(os.path.join(a.out, "faiss.tsv"))
    meta = {}
    times = {}
    recall = {}
    first_batch = None
    for r in rows:
        if r[0] == "meta" and len(r) >= 3:
            meta.setdefault(r[1], r[2])
            if r[1] == "openblas_corename":
                meta.setdefault("corenames", set()).add(r[2])
        elif r[0] == "time" and len(r) == 6:
            key = (r[1], r[2], int(r[3]), int(r[4]))
            times.setdefault(key, []).append(float(r[5]))
            if first_batch is None:
                first_batch = int(r[3])
        elif r[0] == "recall":
            recall[r[1]] = float(r[2])
    rss = {}
    p = os.path.join(a.out, "rss.tsv")
    if os.path.exists(p):
        for r in read_rows(p):
            rss[r[0]] = max(rss.get(r[0], 0), int(r[1]))
    nq, k, dim = int(meta["queries"]), int(meta["k"]), int(meta["dim"])

    def qps(side, mode, b, t):
        v = times.get((side, mode, b, t))
        return (nq / statistics.median(v), len(v)) if v else (None, 0)

    print("#### %s" % a.label)
    print()
    print("OpenBLAS core: %s; OPENBLAS_CORETYPE=%s, OPENBLAS_L2_SIZE=%s" % (
        ", ".join(sorted(meta.get("corenames", {"unknown"}))), meta.get("OPENBLAS_CORETYPE"),
        meta.get("OPENBLAS_L2_SIZE")))
    print()
    print("| kprec mode | batch | threads | kprec q/s | faiss q/s | kprec/faiss | runs |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    keys = sorted({(m, b, t) for (s, m, b, t) in times if s == "kprec"},
                  key=lambda x: (x[0].startswith("gemm"), x[1], x[2], x[0]))
    for m, b, t in keys:
        kq, n = qps("kprec", m, b, t)
        fq, _ = qps("faiss", "exact", b, t)
        ratio = "%.2f" % (kq / fq) if fq else "-"
        label = m + (" (diagnostic)" if m.startswith("gemm") else "")
        print("| %s | %d | %d | %.0f | %s | %s | %d |" % (
            label, b, t, kq, "%.0f" % fq if fq else "-", ratio, n))
    print()
    pos, sets, ties = agreement(a.out, nq, k, dim)
    print("- faiss ids vs kprec exact (batch %d, 1 thread): same set %.2f%%, same set counting "
          "near-ties (|score diff| <= 1e-5 at the k-th place) %.2f%%, same order %.2f%%." % (
              first_batch, sets, ties, pos))
    for m in sorted(recall):
        print("- %s first pass (cand_factor 4, rescored at D=%d): recall@%d vs exact = %.4f" % (
            m, dim, k, recall[m]))
    if rss:
        print("- peak RSS (max over rounds, /usr/bin/time -v): kprec %.1f MB, faiss %.1f MB; "
              "after loading the vectors (getrusage): kprec %.1f MB, faiss %.1f MB." % (
                  rss.get("kprec", 0) / 1024, rss.get("faiss", 0) / 1024,
                  rss_after(a.out, "kprec") / 1024, rss_after(a.out, "faiss") / 1024))
    return 0


def rss_after(out, side):
    m = 0
    for r in read_rows(os.path.join(out, side + ".tsv")):
        if r[0] == "meta" and r[1] == "rss_after_load_kb":
            m = max(m, int(r[2]))
    return m


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("search")
    s.add_argument("--out", required=True)
    s.add_argument("--k", type=int, default=50)
    s.add_argument("--reps", type=int, default=1)
    s.add_argument("--threads", default="1 2")
    s.add_argument("--batches", default="256 8192")
    r = sub.add_parser("report")
    r.add_argument("--out", required=True)
    r.add_argument("--label", default="results")
    a = ap.parse_args()
    return cmd_search(a) if a.cmd == "search" else cmd_report(a)


if __name__ == "__main__":
    sys.exit(main())
