#!/usr/bin/env python3
"""quant_curve.py -- the IVF recall/speed curve per first pass from `bench_scale search` output.

  bench_scale search --out OUT --first-pass "fp32 int8 bf16" --rescore "2 4" ... > run.tsv
  bench/quant_curve.py run1.tsv [run2.tsv ...]

One markdown table row per (first pass, nprobe): for each batch, recall@k vs exact, queries/s
(wall clock) and the speed-up over kprec's exact pass of the same batch IN THE SAME FILE (one
process), by wall clock and by process CPU time (the machine is shared: CPU time is less
disturbed by waiting for a core). Several files are rounds of the same command: each cell is the
median over the rounds of that round's value (ratios are taken within a round, then the median).
"""
import statistics
import sys


def load(path):
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
    return times, rec, meta


def table(paths):
    runs = [load(p) for p in paths]
    times, rec, meta = runs[0]
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
                qs, wr, cr, rr = [], [], [], []
                for (tm, rc, _) in runs:
                    t, e = tm.get((m, b, p)), tm.get(("exact", b, 0))
                    if not t or not e:
                        continue
                    qs.append(t[0] / t[1])
                    wr.append((t[0] / t[1]) / (e[0] / e[1]))
                    cr.append((t[0] / t[2]) / (e[0] / e[2]))
                    if rc.get((m, b, p)) is not None:
                        rr.append(rc[(m, b, p)])
                if not qs:
                    cells += ["-", "-", "-"]
                    continue
                med = statistics.median
                cells += ["%.3f" % med(rr) if rr else "-", "%.0f" % med(qs),
                          "%.1fx / %.1fx" % (med(wr), med(cr))]
            print("| %s | %d | %s |" % (m, p, " | ".join(cells)))
    ex = ", ".join("batch %d %s q/s" % (b, " / ".join(
        "%.1f" % (tm[("exact", b, 0)][0] / tm[("exact", b, 0)][1]) for (tm, _, _) in runs
        if ("exact", b, 0) in tm)) for b in batches)
    print()
    print("kprec exact per round (wall): %s; rounds: %d" % (ex, len(runs)))


def main():
    if len(sys.argv) < 2:
        sys.stderr.write(__doc__)
        return 2
    table(sys.argv[1:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
