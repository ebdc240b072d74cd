/* split.c - hashed item splits and the splitting of TSV files by them (see split.h). */
#include "offline/split.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>

#include "common/util.h"
#include "model/rng.h"

int kp_split_is_valid(const char *item_id, double frac, uint64_t seed)
{
    if (!item_id || !(frac > 0.0)) return 0;
    if (frac >= 1.0) return 1;
    uint64_t h = kp_fnv1a_str(item_id);
    uint64_t u = kp_mix64(h ^ kp_mix64(seed + 0x9e3779b97f4a7c15ULL));
    /* compare the top 53 bits as a double in [0, 1) */
    return (double)(u >> 11) * (1.0 / 9007199254740992.0) < frac;
}

/* ---- TSV files --------------------------------------------------------------------------- */

/* Field `col` (0-based) of line[0..len) into *f, *fl. 0, or -1 if the line has fewer columns. */
static int field(const char *line, size_t len, int col, const char **f, size_t *fl)
{
    size_t a = 0;
    for (int c = 0; c < col; c++) {
        const char *t = memchr(line + a, '\t', len - a);
        if (!t) return -1;
        a = (size_t)(t - line) + 1;
    }
    const char *t = memchr(line + a, '\t', len - a);
    *f = line + a;
    *fl = (t ? (size_t)(t - line) : len) - a;
    return 0;
}

static size_t chomp_len(const char *line, size_t n)
{
    if (n && line[n - 1] == '\n') n--;
    if (n && line[n - 1] == '\r') n--;
    return n;
}

int kp_split_tsv(const char *in_path, const char *column, double frac, uint64_t seed,
                 const char *train_path, const char *valid_path, kp_split_counts *cn, char *err,
                 size_t errlen)
{
    FILE *in = NULL, *out[2] = {NULL, NULL};
    const char *paths[2] = {train_path, valid_path};
    char *line = NULL, *key = NULL;
    size_t cap = 0, kcap = 0;
    long lineno = 1;
    int rc = -1, col = -1;
    memset(cn, 0, sizeof *cn);
    if (!(in = fopen(in_path, "rb"))) {
        kp_errf(err, errlen, "%s: cannot open: %s", in_path, strerror(errno));
        goto done;
    }
    ssize_t n = getline(&line, &cap, in);
    if (n <= 0) {
        kp_errf(err, errlen, "%s:1: empty file (expected a header row)", in_path);
        goto done;
    }
    size_t hl = chomp_len(line, (size_t)n), cl = strlen(column);
    const char *f;
    size_t fl;
    for (int c = 0; col < 0 && !field(line, hl, c, &f, &fl); c++)
        if (fl == cl && !memcmp(f, column, cl)) col = c;
    if (col < 0) {
        kp_errf(err, errlen, "%s:1: no column named '%s' in the header", in_path, column);
        goto done;
    }
    for (int i = 0; i < 2; i++) {
        if (!(out[i] = fopen(paths[i], "wb"))) {
            kp_errf(err, errlen, "%s: cannot create: %s", paths[i], strerror(errno));
            goto done;
        }
        if (fwrite(line, 1, hl, out[i]) != hl || fputc('\n', out[i]) == EOF) goto werr;
    }
    while ((n = getline(&line, &cap, in)) > 0) {
        lineno++;
        size_t ll = chomp_len(line, (size_t)n);
        if (ll == 0) continue;
        if (field(line, ll, col, &f, &fl) || fl == 0) {
            kp_errf(err, errlen, "%s:%ld: no '%s' value (column %d)", in_path, lineno, column,
                    col + 1);
            goto done;
        }
        if (fl + 1 > kcap) {
            char *k = realloc(key, fl + 1);
            if (!k) {
                kp_errf(err, errlen, "split: out of memory");
                goto done;
            }
            key = k;
            kcap = fl + 1;
        }
        memcpy(key, f, fl);
        key[fl] = 0;
        int v = kp_split_is_valid(key, frac, seed);
        if (fwrite(line, 1, ll, out[v]) != ll || fputc('\n', out[v]) == EOF) goto werr;
        cn->rows++;
        if (v)
            cn->valid++;
        else
            cn->train++;
    }
    if (ferror(in)) {
        kp_errf(err, errlen, "%s:%ld: read error", in_path, lineno + 1);
        goto done;
    }
    for (int i = 0; i < 2; i++) {
        int e = fclose(out[i]);
        out[i] = NULL;
        if (e) {
            kp_errf(err, errlen, "%s: write error: %s", paths[i], strerror(errno));
            goto done;
        }
    }
    rc = 0;
    goto done;
werr:
    kp_errf(err, errlen, "split: write error: %s", strerror(errno));
done:
    if (in) fclose(in);
    for (int i = 0; i < 2; i++)
        if (out[i]) fclose(out[i]);
    free(line);
    free(key);
    return rc;
}
