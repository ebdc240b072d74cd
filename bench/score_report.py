#!/usr/bin/env python3
"""bench/score_report.py -- the scoring row of issue 11 as markdown, from `bench_scale score` output.

    score_report.py FILE.tsv [FILE.tsv ...]

Each FILE is one `bench_scale score` process (one inventory, R rounds): meta rows and
    time <mode> <batch> <threads> 0 <titles> <wall s> <cpu s>   (mode score|gemm|tower|topk)
Prints one table row per (inventory, batch, threads): the medians over the rounds of items/s of
the worker's scoring (kp_rec_suggest: featurize, item tower, retrieval, top-K), of the GEMM alone
(the sgemm of the same batches' embeddings against the same key matrix), their ratio (median of
the per-round ratios), by wall clock and by process CPU time, and the item tower alone and the
retrieval alone (kp_index_topk) by CPU time. The best thread setting per inventory (by scoring
wall rate) is marked. The first FILE is the inventory of issue 11's target (the real ~12k
keyphrases: scoring >= 70% of the GEMM-only rate of the same run), checked at its best setting.
Exits 1 when a file holds no score or gemm row.
"""
import statistics
import sys


def load(path):
    meta, rows = {}, []
    for line in open(path):
        f = line.rstrip("\n").split("\t")
        if f[0] == "meta":
            meta[f[1]] = f[2]
        elif f[0] == "time":
            rows.append((f[1], int(f[2]), int(f[3]), int(f[5]), float(f[6]), float(f[7])))
    return meta, rows


def rates(rows, mode, b, t, col):
    # col 4 = wall, 5 = cpu; in row order = round order
    return [r[3] / r[col] for r in rows if r[0] == mode and r[1] == b and r[2] == t and r[col] > 0]


def main(paths):
    print("| keyphrases | batch | threads | scoring items/s (wall) | GEMM-only items/s (wall) "
          "| scoring / GEMM (wall) | scoring (CPU) | GEMM-only (CPU) | scoring / GEMM (CPU) "
          "| item tower alone (CPU) | retrieval + top-K alone (CPU) | rounds |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    ok = True
    notes = []
    for fi, p in enumerate(paths):
        meta, rows = load(p)
        keys = sorted({(r[1], r[2]) for r in rows})
        if not any(r[0] == "score" for r in rows) or not any(r[0] == "gemm" for r in rows):
            print("score_report: %s: no score/gemm rows" % p, file=sys.stderr)
            ok = False
            continue
        best = max(keys, key=lambda bt: statistics.median(rates(rows, "score", bt[0], bt[1], 4)))
        for b, t in keys:
            med = {}
            for mode in ("score", "gemm", "tower", "topk"):
                for col in (4, 5):
                    v = rates(rows, mode, b, t, col)
                    med[mode, col] = statistics.median(v) if v else float("nan")
            ratio = {}
            for col in (4, 5):
                s, g = rates(rows, "score", b, t, col), rates(rows, "gemm", b, t, col)
                ratio[col] = statistics.median(x / y for x, y in zip(s, g))
            n = len(rates(rows, "score", b, t, 4))
            if fi == 0 and (b, t) == best:
                notes.insert(0, "target (issue 11, scoring at %s keyphrases >= 70%% of the GEMM-only "
                             "rate of the same run), best setting (batch %d, %d thread(s)): %.0f%% "
                             "by wall clock, %.0f%% by CPU time: %s" % (
                                 format(int(meta.get("keyphrases", 0)), ","), b, t,
                                 100 * ratio[4], 100 * ratio[5],
                                 "met" if ratio[4] >= 0.7 else "missed"))
            print("| %s | %d | %d%s | %.0f | %.0f | %.0f%% | %.0f | %.0f | %.0f%% | %.0f | %.0f | %d |"
                  % (format(int(meta.get("keyphrases", 0)), ","), b, t,
                     " (best)" if (b, t) == best and len(keys) > 1 else "",
                     med["score", 4], med["gemm", 4], 100 * ratio[4], med["score", 5],
                     med["gemm", 5], 100 * ratio[5], med["tower", 5], med["topk", 5], n))
        notes.append("%s keyphrases (%s): %s titles (mean %s chars), top-%s, D=%s, model %s, "
                     "recommender build %s s" % (format(int(meta.get("keyphrases", 0)), ","),
                                                  meta.get("keyphrase_file"), meta.get("titles"),
                                                  meta.get("title_chars"), meta.get("k"),
                                                  meta.get("dim"), meta.get("model"),
                                                  meta.get("build_s")))
        if meta.get("fanout") == "1":
            notes.append("%s keyphrases: threads above 1 = the model's two-way split over "
                         "single-threaded BLAS (bench_scale --fanout), the GEMM alone split the "
                         "same way" % format(int(meta.get("keyphrases", 0)), ","))
    print()
    for n in notes:
        print("- " + n)
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1:]))
