#!/usr/bin/env python3
"""bench/corr.py -- Spearman (ties get their average rank) and Pearson correlation of two columns.

    corr.py < FILE      FILE: lines "x<TAB>y"; prints "n spearman pearson" (4 decimals)

Used by bench/teacher.sh and tests/label/embed_teacher.sh (the teacher's grades against the
human ones). Standard library only.
"""
import sys


def ranks(v):
    o = sorted(range(len(v)), key=v.__getitem__)
    r = [0.0] * len(v)
    i = 0
    while i < len(o):
        j = i
        while j + 1 < len(o) and v[o[j + 1]] == v[o[i]]:
            j += 1
        for t in range(i, j + 1):
            r[o[t]] = (i + j) / 2.0
        i = j + 1
    return r


def pearson(x, y):
    n = len(x)
    mx, my = sum(x) / n, sum(y) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(x, y))
    sxx = sum((a - mx) ** 2 for a in x)
    syy = sum((b - my) ** 2 for b in y)
    return sxy / (sxx * syy) ** 0.5 if sxx > 0 and syy > 0 else 0.0


def main():
    x, y = [], []
    for line in sys.stdin:
        a, b = line.split("\t")[:2]
        x.append(float(a))
        y.append(float(b))
    if len(x) < 2:
        sys.exit("corr.py: fewer than 2 pairs")
    print(len(x), round(pearson(ranks(x), ranks(y)), 4), round(pearson(x, y), 4))


if __name__ == "__main__":
    main()
