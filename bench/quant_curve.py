#!/usr/bin/env python3
"""quant_curve.py -- the IVF recall/speed curve per first pass from `bench_scale search` output.

  bench_scale search --out OUT --first-pass "fp32 int8 bf16" --rescore "2 4" ... > run.tsv
  bench/quant_curve.py run.tsv [more.tsv ...]

One markdown table row per (first pass, nprobe): for each batch, recall@k vs exact, queries/s
(wall clock) and the speed-up over kprec's exact pass of the same batch IN THE SAME FILE, by wall
clock and by process CPU time (the machine is shared: CPU time is less disturbed by waiting for
a core). Several files (e.g. one per nlist) give one table each, in order.
"""
import sys


def table(path):
    times, rec, meta = {}, {}, {}
    with open(path) as f:
        for line in f:
            r = line.rstrip("\n").split("\t")
            if r[0] == "time":
                times[(r[1], int(r[2]), int(r[4]))] = (int(r[5]), float(r[6]), float(r[7]))
            elif r[0] == "recall":
                rec[("ivf", int(r[1]), int(r[2]))] = float(r[3])
            elif r[0] == "qrecall":
                rec[(r[1], int(r[2]), int(r[3]))] = float(r[4])
            elif r[0] == "meta":
                meta.setdefault(r[1], []).append("\t".join(r[2:]))
    batches = sorted({b for (m, b, p) in times if m == "exact"}, reverse=True)
    batches = [b for b in batches if b > 1] + [1]
    modes = []
    for (m, b, p) in times:
        if m != "exact" and m != "gemm" and m not in modes:
            modes.append(m)
    print("nlist %s (largest list %s)%s" % (meta.get("ivf_nlist", ["?"])[0],
                                            meta.get("ivf_max_list", ["?"])[0],
                                            "; " + "; ".join(meta["quant_kernel"]).replace("\t", ": ")
                                            if "quant_kernel" in meta else ""))
    print()
    print("| first pass | nprobe | " + " | ".join(
        "b%d recall | q/s | vs exact (wall / CPU)" % b for b in batches) + " |")
    print("|---|---:|" + "---:|---:|---:|" * len(batches))
    for m in modes:
        for p in sorted({p for (mm, b, p) in times if mm == m}):
            cells = []
            for b in batches:
                t, e = times.get((m, b, p)), times.get(("exact", b, 0))
                if not t or not e:
                    cells += ["-", "-", "-"]
                    continue
                qs, eqs = t[0] / t[1], e[0] / e[1]
                cq, ecq = t[0] / t[2], e[0] / e[2]
                r = rec.get((m, b, p))
                cells += ["%.3f" % r if r is not None else "-", "%.0f" % qs,
                          "%.1fx / %.1fx" % (qs / eqs, cq / ecq)]
            print("| %s | %d | %s |" % (m, p, " | ".join(cells)))
    ex = ", ".join("batch %d %.1f q/s" % (b, times[("exact", b, 0)][0] / times[("exact", b, 0)][1])
                   for b in batches if ("exact", b, 0) in times)
    print()
    print("kprec exact (same run): %s" % ex)


def main():
    if len(sys.argv) < 2:
        sys.stderr.write(__doc__)
        return 2
    for i, path in enumerate(sys.argv[1:]):
        if i:
            print()
        table(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
