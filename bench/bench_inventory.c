/* bench_inventory.c - what a live inventory addition costs (driven by bench/inventory.sh).
 *
 *   bench_inventory [--base N] [--add M] [--chunk C] [--reps R] [--seed S]
 *
 * A seeded (untrained) bi-encoder (default config) and N + M synthetic keyphrases (2..4 words of
 * a seeded 800-word vocabulary). Times, median of R runs:
 *   rebuild      kp_rec_new over all N + M keyphrases (embeds every one: what a full reload does)
 *   incremental  kp_rec_upsert of the M new ones onto a recommender of the N, in chunks of C (the
 *                serve loop applies at most 512 changes between two batches)
 *   bm25         one kp_bm25_build over N + M documents (the worker rebuilds BM25 once per
 *                applied chunk when [model] hybrid is on)
 * Prints TSV rows: "time <what> <seconds>" and "meta <key> <value>". Exit 0, 1 on failure. */
#include <getopt.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/util.h"
#include "model/bienc.h"
#include "model/bm25.h"
#include "model/recommender.h"
#include "model/rng.h"

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return v[n / 2];
}

static kp_bienc *copy_of(const kp_bienc *m)
{
    kp_bienc *c = kp_bienc_new_zero(kp_bienc_cfg(m));
    if (c && kp_bienc_copy(c, m)) kp_bienc_free(c), c = NULL;
    return c;
}

int main(int argc, char **argv)
{
    int base = 12000, add = 1000, chunk = 512, reps = 3;
    uint64_t seed = 1;
    static const struct option opts[] = {
        {"base", required_argument, 0, 'b'},  {"add", required_argument, 0, 'a'},
        {"chunk", required_argument, 0, 'c'}, {"reps", required_argument, 0, 'r'},
        {"seed", required_argument, 0, 's'},  {0, 0, 0, 0}};
    for (int ch; (ch = getopt_long(argc, argv, "b:a:c:r:s:", opts, NULL)) != -1;) {
        if (ch == 'b')
            base = atoi(optarg);
        else if (ch == 'a')
            add = atoi(optarg);
        else if (ch == 'c')
            chunk = atoi(optarg);
        else if (ch == 'r')
            reps = atoi(optarg);
        else if (ch == 's')
            seed = strtoull(optarg, NULL, 10);
        else {
            fprintf(stderr, "usage: bench_inventory [--base N] [--add M] [--chunk C] [--reps R]\n");
            return 2;
        }
    }
    if (base < 1 || add < 1 || chunk < 1 || reps < 1 || reps > 50) return 2;
    int n = base + add;
    kp_rng rng;
    kp_rng_seed(&rng, seed);
    char vocab[800][12];
    for (int w = 0; w < 800; w++) {
        int len = 3 + (int)kp_rng_below(&rng, 7);
        for (int j = 0; j < len; j++)
            vocab[w][j] = (char)('a' + kp_rng_below(&rng, 26));
        vocab[w][len] = 0;
    }
    char **ids = malloc(sizeof *ids * (size_t)n), **texts = malloc(sizeof *texts * (size_t)n);
    for (int i = 0; i < n; i++) {
        char buf[64];
        int words = 2 + (int)kp_rng_below(&rng, 3), at = 0;
        for (int w = 0; w < words; w++)
            at += snprintf(buf + at, sizeof buf - (size_t)at, "%s%s", w ? " " : "",
                           vocab[kp_rng_below(&rng, 800)]);
        texts[i] = strdup(buf);
        snprintf(buf, sizeof buf, "kp-%d", i);
        ids[i] = strdup(buf);
    }
    kp_bienc_config bc;
    kp_bienc_config_default(&bc);
    kp_bienc *m = kp_bienc_new(&bc, seed);
    char err[256];
    double *t_full = malloc(sizeof(double) * (size_t)reps), *t_inc = malloc(sizeof(double) * reps),
           *t_bm = malloc(sizeof(double) * (size_t)reps);
    int rc = 1;
    for (int r = 0; r < reps; r++) {
        uint64_t t0 = kp_mono_us();
        kp_recommender *full = kp_rec_new(copy_of(m), (const char *const *)ids,
                                          (const char *const *)texts, n, 0, err, sizeof err);
        t_full[r] = (double)(kp_mono_us() - t0) / 1e6;
        kp_recommender *live = kp_rec_new(copy_of(m), (const char *const *)ids,
                                          (const char *const *)texts, base, 0, err, sizeof err);
        if (!full || !live) goto out;
        t0 = kp_mono_us();
        for (int i = base; i < n; i += chunk) {
            int c = n - i < chunk ? n - i : chunk;
            if (kp_rec_upsert(live, (const char *const *)ids + i, (const char *const *)texts + i, c,
                              err, sizeof err) != c)
                goto out;
        }
        t_inc[r] = (double)(kp_mono_us() - t0) / 1e6;
        if (kp_rec_size(live) != n) goto out;
        t0 = kp_mono_us();
        kp_bm25 *bm =
            kp_bm25_build((const char *const *)texts, n, KP_BM25_K1, KP_BM25_B, err, sizeof err);
        t_bm[r] = (double)(kp_mono_us() - t0) / 1e6;
        if (!bm) goto out;
        kp_bm25_free(bm);
        kp_rec_free(full);
        kp_rec_free(live);
    }
    printf("meta\tbase\t%d\nmeta\tadd\t%d\nmeta\tchunk\t%d\nmeta\treps\t%d\nmeta\tdim\t%d\n", base,
           add, chunk, reps, kp_bienc_cfg(m)->out_dim);
    printf("time\trebuild\t%.4f\n", median(t_full, reps));
    printf("time\tincremental\t%.4f\n", median(t_inc, reps));
    printf("time\tbm25\t%.4f\n", median(t_bm, reps));
    rc = 0;
out:
    if (rc) fprintf(stderr, "bench_inventory: failed: %s\n", err);
    for (int i = 0; i < n; i++)
        free(ids[i]), free(texts[i]);
    free(ids), free(texts), free(t_full), free(t_inc), free(t_bm);
    kp_bienc_free(m);
    return rc;
}
