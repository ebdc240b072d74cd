/* bench_ce.c - serve-time speed of the cross-encoder: kp_ce_score pairs/s, one thread.
 *
 *   bench_ce MODEL ITEMS.tsv KEYPHRASES.tsv [N_ITEMS] [CANDS] [ROUNDS]
 *
 * Re-ranks CANDS (default 100) keyphrases per item for the first N_ITEMS (default 200) titles of
 * ITEMS.tsv (header skipped, title in the 2nd column); the candidates of item i are keyphrases
 * (i * 37 + c) mod n of KEYPHRASES.tsv. One kp_ce_score call per item (CANDS pairs), as a
 * re-ranker would make. Prints the median over ROUNDS (default 5) of pairs per CPU second (process
 * CPU time, one thread: less sensitive to other jobs on a shared machine than wall time). Built by
 * bench/ce_speed.sh. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "model/ce.h"

static char **read_col2(const char *path, int max, int *n)
{
    FILE *f = fopen(path, "r");
    if (!f) return NULL;
    char line[8192];
    int cap = 1024;
    char **out = malloc((size_t)cap * sizeof(*out));
    *n = 0;
    if (!fgets(line, sizeof line, f)) { /* header */
        fclose(f);
        return out;
    }
    while ((max <= 0 || *n < max) && fgets(line, sizeof line, f)) {
        char *t = strchr(line, '\t');
        if (!t) continue;
        t++;
        char *e = strchr(t, '\t');
        if (!e) e = t + strcspn(t, "\r\n");
        *e = '\0';
        if (*n == cap) out = realloc(out, (size_t)(cap *= 2) * sizeof(*out));
        out[(*n)++] = strdup(t);
    }
    fclose(f);
    return out;
}

static double now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts); /* CPU time: the machine is shared */
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

int main(int argc, char **argv)
{
    if (argc < 4) {
        fprintf(stderr,
                "usage: bench_ce MODEL ITEMS.tsv KEYPHRASES.tsv [N_ITEMS] [CANDS] [ROUNDS]\n");
        return 2;
    }
    int ni = argc > 4 ? atoi(argv[4]) : 200, nc = argc > 5 ? atoi(argv[5]) : 100;
    int rounds = argc > 6 ? atoi(argv[6]) : 5;
    if (ni < 1 || nc < 1 || rounds < 1 || rounds > 99) return 2;
    char err[512];
    kp_ce *m = kp_ce_load(argv[1], err, sizeof err);
    if (!m) {
        fprintf(stderr, "bench_ce: %s\n", err);
        return 1;
    }
    int n_items = 0, n_keys = 0;
    char **items = read_col2(argv[2], ni, &n_items), **keys = read_col2(argv[3], 0, &n_keys);
    if (!items || !keys || n_items < 1 || n_keys < 1) {
        fprintf(stderr, "bench_ce: cannot read the items or keyphrases\n");
        return 1;
    }
    const char **ti = malloc((size_t)nc * sizeof(*ti)), **tk = malloc((size_t)nc * sizeof(*tk));
    float *out = malloc((size_t)nc * sizeof(float));
    double t[99], sink = 0.0;
    for (int r = 0; r < rounds; r++) {
        double t0 = now();
        for (int i = 0; i < n_items; i++) {
            for (int c = 0; c < nc; c++) {
                ti[c] = items[i];
                tk[c] = keys[((size_t)i * 37 + (size_t)c) % (size_t)n_keys];
            }
            if (kp_ce_score(m, ti, tk, nc, out) != 0) return 1;
            sink += out[0];
        }
        t[r] = (double)n_items * nc / (now() - t0);
    }
    qsort(t, (size_t)rounds, sizeof(double), cmp_d);
    printf("model %s members %d features %d: %d items x %d candidates, median of %d rounds: "
           "%.0f pairs per CPU second (%.2f CPU ms per item) [checksum %.3f]\n",
           argv[1], kp_ce_n_members(m), kp_ce_n_features(m), n_items, nc, rounds, t[rounds / 2],
           1e3 * nc / t[rounds / 2], sink);
    kp_ce_free(m);
    return 0;
}
